package broker

import (
	"context"
	"encoding/json"
	"sync"
	"time"
)

// Notifier tells approvers that a call is waiting for them: a Slack
// message, say. The broker calls every notifier in parallel, each under a
// timeout; one failing does not stop the others, and never decides
// anything.
type Notifier interface {
	// Name identifies the notifier's message reference in
	// Approval.Messages.
	Name() string
	// Notify announces a new approval. It returns a reference to the
	// message it sent (nil for none), which the broker stores with the
	// approval so that Update can find the message, even after a restart.
	Notify(ctx context.Context, a *Approval) (json.RawMessage, error)
}

// Updater is a Notifier that can change its message as the approval
// progresses: a vote toward a quorum, and the outcome, whoever decided it.
type Updater interface {
	Update(ctx context.Context, a *Approval) error
}

// notifyTimeout bounds each notifier's call.
const notifyTimeout = 10 * time.Second

// notify announces a stored approval on every channel and records the
// references of the messages sent.
func (b *Broker) notify(a *Approval) {
	if len(b.notifiers) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
	defer cancel()
	log := b.log.With("approval_id", a.ID)
	refs := make(map[string]json.RawMessage)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, n := range b.notifiers {
		wg.Go(func() {
			ref, err := n.Notify(ctx, a)
			if err != nil {
				log.Warn("notify failed", "notifier", n.Name(), "err", err)
				return
			}
			if ref != nil {
				mu.Lock()
				refs[n.Name()] = ref
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if len(refs) == 0 {
		return
	}
	updated, err := b.store.UpdateApproval(context.WithoutCancel(ctx), a.ID, func(a *Approval) (*AuditRecord, error) {
		if a.Messages == nil {
			a.Messages = make(map[string]json.RawMessage)
		}
		for k, v := range refs {
			a.Messages[k] = v
		}
		return nil, nil
	})
	if err != nil {
		log.Warn("storing message references failed", "err", err)
		return
	}
	// A decision may have landed while the messages were being sent; the
	// messages must show it.
	if updated.Status != StatusPending || len(updated.Votes) > 0 {
		b.updateMessages(updated)
	}
}

// updateMessages brings every channel's message up to date with a, in the
// background: the call that caused it must not wait for Slack.
func (b *Broker) updateMessages(a *Approval) {
	for _, n := range b.notifiers {
		u, ok := n.(Updater)
		if !ok {
			continue
		}
		b.bg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), notifyTimeout)
			defer cancel()
			if err := u.Update(ctx, a); err != nil {
				b.log.Warn("message update failed", "approval_id", a.ID, "notifier", n.Name(), "err", err)
			}
		})
	}
}
