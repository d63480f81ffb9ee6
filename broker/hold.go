package broker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// Defaults for holding calls.
const (
	// DefaultHoldWait is how long a caller without a progress token is kept
	// waiting before it is told to call again: under the 60 seconds after
	// which common clients give up on a request.
	DefaultHoldWait = 50 * time.Second
	// DefaultApprovalTimeout applies when the policy names no timeout.
	DefaultApprovalTimeout = 10 * time.Minute
	// DefaultHeartbeat spaces the progress notifications sent to a waiting
	// caller that gave a progress token.
	DefaultHeartbeat = 10 * time.Second
	// DefaultHoldWaitProgress is how long a caller with a progress token is
	// kept waiting before it is told to call again: under the 5 minutes
	// after which Cursor and VS Code give up on a request, progress or not.
	DefaultHoldWaitProgress = 4*time.Minute + 30*time.Second
	// DefaultCancelGrace is how long an approval whose client timed out
	// stays open for the client's retry before it is withdrawn.
	DefaultCancelGrace = 2 * time.Minute
	// DefaultApprovedRetryWindow is how long after an approval's expiry
	// an identical retry still runs an approved call whose client was not
	// waiting; then the approval lapses.
	DefaultApprovedRetryWindow = 10 * time.Minute
)

// Why a held call's context ended. The relay cancels a held call's
// context with one of these as its cause.
var (
	ErrClientCancelled = errors.New("the client cancelled the call")
	ErrClientGone      = errors.New("the client disconnected")
	ErrSessionClosed   = errors.New("the client's session ended")
	// ErrClientTimedOut marks, alongside ErrClientCancelled, a
	// cancellation whose client gave up waiting: it will likely call
	// again, so its approval stays open for Options.CancelGrace.
	ErrClientTimedOut = errors.New("the client's request timed out")
	// ErrHandedOver ends a held call's wait here without ending its
	// approval: the caller goes on waiting for it through another broker
	// (see Resume), since this one is stopping.
	ErrHandedOver = errors.New("the call's wait moved to another Airlock process")
)

// holdKey identifies identical calls: a retry after "approval pending"
// joins the approval its first attempt opened.
type holdKey struct {
	source, principal, server, tool, digest string // the same caller: source and id
	// session is the caller's session, unless Options.JoinAcrossSessions
	// lets an identified principal's other sessions join.
	session string
}

// holdKey is the key of call, whose arguments have digest.
func (b *Broker) holdKey(call *Call, digest string) holdKey {
	key := holdKey{call.Principal.Source, call.Principal.ID, call.Server, call.Tool, digest, call.Session}
	if b.joinAcrossSessions && call.Principal.ID != "" && call.Principal.Source != SourceAnonymous {
		// Anonymous callers are never one caller: one client's retry
		// must not take another's approval.
		key.session = ""
	}
	return key
}

// liveApproval is the broker's live view of one approval it opened for a
// call that waits in this process.
type liveApproval struct {
	key     holdKey
	decided chan struct{} // closed once the approval leaves pending
	timer   *time.Timer   // expires the approval
	release func()        // gives back its count against the limits

	// Guarded by liveApprovals.mu.
	approval *Approval
	waiters  int
	closed   bool
	grace    *time.Timer // withdraws it once a timed-out client did not call again
	lapse    *time.Timer // lapses it once approved and not run in time
}

// liveApprovals tracks the approvals opened since the broker started
// whose calls still wait here.
type liveApprovals struct {
	mu    sync.Mutex
	byID  map[string]*liveApproval
	byKey map[holdKey]*liveApproval
}

// heldCall is what the gate knows of a call the policy held: all that
// opening its approval needs.
type heldCall struct {
	call     *Call
	in       *policy.Input
	decision policy.Decision
	previous json.RawMessage // the tool's first definition, when it changed
}

// hold stores the approval for a call the policy held (or joins an
// identical earlier call's), waits for people to decide, then releases or
// refuses the call.
func (b *Broker) hold(ctx context.Context, hc *heldCall, caller Caller) Outcome {
	la, err := b.openApproval(ctx, hc, caller)
	var le *LimitError
	if errors.As(err, &le) {
		return refuse(b.refuseHeld(hc, le))
	}
	if err != nil {
		ref := NewRef()
		b.log.Error("holding a call failed", "ref", ref, "server", hc.call.Server, "tool", hc.call.Tool, "err", err)
		return refuse(fmt.Sprintf("Airlock could not hold this call for approval, so it was not run (ref %s).", ref))
	}
	return b.wait(ctx, hc.call, la, caller)
}

// wait is the wait itself: until the approval leaves pending, the caller
// can no longer be kept waiting, or it goes away.
func (b *Broker) wait(ctx context.Context, call *Call, la *liveApproval, caller Caller) Outcome {
	a := b.current(la)
	log := b.log.With("approval_id", a.ID, "server", a.Server, "tool", a.Tool)
	defer b.leave(la)

	var holdWait <-chan time.Time
	wait := b.holdWait
	if call.Progress {
		// Progress resets some clients' timeouts, not all (Cursor's and
		// VS Code's end at 5 minutes): even this caller is told in time.
		wait = b.holdWaitProgress
	}
	if call.Task {
		// Its client polls a task, with no request held open.
		wait = 0
	}
	if wait > 0 {
		t := time.NewTimer(wait)
		defer t.Stop()
		holdWait = t.C
	}
	var heartbeat <-chan time.Time
	if call.Progress && !call.Task {
		t := time.NewTicker(b.heartbeat)
		defer t.Stop()
		heartbeat = t.C
		caller.Waiting(b.waitingText(a))
	}
	for {
		select {
		case <-la.decided:
			return b.release(ctx, call, la, caller)
		case <-heartbeat:
			caller.Waiting(b.waitingText(b.current(la)))
		case <-holdWait:
			log.Info("caller told to retry", "hold_wait", wait)
			return refuse(pendingText(b.current(la), b.now()))
		case <-ctx.Done():
			if cause := context.Cause(ctx); !errors.Is(cause, ErrHandedOver) {
				b.withdrawIfAlone(la, cause)
			}
			return Outcome{} // nobody is left to answer
		case <-b.done:
			// Close abandons every pending approval right after this;
			// the caller learns that, unless the store fails to say so.
			t := time.NewTimer(5 * time.Second)
			defer t.Stop()
			select {
			case <-la.decided:
				return b.release(ctx, call, la, caller)
			case <-t.C:
				return refuse(fmt.Sprintf("Airlock is shutting down; the call was not run (ref %s).", a.ID))
			}
		}
	}
}

// openApproval joins the open approval of an identical earlier call, or
// stores a new approval and announces it.
//
// A HeldCaller hears of the approval before anyone else can: a broker that
// stops once people see the call must not leave its caller unable to find
// the approval again.
func (b *Broker) openApproval(ctx context.Context, hc *heldCall, caller Caller) (*liveApproval, error) {
	heldCaller, _ := caller.(HeldCaller)
	select {
	case <-b.done:
		return nil, errors.New("broker: shutting down")
	default:
	}
	key := b.holdKey(hc.call, hc.in.ArgumentsDigest)
	b.live.mu.Lock()
	if la := b.live.byKey[key]; la != nil && la.waiters == 0 && b.joinable(la.approval, b.now()) {
		la.waiters++
		a := la.approval
		id := a.ID
		if la.grace != nil {
			la.grace.Stop() // its client called again
			la.grace = nil
		}
		b.live.mu.Unlock()
		if heldCaller != nil {
			heldCaller.Held(Pending{ApprovalID: id, Reason: a.Decision.Reason, Left: a.ExpiresAt.Sub(b.now())})
		}
		b.log.Info("retry joined its approval", "approval_id", id)
		return la, nil
	}
	b.live.mu.Unlock()
	if la := b.joinStored(ctx, hc.call, key, hc.in.ArgumentsDigest); la != nil {
		a := b.current(la)
		if heldCaller != nil {
			heldCaller.Held(Pending{ApprovalID: a.ID, Reason: a.Decision.Reason, Left: a.ExpiresAt.Sub(b.now())})
		}
		b.log.Info("retry joined its approval, opened before this process owned the state", "approval_id", a.ID)
		return la, nil
	}

	now := b.now()
	timeout := time.Duration(hc.decision.Timeout)
	if timeout <= 0 {
		timeout = b.approvalTimeout
	}
	a := &Approval{
		ID:                 newApprovalID(now),
		Status:             StatusPending,
		Server:             hc.call.Server,
		Tool:               hc.call.Tool,
		Arguments:          hc.call.Arguments,
		ArgumentsDigest:    hc.in.ArgumentsDigest,
		ToolFingerprint:    hc.in.Tool.Fingerprint,
		Definition:         hc.call.Definition,
		PreviousDefinition: hc.previous,
		Principal:          hc.call.Principal,
		Client:             hc.call.Client,
		Session:            hc.call.Session,
		Holder:             cmp.Or(hc.call.Holder, b.replica),
		Decision:           hc.decision,
		RequestedAt:        now,
		ExpiresAt:          now.Add(timeout),
	}
	rec := callRecord(EventHeld, hc.call, hc.in, hc.decision)
	rec.ApprovalID = a.ID
	rec.Ref = a.ID
	// Counted before it is stored, so that concurrent calls cannot pass a
	// limit together.
	release, err := b.limits.hold(hc.call.Principal, len(hc.call.Arguments))
	if err != nil {
		return nil, err
	}
	// Known here before it is stored, so that a decision made at once (in
	// another process sharing the store) finds its waiter; stored before
	// anyone hears of it, since a decision can only be about an approval
	// that exists. Its caller alone hears of it first (see above).
	if heldCaller != nil {
		heldCaller.Held(Pending{ApprovalID: a.ID, Reason: a.Decision.Reason, Left: timeout})
	}
	la := &liveApproval{key: key, decided: make(chan struct{}), approval: a, waiters: 1, release: release}
	b.live.mu.Lock()
	b.live.byID[a.ID] = la
	b.live.byKey[key] = la
	la.timer = time.AfterFunc(timeout, func() { b.expire(a.ID, timeout) })
	b.live.mu.Unlock()
	if err := b.store.CreateApproval(ctx, a, rec); err != nil {
		b.live.mu.Lock()
		la.timer.Stop()
		delete(b.live.byID, a.ID)
		if b.live.byKey[key] == la {
			delete(b.live.byKey, key)
		}
		b.live.mu.Unlock()
		release()
		return nil, err
	}
	b.metrics.Held(1)
	b.bg.Go(func() { b.notify(a) })
	return la, nil
}

// refuseHeld answers a call the policy held that a limit keeps from being
// held: it is neither held nor run, and the refusal is audited.
func (b *Broker) refuseHeld(hc *heldCall, le *LimitError) string {
	ref := NewRef()
	b.log.Warn("held call refused at a limit", "ref", ref, "server", hc.call.Server, "tool", hc.call.Tool, "limit", le.Limit)
	b.metrics.Call(hc.call.Server, "refused")
	rec := callRecord(EventRefused, hc.call, hc.in, hc.decision)
	rec.Time, rec.Reason, rec.Ref, rec.Actor = b.now(), le.Error(), ref, Airlock
	b.record(rec)
	return heldRefusedText(hc.call.Tool, hc.decision.Reason, le, ref)
}

// heldRefusedText tells a caller that a call the policy held was refused at
// a limit.
func heldRefusedText(tool, reason string, le *LimitError, ref string) string {
	return fmt.Sprintf("Airlock refused the call to %s: the policy holds it for approval%s, but %s. "+
		"The call was not run; call again once pending calls are decided (ref %s).", tool, paren(reason), clause(le.Error()), ref)
}

// joinable says whether a retry may use an approval: still pending and
// not past its expiry, or approved but not yet used and within its retry
// window (a person said yes; the agent may have been told "pending" just
// before).
func (b *Broker) joinable(a *Approval, now time.Time) bool {
	switch {
	case a.Status == StatusPending:
		return !now.After(a.ExpiresAt)
	case a.Status == StatusApproved && a.ReleasedAt.IsZero():
		return !now.After(b.retryUntil(a))
	}
	return false
}

// retryUntil is when an approved call not yet run lapses. Approvals stored
// before RetryUntil was kept get the window from their expiry.
func (b *Broker) retryUntil(a *Approval) time.Time {
	if !a.RetryUntil.IsZero() {
		return a.RetryUntil
	}
	return a.ExpiresAt.Add(b.retryWindow)
}

// callerWaits says whether a caller waits here for the approval id now.
func (b *Broker) callerWaits(id string) bool {
	b.live.mu.Lock()
	defer b.live.mu.Unlock()
	la := b.live.byID[id]
	return la != nil && la.waiters > 0
}

func (b *Broker) current(la *liveApproval) *Approval {
	b.live.mu.Lock()
	defer b.live.mu.Unlock()
	return la.approval
}

func (b *Broker) leave(la *liveApproval) {
	b.live.mu.Lock()
	la.waiters--
	b.live.mu.Unlock()
}

// withdrawIfAlone withdraws the approval when its last caller went away
// before anyone decided: its call must never run afterwards. A client
// that timed out will likely call again: its approval stays joinable for
// the cancel grace, and is withdrawn after it unless a retry joined.
func (b *Broker) withdrawIfAlone(la *liveApproval, cause error) {
	reason := "the caller went away"
	if cause != nil && !errors.Is(cause, context.Canceled) {
		reason = cause.Error()
	}
	b.live.mu.Lock()
	alone := la.waiters == 1 && la.approval.Status == StatusPending
	id := la.approval.ID
	if alone && b.cancelGrace > 0 && errors.Is(cause, ErrClientTimedOut) {
		if la.grace != nil {
			la.grace.Stop()
		}
		la.grace = time.AfterFunc(b.cancelGrace, func() { b.graceOver(la, reason) })
		alone = false
	}
	b.live.mu.Unlock()
	if !alone {
		return
	}
	b.end(id, StatusWithdrawn, reason, EventWithdrawn)
}

// graceOver withdraws an approval whose timed-out client did not call
// again within the cancel grace. Once decided it is not withdrawn: an
// approval nobody runs lapses instead.
func (b *Broker) graceOver(la *liveApproval, reason string) {
	b.live.mu.Lock()
	alone := la.waiters == 0 && la.approval.Status == StatusPending && la.grace != nil
	la.grace = nil
	id := la.approval.ID
	b.live.mu.Unlock()
	if alone {
		b.end(id, StatusWithdrawn, reason, EventWithdrawn)
	}
}

// expire ends an approval nobody decided in time.
func (b *Broker) expire(id string, after time.Duration) {
	b.end(id, StatusExpired, "no decision within "+after.String(), EventExpired)
}

// lapseAfter lapses an approved call nobody ran by its retry window's end.
func (b *Broker) lapseAfter(id string, until time.Time) {
	b.lapse(id, "the agent did not call again by "+until.UTC().Format(time.RFC3339))
}

// lapse ends an approved call that was never run and can no longer be:
// without it, the approval would say "approved" forever of a call that
// did not run.
func (b *Broker) lapse(id, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := b.store.UpdateApproval(ctx, id, func(a *Approval) (*AuditRecord, error) {
		if err := a.lapse(reason); err != nil {
			return nil, err
		}
		return callOutcome(EventLapsed, a, reason, b.now()), nil
	})
	var de *DecidedError
	switch {
	case errors.As(err, &de):
		return // released (or ended) first
	case err != nil:
		b.log.Error("lapsing an approval failed", "approval_id", id, "err", err)
		return
	}
	b.log.Info("approved call lapsed", "approval_id", id, "server", a.Server, "tool", a.Tool)
	// Not settled: its wait was measured when it was approved.
	b.updateMessages(a)
}

// end finishes a pending approval without a person.
func (b *Broker) end(id string, s Status, reason string, ev Event) {
	b.endAt(id, s, reason, ev, time.Time{})
}

// endAt is end for an approval whose wait ended at at, before now (zero
// means now): when the process its caller waited in was last alive.
func (b *Broker) endAt(id string, s Status, reason string, ev Event, at time.Time) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := b.store.UpdateApproval(ctx, id, func(a *Approval) (*AuditRecord, error) {
		when := b.now()
		if !at.IsZero() && at.Before(when) {
			when = at
			if when.Before(a.RequestedAt) {
				when = a.RequestedAt
			}
		}
		if err := a.end(s, reason, when); err != nil {
			return nil, err
		}
		return outcomeRecord(ev, a), nil
	})
	var de *DecidedError
	switch {
	case errors.As(err, &de):
		return // decided first: the decision stands
	case err != nil:
		b.log.Error("ending an approval failed", "approval_id", id, "status", s, "err", err)
		return
	}
	b.settled(a)
}

// changed takes in an approval as the store now has it, whoever changed
// it, here or in another replica: live views hear of it, and when it has
// left pending, the calls waiting for it here wake up. The store's change
// feed calls it (Store.WatchApprovals), perhaps from its writing goroutine
// with its locks held: it must not call the store.
func (b *Broker) changed(a *Approval) {
	b.publish(ApprovalEvent{Type: eventType(a), Approval: a})
	b.track(a)
}

// track takes in a's current state for the calls waiting for it here.
func (b *Broker) track(a *Approval) {
	b.live.mu.Lock()
	defer b.live.mu.Unlock()
	la := b.live.byID[a.ID]
	if la == nil || (la.closed && a.Status == StatusPending) {
		return // a decided approval is never pending again
	}
	la.approval = a
	if a.Status != StatusPending && !la.closed {
		la.closed = true
		close(la.decided)
		la.timer.Stop()
		if la.grace != nil {
			la.grace.Stop()
			la.grace = nil
		}
		la.release()
		b.metrics.Held(-1)
	}
	if unused := a.Status == StatusApproved && a.ReleasedAt.IsZero(); unused {
		// Kept until a retry runs it or it lapses: its client may have
		// been told "pending" and will call again.
		if la.lapse == nil {
			until := b.retryUntil(a)
			la.lapse = time.AfterFunc(until.Sub(b.now()), func() { b.lapseAfter(a.ID, until) })
		}
		return
	}
	if a.Status != StatusPending {
		if la.lapse != nil {
			la.lapse.Stop()
		}
		// Its waiters keep what they need; the maps must not keep every
		// decided call's arguments for the life of the broker.
		delete(b.live.byID, a.ID)
		if b.live.byKey[la.key] == la {
			delete(b.live.byKey, la.key)
		}
	}
}

// eventType names a change for live views. A pending approval without
// votes or message references has just been stored: every later change
// to a pending approval adds one or the other (a vote, the notifiers'
// references), and every other one ends it.
func eventType(a *Approval) string {
	switch {
	case a.Status != StatusPending:
		return "decided"
	case len(a.Votes) == 0 && len(a.Messages) == 0:
		return "held"
	default:
		return "updated"
	}
}

// settled tells the notifiers' messages about an approval this broker
// changed: one replica updates them, the one that made the change. Its
// waiters and live views heard from the store already.
func (b *Broker) settled(a *Approval) {
	if a.Status != StatusPending {
		b.metrics.Waited(string(a.Status), a.DecidedAt.Sub(a.RequestedAt))
	}
	b.updateMessages(a)
}

// release forwards an approved call, once, if its tool did not change while
// it waited; otherwise it tells the caller what became of the approval.
func (b *Broker) release(ctx context.Context, call *Call, la *liveApproval, caller Caller) Outcome {
	a := b.current(la)
	if a.Status != StatusApproved {
		return refuse(outcomeText(a, b.now()))
	}
	// The tool must be the one the approver saw.
	def, err := caller.Definition(ctx, a.Tool, true)
	fp := ""
	if err == nil && def != nil {
		fp = def.Fingerprint
	}
	if err != nil || fp != a.ToolFingerprint {
		ref := a.ID
		why := "its definition changed while the call waited"
		if err != nil {
			why = "Airlock could not read its current definition"
			b.log.Warn("checking the tool before release failed", "approval_id", a.ID, "err", err)
		}
		b.record(callOutcome(EventBlocked, a, why, b.now()))
		return refuse(fmt.Sprintf("The call to %s was approved but not run: %s. Ask again so that an approver sees the new definition (ref %s).", a.Tool, why, ref))
	}
	updated, err := b.store.UpdateApproval(context.WithoutCancel(ctx), a.ID, func(a *Approval) (*AuditRecord, error) {
		if !a.ReleasedAt.IsZero() {
			return nil, errAlreadyReleased
		}
		a.ReleasedAt = b.now()
		rec := callOutcome(EventReleased, a, "", b.now())
		rec.Session = call.Session // the session that runs it, which may have joined
		return rec, nil
	})
	if err != nil {
		if errors.Is(err, errAlreadyReleased) {
			return refuse(fmt.Sprintf("This approval was already used by an earlier identical call; call again to ask for a new one (ref %s).", a.ID))
		}
		ref := NewRef()
		b.log.Error("releasing an approved call failed", "ref", ref, "approval_id", a.ID, "err", err)
		return refuse(fmt.Sprintf("Airlock could not record the release of this approved call, so it was not run (ref %s).", ref))
	}
	b.live.mu.Lock()
	la.approval = updated
	if la.lapse != nil {
		la.lapse.Stop()
	}
	delete(b.live.byID, a.ID)
	if b.live.byKey[la.key] == la {
		delete(b.live.byKey, la.key)
	}
	b.live.mu.Unlock()
	if !updated.CallerWaiting {
		// Its messages said it would run when the agent called again: now
		// it has.
		b.updateMessages(updated)
	}
	if stored, ok := b.grantsStoring.Load(a.ID); ok {
		// The vote that approved it came with an "always allow" that this
		// broker is storing: once the result is out, the agent's next call
		// must find it.
		select {
		case <-stored.(chan struct{}):
		case <-ctx.Done():
		}
	}
	return Outcome{Forward: true}
}

var errAlreadyReleased = errors.New("broker: approval already released")

// waitingText is what a caller kept waiting reads in each progress
// notification.
func (b *Broker) waitingText(a *Approval) string {
	left := a.ExpiresAt.Sub(b.now()).Round(time.Second)
	return fmt.Sprintf("Waiting for approval of %s (ref %s)%s %s left.", a.Tool, a.ID, colonSentence(a.Decision.Reason), left)
}

// pendingText tells a caller that could not be kept waiting to call
// again; the retry joins the same approval.
func pendingText(a *Approval, now time.Time) string {
	return fmt.Sprintf("Approval pending (ref %s)%s A person has been asked to approve this call to %s; it expires in %s. "+
		"Call the tool again with the same arguments to wait for the decision.",
		a.ID, colonSentence(a.Decision.Reason), a.Tool, a.ExpiresAt.Sub(now).Round(time.Second))
}

// outcomeText says honestly why an approval did not release its call.
func outcomeText(a *Approval, now time.Time) string {
	switch a.Status {
	case StatusDenied:
		return fmt.Sprintf("The call to %s was denied by %s%s (ref %s).", a.Tool, a.DecidedBy, colon(a.Note), a.ID)
	case StatusExpired:
		return fmt.Sprintf("The call to %s was not approved: nobody decided within %s, so the request expired (ref %s).",
			a.Tool, a.ExpiresAt.Sub(a.RequestedAt).Round(time.Second), a.ID)
	case StatusWithdrawn:
		return fmt.Sprintf("The call to %s was withdrawn before anyone decided%s (ref %s).", a.Tool, colon(a.Note), a.ID)
	case StatusAbandoned:
		return fmt.Sprintf("The call to %s was abandoned%s (ref %s).", a.Tool, colon(a.Note), a.ID)
	case StatusLapsed:
		return fmt.Sprintf("The call to %s was approved but never run%s; call again to ask anew (ref %s).", a.Tool, colon(a.Note), a.ID)
	}
	return fmt.Sprintf("The call to %s was not approved (%s, ref %s).", a.Tool, a.Status, a.ID)
}
