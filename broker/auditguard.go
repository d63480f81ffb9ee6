package broker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// EventAuditResumed closes a stretch in which audit writes failed: it
// counts the records written late before it and any dropped past the
// backlog's bound.
const EventAuditResumed Event = "audit.resumed"

// MaxAuditBacklog bounds the records of calls that ran while their audit
// write failed, kept in memory until the store takes writes again. Past
// it, only a count is kept, and the resuming record states it.
const MaxAuditBacklog = 1024

// auditRetry spaces the attempts to write the backlog while no call comes
// to try it.
const auditRetry = 5 * time.Second

// errAuditDown is why an allowed call is refused while the audit log
// cannot be written.
var errAuditDown = errors.New("the audit log cannot be written")

// auditGuard fails the gate closed once an audit write fails. An allowed
// call's record is written while the call runs (recordAsync), so a failing
// store is learned of only after the calls in flight went ahead; from then
// on no allowed call is forwarded until the records of those calls, kept
// here, are written: on the next call, or by the retry loop.
type auditGuard struct {
	down atomic.Bool // read on every allowed call; the rest is under mu

	mu      sync.Mutex
	since   time.Time
	lastErr error
	backlog []*AuditRecord
	dropped int
	retry   bool // the retry loop runs

	flush sync.Mutex // one attempt at a time; others do not wait for it
}

// AuditStatus says whether the audit log takes writes, for /healthz.
type AuditStatus struct {
	OK bool `json:"ok"`
	// Since is when writes began to fail; Error is the last failure.
	Since time.Time `json:"since,omitzero"`
	Error string    `json:"error,omitempty"`
	// Backlog counts the records of calls that ran unrecorded and wait
	// to be written late, Dropped those past MaxAuditBacklog.
	Backlog int `json:"backlog,omitempty"`
	Dropped int `json:"dropped,omitempty"`
}

// AuditStatus reports on the audit log's writes.
func (b *Broker) AuditStatus() AuditStatus {
	g := &b.audit
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.down.Load() {
		return AuditStatus{OK: true}
	}
	st := AuditStatus{Since: g.since, Backlog: len(g.backlog), Dropped: g.dropped}
	if g.lastErr != nil {
		st.Error = g.lastErr.Error()
	}
	return st
}

// auditFailed notes a failed write; ran is the record of a call that went
// ahead without it (nil for a call that did not run), kept to be written
// late.
func (b *Broker) auditFailed(ran *AuditRecord, err error) {
	g := &b.audit
	g.mu.Lock()
	if !g.down.Load() {
		g.since = b.now()
		b.log.Error("audit writes fail: allowed calls are refused until a write succeeds", "err", err)
	}
	g.down.Store(true)
	g.lastErr = err
	if ran != nil {
		if len(g.backlog) < MaxAuditBacklog {
			g.backlog = append(g.backlog, ran)
		} else {
			g.dropped++
		}
	}
	start := !g.retry
	g.retry = true
	g.mu.Unlock()
	if start {
		b.bg.Go(b.retryAudit)
	}
}

// auditOpen reports whether an allowed call may go ahead: always while
// writes succeed; after a failure, only once the backlog is written.
func (b *Broker) auditOpen(ctx context.Context) error {
	if !b.audit.down.Load() {
		return nil
	}
	if !b.audit.flush.TryLock() {
		return errAuditDown // another call is trying; this one does not queue behind it
	}
	defer b.audit.flush.Unlock()
	return b.flushAudit(ctx)
}

// retryAudit writes the backlog every auditRetry until it succeeds, so
// that the store's recovery is noticed (and /healthz clears) without a
// call to try it. When the broker closes, it tries once more.
func (b *Broker) retryAudit() {
	t := time.NewTimer(auditRetry)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.done:
			b.audit.flush.Lock()
			err := b.flushAudit(context.Background())
			b.audit.flush.Unlock()
			if err != nil {
				st := b.AuditStatus()
				b.log.Error("stopped with calls that ran but were never recorded", "backlog", st.Backlog, "dropped", st.Dropped, "err", err)
			}
			return
		}
		b.audit.flush.Lock()
		err := b.flushAudit(context.Background())
		b.audit.flush.Unlock()
		if err == nil {
			return
		}
		t.Reset(auditRetry)
	}
}

// flushAudit writes the backlog, marked late, and a resuming record, in
// one append; the caller holds g.flush. The resuming record is written
// even with an empty backlog: it is the probe that tells writes work.
func (b *Broker) flushAudit(ctx context.Context) error {
	g := &b.audit
	for {
		g.mu.Lock()
		if !g.down.Load() {
			g.mu.Unlock()
			return nil
		}
		since, dropped := g.since, g.dropped
		recs := make([]*AuditRecord, 0, len(g.backlog)+1)
		for _, r := range g.backlog {
			c := *r
			c.Late = true
			recs = append(recs, &c)
		}
		n := len(recs)
		g.mu.Unlock()

		reason := fmt.Sprintf("audit writes failed from %s; %d calls that ran meanwhile are recorded late, before this record", since.UTC().Format(time.RFC3339), n)
		if dropped > 0 {
			reason += fmt.Sprintf("; %d more ran but were not kept (over %d) and are not recorded", dropped, MaxAuditBacklog)
		}
		recs = append(recs, &AuditRecord{Time: b.now(), Event: EventAuditResumed, Actor: Airlock, Reason: reason})
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		err := b.store.AppendAudit(wctx, recs...)
		cancel()

		g.mu.Lock()
		if err != nil {
			g.lastErr = err
			g.mu.Unlock()
			return fmt.Errorf("%w: %v", errAuditDown, err)
		}
		g.backlog = g.backlog[n:]
		g.dropped -= dropped
		if len(g.backlog) > 0 || g.dropped > 0 {
			// Calls in flight failed while this was written: write theirs too.
			g.mu.Unlock()
			continue
		}
		g.backlog, g.since, g.lastErr = nil, time.Time{}, nil
		g.down.Store(false)
		g.retry = false
		g.mu.Unlock()
		b.log.Info("audit writes succeed again: allowed calls go ahead", "late", n, "dropped", dropped)
		return nil
	}
}

// refuseUnaudited answers an allowed call that cannot go ahead because
// the audit log cannot be written.
func (b *Broker) refuseUnaudited(call *Call, err error) Outcome {
	ref := NewRef()
	b.metrics.Call(call.Server, "refused")
	b.log.Error("allowed call refused: the audit log cannot be written", "ref", ref, "server", call.Server, "tool", call.Tool, "err", err)
	return refuse(fmt.Sprintf("Airlock cannot write its audit log, so it runs no call until it can; %s was not run (ref %s).", call.Tool, ref))
}
