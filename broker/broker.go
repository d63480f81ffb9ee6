package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/broker/pool"
	"github.com/airlock-mcp/airlock/policy"
)

// Policy decides every call. *policy.Engine is the implementation; it
// never fails open.
type Policy interface {
	Decide(ctx context.Context, in *policy.Input) policy.Decision
}

// Options configure a Broker. Policy and Store are required; every other
// field has a usable zero value.
type Options struct {
	Policy Policy
	Store  Store
	// Servers names the upstream servers whose calls the broker decides:
	// the servers a grant can be made for.
	Servers []string
	// Notifiers announce held calls (Slack, for instance). The web UI
	// needs none: it follows Subscribe.
	Notifiers []Notifier
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
	// Metrics receives measurements; nil keeps none.
	Metrics Metrics
	// HoldWait is how long a caller that gave no progress token waits
	// before it is told to call again; 0 means DefaultHoldWait, negative
	// means it waits for the decision however long it takes.
	HoldWait time.Duration
	// HoldWaitProgress is how long a caller that gave a progress token
	// gets heartbeats before it is told to call again; 0 means
	// DefaultHoldWaitProgress, negative means heartbeats until the
	// decision.
	HoldWaitProgress time.Duration
	// CancelGrace is how long an approval stays open for the retry of a
	// client that cancelled because its request timed out
	// (ErrClientTimedOut) before it is withdrawn; 0 means
	// DefaultCancelGrace, negative means it is withdrawn at once.
	CancelGrace time.Duration
	// ApprovedRetryWindow is how long after its expiry an approved call
	// that did not run (its client was told to call again) still runs
	// on an identical retry; then it lapses. 0 means
	// DefaultApprovedRetryWindow, negative means none: it lapses at its
	// expiry.
	ApprovedRetryWindow time.Duration
	// JoinAcrossSessions lets an identical call from another session of
	// the same identified principal join a pending approval (a client
	// that reconnected before calling again). By default only a retry in
	// the same session joins; anonymous callers never join across
	// sessions.
	JoinAcrossSessions bool
	// ApprovalTimeout applies when the policy names none; 0 means
	// DefaultApprovalTimeout.
	ApprovalTimeout time.Duration
	// Heartbeat spaces progress notifications to a waiting caller; 0
	// means DefaultHeartbeat.
	Heartbeat time.Duration
	// SkipAllowedAudit leaves calls the policy simply allowed out of the
	// audit log, which removes a durable write from each. Denied, refused,
	// held and grant-allowed calls, and every decision, are still recorded.
	SkipAllowedAudit bool
	// Limits bound held calls; the zero value means the defaults.
	Limits Limits
	// AdminIdentity is the one person who holds the admin token: every
	// decision made with it through the API (and the CLI) is theirs,
	// whatever name the request gives. Empty means AdminIdentity. It must
	// be the identity a login link signs in (ui.approver), or one person
	// would count as two.
	AdminIdentity string
	// People map identities to persons (config's identities); nil maps
	// none.
	People People
	// Replica names this process among the brokers that share a store:
	// the Holder of the approvals it opens, and the name of its lease.
	// Empty means a random name.
	Replica string
	// LeaseTTL is how long this replica's lease lasts without renewal,
	// and so how long after a replica dies its pending approvals are
	// abandoned by another; 0 means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// Gone names replicas known to have stopped, whatever their leases
	// say: the process that held a state file locked to one process
	// before this one took the lock. Their pending approvals are
	// abandoned at Start.
	Gone []string
	// Now is the clock; nil means time.Now. A store shared by replicas
	// should give the database's clock, so that all of them
	// agree on when an approval expires.
	Now func() time.Time
}

// Broker is the approval core: it decides every tools/call the relay
// hands it (Check), holds the calls people must decide, and takes their
// votes from every channel.
type Broker struct {
	log       *slog.Logger
	metrics   Metrics
	policy    Policy
	store     Store
	notifiers []Notifier
	servers   []string
	now       func() time.Time
	admin     string // who holds the admin token
	people    People
	replica   string // this process's name: the Holder of its approvals
	leaseTTL  time.Duration
	gone      []string // Options.Gone

	skipAllowed        bool
	holdWait           time.Duration
	holdWaitProgress   time.Duration
	cancelGrace        time.Duration
	retryWindow        time.Duration // ApprovedRetryWindow, at least 0
	joinAcrossSessions bool
	approvalTimeout    time.Duration
	heartbeat          time.Duration

	live   liveApprovals
	limits *limiter
	tools  toolRegistry
	grants grantIndex
	// grantsStoring maps an approval's id to a channel closed once the
	// grant its approving vote asked for is stored (or failed to be).
	grantsStoring sync.Map
	events        hub
	audit         auditGuard
	tokens        tokenCache

	pool      pool.Pool     // goroutines for work on calls
	stopWatch func()        // ends the watch of the store's changes
	bg        background    // work that Close waits for
	done      chan struct{} // closed by Close
	closeOnce sync.Once
}

// New returns a broker.
func New(opts Options) (*Broker, error) {
	if opts.Policy == nil || opts.Store == nil {
		return nil, errors.New("broker: a policy and a store are required")
	}
	b := &Broker{
		log:                opts.Logger,
		metrics:            opts.Metrics,
		policy:             opts.Policy,
		store:              opts.Store,
		notifiers:          opts.Notifiers,
		servers:            slices.Clone(opts.Servers),
		now:                opts.Now,
		admin:              opts.AdminIdentity,
		people:             opts.People,
		replica:            opts.Replica,
		leaseTTL:           orDefault(opts.LeaseTTL, DefaultLeaseTTL),
		gone:               opts.Gone,
		skipAllowed:        opts.SkipAllowedAudit,
		holdWait:           orDefault(opts.HoldWait, DefaultHoldWait),
		holdWaitProgress:   orDefault(opts.HoldWaitProgress, DefaultHoldWaitProgress),
		cancelGrace:        orDefault(opts.CancelGrace, DefaultCancelGrace),
		retryWindow:        max(orDefault(opts.ApprovedRetryWindow, DefaultApprovedRetryWindow), 0),
		joinAcrossSessions: opts.JoinAcrossSessions,
		approvalTimeout:    orDefault(opts.ApprovalTimeout, DefaultApprovalTimeout),
		heartbeat:          orDefault(opts.Heartbeat, DefaultHeartbeat),
		live:               liveApprovals{byID: map[string]*liveApproval{}, byKey: map[holdKey]*liveApproval{}},
		done:               make(chan struct{}),
	}
	b.pool = pool.New(b.done)
	b.bg.pool = b.pool
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.metrics == nil {
		b.metrics = noMetrics{}
	}
	b.limits = newLimiter(opts.Limits, b.metrics)
	if b.replica == "" {
		b.replica = "airlock-" + NewRef()
	}
	// A held call learns its decision from the store, whoever made it:
	// a vote here, or in another process sharing the store. Grants made
	// or ended anywhere match here at once the same way.
	watch, stop := context.WithCancel(context.Background())
	if err := opts.Store.WatchApprovals(watch, b.changed); err != nil {
		stop()
		return nil, fmt.Errorf("broker: watching the store's approvals: %w", err)
	}
	if err := opts.Store.WatchGrants(watch, b.grants.put); err != nil {
		stop()
		return nil, fmt.Errorf("broker: watching the store's grants: %w", err)
	}
	b.stopWatch = stop
	if b.now == nil {
		b.now = time.Now
	}
	if b.admin == "" {
		b.admin = AdminIdentity
	}
	return b, nil
}

// Servers names the servers the broker decides calls for.
func (b *Broker) Servers() []string { return slices.Clone(b.servers) }

func orDefault(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

// background runs work that must finish before the broker stops (audit
// writes, message updates). Once the broker is closing, work runs in the
// caller instead, so nothing is dropped and Wait is never raced by Add.
type background struct {
	pool    pool.Pool
	mu      sync.Mutex
	wg      sync.WaitGroup
	closing bool
}

func (g *background) Go(f func()) {
	g.mu.Lock()
	if g.closing {
		g.mu.Unlock()
		f()
		return
	}
	g.wg.Add(1)
	g.mu.Unlock()
	g.pool.Go(func() {
		defer g.wg.Done()
		f()
	})
}

func (g *background) Wait() {
	g.mu.Lock()
	g.closing = true
	g.mu.Unlock()
	g.wg.Wait()
}

// Start takes this replica's lease and abandons the approvals left pending
// by replicas that are gone (with bbolt, the previous run): nobody waits
// for their calls. Then it loads the grants and keeps the lease. Call it
// once, before serving.
func (b *Broker) Start(ctx context.Context) error {
	live, err := b.keepLease(ctx)
	if err != nil {
		return err
	}
	if err := b.lapseOrphans(ctx, live); err != nil {
		return err
	}
	if err := b.loadGrants(ctx); err != nil {
		return err
	}
	b.bg.Go(b.renewLease)
	return nil
}

// Close stops the broker: the calls waiting here are answered, their
// approvals abandoned, and background work (message updates, audit
// writes) is finished. Other replicas' approvals are theirs. The store
// stays open; its owner closes it.
func (b *Broker) Close() error {
	var err error
	b.closeOnce.Do(func() {
		close(b.done)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		_, err = b.abandonPending(ctx, "Airlock stopped while the call waited", func(a *Approval) (bool, time.Time) {
			return a.Holder == b.replica, time.Time{}
		})
		// An approved call not yet run can only run here: once this broker
		// stops, no retry can.
		var unused []string
		b.live.mu.Lock()
		for _, la := range b.live.byID {
			la.timer.Stop()
			for _, t := range []*time.Timer{la.grace, la.lapse} {
				if t != nil {
					t.Stop()
				}
			}
			// An attached wrap's (Holder) can still run through the
			// broker that takes the state over.
			if a := la.approval; a.Status == StatusApproved && a.ReleasedAt.IsZero() && a.Holder == b.replica {
				unused = append(unused, a.ID)
			}
		}
		b.live.mu.Unlock()
		for _, id := range unused {
			b.lapse(id, "Airlock stopped before the agent called again")
		}
		b.bg.Wait()
		// Last-used times are kept in memory between write-backs.
		b.flushTokenUse(ctx)
		b.stopWatch()
	})
	return err
}

// abandonPending ends the pending approvals that whose says are
// abandoned, and counts them. whose also says when the wait ended, if
// before now.
func (b *Broker) abandonPending(ctx context.Context, reason string, whose func(*Approval) (bool, time.Time)) (int, error) {
	tried := map[string]bool{}
	for {
		pending, err := b.store.Approvals(ctx, ApprovalQuery{Status: []Status{StatusPending}, Limit: 1000})
		if err != nil {
			return len(tried), fmt.Errorf("broker: listing pending approvals: %w", err)
		}
		left := 0
		progress := false
		for _, a := range pending {
			mine, at := whose(a)
			if !mine {
				continue
			}
			left++
			if tried[a.ID] {
				continue
			}
			tried[a.ID] = true
			progress = true
			b.endAt(a.ID, StatusAbandoned, reason, EventAbandoned, at)
		}
		if !progress {
			if left > 0 {
				return len(tried), fmt.Errorf("broker: %d approvals could not be marked abandoned", left)
			}
			return len(tried), nil
		}
	}
}

// Approval returns one approval.
func (b *Broker) Approval(ctx context.Context, id string) (*Approval, error) {
	return b.store.Approval(ctx, id)
}

// Approvals lists approvals, newest first.
func (b *Broker) Approvals(ctx context.Context, q ApprovalQuery) ([]*Approval, error) {
	return b.store.Approvals(ctx, q)
}

// Audit lists audit records, newest first (oldest first with q.After).
func (b *Broker) Audit(ctx context.Context, q AuditQuery) ([]*AuditRecord, error) {
	return b.store.Audit(ctx, q)
}

// VerifyAudit checks the audit log's hash chain.
func (b *Broker) VerifyAudit(ctx context.Context) (AuditVerification, error) {
	return b.store.VerifyAudit(ctx)
}
