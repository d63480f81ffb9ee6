package broker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// Resume goes on waiting for approval id, which call's first wait opened
// in another broker that has since stopped (handing the call over with
// ErrHandedOver) or died: wraps attached to a broker take over its state
// when it goes (see broker/remote). The policy is not asked again: a
// person is deciding, or has decided, the call as it was held. The
// approval must be the call's: same holder, server, tool, session and
// arguments; otherwise, or once it has ended, the caller is told what
// became of it.
func (b *Broker) Resume(ctx context.Context, id string, call *Call, caller Caller) Outcome {
	p, err := readCallParams(call.Params)
	if err != nil {
		return Outcome{Malformed: "tools/call: " + err.Error()}
	}
	call.Tool, call.Arguments = p.Name, p.Arguments
	call.Principal.Person = b.Person(call.Principal.Source, call.Principal.ID)
	args := call.Arguments
	if len(args) == 0 {
		args = json.RawMessage(`{}`)
	}
	digest, err := policy.Digest(args)
	if err != nil {
		return refuse(fmt.Sprintf("Airlock could not read the arguments of this call again, so it was not run (ref %s).", id))
	}
	la, err := b.adopt(ctx, id, call, digest)
	if err != nil {
		ref := NewRef()
		b.log.Warn("resuming a held call failed", "ref", ref, "approval_id", id, "err", err)
		return refuse(fmt.Sprintf("Airlock lost track of this call's approval (ref %s, approval %s), so the call was not run. Call again to ask for a new one.", ref, id))
	}
	if la == nil {
		a, err := b.store.Approval(ctx, id)
		if err != nil {
			return refuse(fmt.Sprintf("Airlock lost track of this call's approval %s, so the call was not run. Call again to ask for a new one.", id))
		}
		return refuse(outcomeText(a, b.now()))
	}
	b.log.Info("held call resumed", "approval_id", id, "server", call.Server, "tool", call.Tool)
	return b.wait(ctx, call, la, caller)
}

// errNotTheCall refuses to resume an approval for a call it was not
// opened for.
var errNotTheCall = errors.New("broker: the approval is not this call's")

// adopt makes approval id live here for call, as openApproval does for a
// new one. It returns nil when the approval has ended and cannot release
// the call.
func (b *Broker) adopt(ctx context.Context, id string, call *Call, digest string) (*liveApproval, error) {
	a, err := b.store.Approval(ctx, id)
	if err != nil {
		return nil, err
	}
	if a.Holder != cmp.Or(call.Holder, b.replica) || a.Server != call.Server || a.Tool != call.Tool ||
		a.Session != call.Session || a.ArgumentsDigest != digest || a.Principal.ID != call.Principal.ID {
		return nil, errNotTheCall
	}
	key := b.holdKey(call, digest)
	b.live.mu.Lock()
	if la := b.live.byID[id]; la != nil {
		// Resumed twice (the caller reconnected twice), or joined.
		la.waiters++
		b.live.mu.Unlock()
		return la, nil
	}
	b.live.mu.Unlock()
	if !b.joinable(a, b.now()) {
		return nil, nil
	}
	// Counted again here: the limits are this broker's, and the broker
	// that counted it first has stopped. A call already held is not
	// refused at them.
	release, err := b.limits.hold(call.Principal, len(call.Arguments))
	if err != nil {
		release = func() {}
	}
	la := &liveApproval{key: key, decided: make(chan struct{}), approval: a, waiters: 1, release: release}
	b.live.mu.Lock()
	b.live.byID[id] = la
	b.live.byKey[key] = la
	timeout := a.ExpiresAt.Sub(a.RequestedAt)
	la.timer = time.AfterFunc(max(a.ExpiresAt.Sub(b.now()), 0), func() { b.expire(id, timeout) })
	b.live.mu.Unlock()
	b.metrics.Held(1)
	// A decision may have landed between the read and the registration:
	// read again. The wait sees a decision either way. (A pending read
	// says nothing new, and may be older than a decision the store's feed
	// brought meanwhile.)
	if now, err := b.store.Approval(ctx, id); err == nil && now.Status != StatusPending {
		b.track(now)
	}
	return la, nil
}

// joinStored finds the pending approval of an identical earlier call that
// this broker does not hold live: one its caller's wrap opened through the
// broker that owned the state before this one, which stopped after the
// caller was told to call again. Without it, the retry would ask people a
// second time. Only the caller's own (the same holder) is joined.
func (b *Broker) joinStored(ctx context.Context, call *Call, key holdKey, digest string) *liveApproval {
	holder := cmp.Or(call.Holder, b.replica)
	pending, err := b.store.Approvals(ctx, ApprovalQuery{Status: []Status{StatusPending}, Server: call.Server, Tool: call.Tool, Limit: 100})
	if err != nil {
		return nil
	}
	for _, a := range pending {
		stored := &Call{Server: a.Server, Tool: a.Tool, Principal: a.Principal, Session: a.Session}
		if a.Holder != holder || b.holdKey(stored, a.ArgumentsDigest) != key {
			continue
		}
		b.live.mu.Lock()
		_, live := b.live.byID[a.ID]
		b.live.mu.Unlock()
		if live {
			continue // waited on here: the live join decides
		}
		if la, err := b.adopt(ctx, a.ID, call, digest); err == nil && la != nil {
			return la
		}
	}
	return nil
}
