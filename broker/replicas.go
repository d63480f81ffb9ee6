package broker

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// DefaultLeaseTTL is how long a replica's lease lasts without renewal:
// the longest a dead replica's held calls stay pending before another
// abandons them.
const DefaultLeaseTTL = 30 * time.Second

// keepLease renews this replica's lease and abandons the pending approvals
// of replicas whose leases ran out: their clients waited on a process
// that is gone, so no one can release those calls. Several live replicas
// may try one approval at once; its compare-and-set lets one end it.
//
// The lease is renewed every third of the TTL and asked to last two
// thirds of it: a live replica misses one renewal before it counts as
// gone, and a dead one's approvals are abandoned within one TTL of its
// last renewal.
func (b *Broker) keepLease(ctx context.Context) ([]string, error) {
	live, err := b.store.Lease(ctx, b.replica, 2*b.leaseTTL/3)
	if err != nil {
		return nil, err
	}
	n, err := b.abandonPending(ctx, "the Airlock process holding the call stopped", func(a *Approval) bool {
		return !slices.Contains(live, a.Holder)
	})
	if n > 0 {
		b.log.Info("abandoned approvals whose Airlock process is gone", "count", n)
	}
	return live, err
}

// orphanScan bounds how many approved approvals, newest first, Start looks
// at for calls that were never run: older ones' windows are long past.
const orphanScan = 10_000

// lapseOrphans lapses the approved calls that were never run and can no
// longer be: those held by this replica's previous run or a replica that
// is gone (only the holder can run a call), and any past its retry
// window. Without it they would stay "approved" forever.
func (b *Broker) lapseOrphans(ctx context.Context, live []string) error {
	now := b.now()
	before, n := "", 0
	for n < orphanScan {
		page, err := b.store.Approvals(ctx, ApprovalQuery{Status: []Status{StatusApproved}, Before: before, Limit: 1000})
		if err != nil {
			return fmt.Errorf("broker: listing approved approvals: %w", err)
		}
		for _, a := range page {
			if !a.ReleasedAt.IsZero() {
				continue
			}
			switch {
			case a.Holder == b.replica || !slices.Contains(live, a.Holder):
				// At Start nothing waits here yet: this replica's name on
				// it is its previous run's.
				b.lapse(a.ID, "the Airlock process holding the call stopped before the agent called again")
			case now.After(b.retryUntil(a)):
				b.lapseAfter(a.ID, b.retryUntil(a))
			}
		}
		n += len(page)
		if len(page) < 1000 {
			break
		}
		before = page[len(page)-1].ID
	}
	return nil
}

// renewLease keeps the lease until the broker closes, and retries the
// expiry of this replica's own approvals: an expiry whose write failed (the
// database was away) must not leave a call waiting past its timeout.
func (b *Broker) renewLease() {
	t := time.NewTicker(b.leaseTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-b.done:
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), b.leaseTTL/3)
		if _, err := b.keepLease(ctx); err != nil {
			b.log.Warn("renewing the lease failed", "replica", b.replica, "err", err)
		}
		cancel()
		b.expireOverdue()
	}
}

// expireOverdue ends this replica's approvals past their expiry that are
// still pending, and lapses its approved calls past their retry window.
func (b *Broker) expireOverdue() {
	now := b.now()
	var overdue, unused []*Approval
	b.live.mu.Lock()
	for _, la := range b.live.byID {
		a := la.approval
		switch {
		case a.Status == StatusPending && now.After(a.ExpiresAt):
			overdue = append(overdue, a)
		case a.Status == StatusApproved && a.ReleasedAt.IsZero() && now.After(b.retryUntil(a)):
			unused = append(unused, a)
		}
	}
	b.live.mu.Unlock()
	for _, a := range overdue {
		b.expire(a.ID, a.ExpiresAt.Sub(a.RequestedAt))
	}
	for _, a := range unused {
		b.lapseAfter(a.ID, b.retryUntil(a))
	}
}

// Replica names this process among the replicas sharing the store.
func (b *Broker) Replica() string { return b.replica }
