package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

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
)

// Why a held call's context ended.
var (
	errClientCancelled = errors.New("the client cancelled the call")
	errClientGone      = errors.New("the client disconnected")
)

// holdKey identifies identical calls: a retry after "approval pending"
// joins the approval its first attempt opened.
type holdKey struct {
	principal, server, tool, digest string
}

// hold is the broker's live view of one approval it opened.
type hold struct {
	key     holdKey
	decided chan struct{} // closed once the approval leaves pending
	timer   *time.Timer   // expires the approval
	release func()        // gives back its count against the limits

	// Guarded by Broker.mu.
	approval *Approval
	waiters  int
	closed   bool
}

// holds tracks the approvals opened since the broker started.
type holds struct {
	mu    sync.Mutex
	byID  map[string]*hold
	byKey map[holdKey]*hold
}

// holdRequest is what the gate knows of a call the policy held, all that
// opening its approval needs.
type holdRequest struct {
	call     *Call
	in       *policy.Input
	decision policy.Decision
	previous json.RawMessage // the tool's first definition, when it changed
}

// heldCall is a call waiting for its approval: only what the wait and the
// release need, since thousands may wait at once.
type heldCall struct {
	s   *Session
	c   *call
	req *jsonrpc.Request // forwarded as it is once approved
	h   *hold
}

// awaitDecision stores the approval for a call the policy held (or joins
// an identical earlier call's), waits for people to decide, then releases
// or refuses the call. It runs on a goroutine of its own, started as soon
// as the policy has decided: the gate runs on a kept pool goroutine, which
// a wait of minutes should not hold, and thousands of calls may wait.
func (s *Session) awaitDecision(ctx context.Context, c *call, req *jsonrpc.Request, hr holdRequest) {
	defer c.cancel(nil)
	h, err := s.b.openHold(ctx, hr)
	var le *LimitError
	if errors.As(err, &le) {
		s.answerResult(c, s.b.refuseHeld(hr, le))
		return
	}
	if err != nil {
		ref := NewRef()
		s.log.Error("holding a call failed", "ref", ref, "tool", hr.call.Tool, "err", err)
		s.answerResult(c, toolError(fmt.Sprintf("Airlock could not hold this call for approval, so it was not run (ref %s).", ref)))
		return
	}
	s.conclude(ctx, c, req, s.b.waitHold(ctx, &heldCall{s: s, c: c, req: req, h: h}))
}

// waitHold is the wait itself; it returns the verdict for the call.
func (b *Broker) waitHold(ctx context.Context, hc *heldCall) verdict {
	h := hc.h
	a := b.current(h)
	log := b.log.With("approval_id", a.ID, "server", a.Server, "tool", a.Tool)
	defer b.leave(h)

	var holdWait <-chan time.Time
	tokenGiven := hc.c.token != ""
	if !tokenGiven && b.holdWait > 0 {
		t := time.NewTimer(b.holdWait)
		defer t.Stop()
		holdWait = t.C
	}
	var heartbeat <-chan time.Time
	if tokenGiven {
		t := time.NewTicker(b.heartbeat)
		defer t.Stop()
		heartbeat = t.C
		b.sendHeartbeat(hc, a)
	}
	for {
		select {
		case <-h.decided:
			return b.release(ctx, hc)
		case <-heartbeat:
			b.sendHeartbeat(hc, b.current(h))
		case <-holdWait:
			log.Info("caller told to retry", "hold_wait", b.holdWait)
			return result(pendingResult(b.current(h), b.now()))
		case <-ctx.Done():
			b.withdrawIfAlone(h, context.Cause(ctx))
			return verdict{} // nobody is left to answer
		case <-b.done:
			// Close abandons every pending approval right after this;
			// the caller learns that, unless the store fails to say so.
			t := time.NewTimer(5 * time.Second)
			defer t.Stop()
			select {
			case <-h.decided:
				return b.release(ctx, hc)
			case <-t.C:
				return refuse(fmt.Sprintf("Airlock is shutting down; the call was not run (ref %s).", a.ID))
			}
		}
	}
}

// openHold joins the open approval of an identical earlier call, or stores
// a new approval and announces it.
func (b *Broker) openHold(ctx context.Context, hc holdRequest) (*hold, error) {
	select {
	case <-b.done:
		return nil, errors.New("broker: shutting down")
	default:
	}
	key := holdKey{hc.call.Principal.ID, hc.call.Server, hc.call.Tool, hc.in.ArgumentsDigest}
	b.holds.mu.Lock()
	if h := b.holds.byKey[key]; h != nil && h.waiters == 0 && joinable(h.approval, b.now()) {
		h.waiters++
		b.holds.mu.Unlock()
		b.log.Info("retry joined its approval", "approval_id", h.approval.ID)
		return h, nil
	}
	b.holds.mu.Unlock()

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
	// Stored before anyone hears of it: a decision can only be about an
	// approval that exists.
	if err := b.store.CreateApproval(ctx, a, rec); err != nil {
		release()
		return nil, err
	}
	h := &hold{key: key, decided: make(chan struct{}), approval: a, waiters: 1, release: release}
	b.holds.mu.Lock()
	b.holds.byID[a.ID] = h
	b.holds.byKey[key] = h
	h.timer = time.AfterFunc(timeout, func() { b.expire(a.ID, timeout) })
	b.holds.mu.Unlock()
	b.metrics.Held(1)
	b.publish(ApprovalEvent{Type: "held", Approval: a})
	b.bg.Go(func() { b.notify(a) })
	return h, nil
}

// refuseHeld answers a call the policy held that a limit keeps from being
// held: it is neither held nor run, and the refusal is audited.
func (b *Broker) refuseHeld(hr holdRequest, le *LimitError) *mcp.CallToolResult {
	ref := NewRef()
	b.log.Warn("held call refused at a limit", "ref", ref, "server", hr.call.Server, "tool", hr.call.Tool, "limit", le.Limit)
	b.metrics.Call(hr.call.Server, "refused")
	rec := callRecord(EventRefused, hr.call, hr.in, hr.decision)
	rec.Time, rec.Reason, rec.Ref, rec.Actor = b.now(), le.Error(), ref, Airlock
	b.record(rec)
	return toolError(fmt.Sprintf("Airlock refused the call to %s: the policy holds it for approval (%s), but %s. "+
		"The call was not run; call again once pending calls are decided (ref %s).", hr.call.Tool, hr.decision.Reason, le, ref))
}

// joinable says whether a retry may use an approval: still pending, or
// approved but not yet used, and not past its expiry.
func joinable(a *Approval, now time.Time) bool {
	if now.After(a.ExpiresAt) {
		return false
	}
	return a.Status == StatusPending || (a.Status == StatusApproved && a.ReleasedAt.IsZero())
}

func (b *Broker) current(h *hold) *Approval {
	b.holds.mu.Lock()
	defer b.holds.mu.Unlock()
	return h.approval
}

func (b *Broker) leave(h *hold) {
	b.holds.mu.Lock()
	h.waiters--
	b.holds.mu.Unlock()
}

// withdrawIfAlone withdraws the approval when its last caller went away
// before anyone decided: its call must never run afterwards.
func (b *Broker) withdrawIfAlone(h *hold, cause error) {
	b.holds.mu.Lock()
	alone := h.waiters == 1 && h.approval.Status == StatusPending
	id := h.approval.ID
	b.holds.mu.Unlock()
	if !alone {
		return
	}
	reason := "the caller went away"
	if cause != nil && !errors.Is(cause, context.Canceled) {
		reason = cause.Error()
	}
	b.end(id, StatusWithdrawn, reason, EventWithdrawn)
}

// expire ends an approval nobody decided in time.
func (b *Broker) expire(id string, after time.Duration) {
	b.end(id, StatusExpired, "no decision within "+after.String(), EventExpired)
}

// end finishes a pending approval without a person.
func (b *Broker) end(id string, s Status, reason string, ev Event) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	a, err := b.store.UpdateApproval(ctx, id, func(a *Approval) (*AuditRecord, error) {
		if err := a.end(s, reason, b.now()); err != nil {
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

// settled takes in a changed approval: it wakes the approval's caller when
// it is decided, and tells the channels.
func (b *Broker) settled(a *Approval) {
	b.holds.mu.Lock()
	h := b.holds.byID[a.ID]
	if h != nil {
		h.approval = a
		if a.Status != StatusPending && !h.closed {
			h.closed = true
			close(h.decided)
			h.timer.Stop()
			h.release()
			b.metrics.Held(-1)
			// Its waiters keep what they need; the map must not keep
			// every decided call's arguments for the life of the broker.
			delete(b.holds.byID, a.ID)
		}
		if a.Status != StatusPending && a.Status != StatusApproved {
			delete(b.holds.byKey, h.key)
		}
	}
	b.holds.mu.Unlock()
	typ := "updated"
	if a.Status != StatusPending {
		typ = "decided"
		b.metrics.Waited(string(a.Status), a.DecidedAt.Sub(a.RequestedAt))
	}
	b.publish(ApprovalEvent{Type: typ, Approval: a})
	b.updateMessages(a)
}

// release forwards an approved call, once, if its tool did not change while
// it waited; otherwise it tells the caller what became of the approval.
func (b *Broker) release(ctx context.Context, hc *heldCall) verdict {
	h := hc.h
	a := b.current(h)
	if a.Status != StatusApproved {
		return refuse(outcomeText(a, b.now()))
	}
	// The tool must be the one the approver saw.
	def, err := hc.s.freshDefinition(ctx, a.Tool)
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
		return callOutcome(EventReleased, a, "", b.now()), nil
	})
	if err != nil {
		if errors.Is(err, errAlreadyReleased) {
			return refuse(fmt.Sprintf("This approval was already used by an earlier identical call; call again to ask for a new one (ref %s).", a.ID))
		}
		ref := NewRef()
		b.log.Error("releasing an approved call failed", "ref", ref, "approval_id", a.ID, "err", err)
		return refuse(fmt.Sprintf("Airlock could not record the release of this approved call, so it was not run (ref %s).", ref))
	}
	b.holds.mu.Lock()
	h.approval = updated
	delete(b.holds.byKey, h.key)
	b.holds.mu.Unlock()
	return verdict{forward: true}
}

var errAlreadyReleased = errors.New("broker: approval already released")

// sendHeartbeat keeps a caller that gave a progress token informed (and its
// client's request timeout reset) while the call waits.
func (b *Broker) sendHeartbeat(hc *heldCall, a *Approval) {
	n := hc.c.heartbeats.Add(1)
	left := a.ExpiresAt.Sub(b.now()).Round(time.Second)
	params, _ := json.Marshal(map[string]any{
		"progressToken": json.RawMessage(hc.c.token),
		"progress":      n,
		"message":       fmt.Sprintf("Waiting for approval of %s (ref %s): %s; %s left.", a.Tool, a.ID, a.Decision.Reason, left),
	})
	hc.s.send(&jsonrpc.Request{Method: "notifications/progress", Params: params}, hc.c.clientID)
}

// pendingResult tells a caller that could not be kept waiting to call
// again; the retry joins the same approval.
func pendingResult(a *Approval, now time.Time) *mcp.CallToolResult {
	return toolError(fmt.Sprintf("Approval pending (ref %s): %s. A person has been asked to approve this call to %s; it expires in %s. "+
		"Call the tool again with the same arguments to wait for the decision.",
		a.ID, a.Decision.Reason, a.Tool, a.ExpiresAt.Sub(now).Round(time.Second)))
}

// outcomeText says honestly why an approval did not release its call.
func outcomeText(a *Approval, now time.Time) string {
	switch a.Status {
	case StatusDenied:
		why := ""
		if a.Note != "" {
			why = ": " + a.Note
		}
		return fmt.Sprintf("The call to %s was denied by %s%s (ref %s).", a.Tool, a.DecidedBy, why, a.ID)
	case StatusExpired:
		return fmt.Sprintf("The call to %s was not approved: nobody decided within %s, so the request expired (ref %s).",
			a.Tool, a.ExpiresAt.Sub(a.RequestedAt).Round(time.Second), a.ID)
	case StatusWithdrawn:
		return fmt.Sprintf("The call to %s was withdrawn before anyone decided: %s (ref %s).", a.Tool, a.Note, a.ID)
	case StatusAbandoned:
		return fmt.Sprintf("The call to %s was abandoned: %s (ref %s).", a.Tool, a.Note, a.ID)
	}
	return fmt.Sprintf("The call to %s was not approved (%s, ref %s).", a.Tool, a.Status, a.ID)
}
