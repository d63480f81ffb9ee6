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
//
// It returns the replicas alive.
func (b *Broker) keepLease(ctx context.Context) ([]string, error) {
	leases, err := b.store.Lease(ctx, b.replica, 2*b.leaseTTL/3)
	if err != nil {
		return nil, err
	}
	lastSeen := map[string]time.Time{}
	var live []string
	for _, l := range leases {
		if l.Live && !slices.Contains(b.gone, l.Replica) {
			lastSeen[l.Replica] = time.Time{}
			live = append(live, l.Replica)
		} else {
			lastSeen[l.Replica] = l.Renewed
		}
	}
	n, err := b.abandonPending(ctx, "the Airlock process holding the call stopped", func(a *Approval) (bool, time.Time) {
		seen, known := lastSeen[a.Holder]
		if known && seen.IsZero() {
			return false, time.Time{} // live
		}
		// Its wait ended when its process was last alive, not now: a
		// restart long after a crash must not make the wait look longer.
		return true, seen
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
// longer be: those held by a replica that is gone (only the holder can run
// a call), and any past its retry window. Without it they would stay
// "approved" forever. This replica's own are not orphans: its name is new
// at every start, unless it is a wrap taking the state over, whose held
// calls resume their approvals after Start.
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
			case !slices.Contains(live, a.Holder):
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

// Lease renews the lease of replica, a process whose calls this broker
// holds for it (a wrap attached to this one: Call.Holder), as keepLease
// renews this broker's own.
func (b *Broker) Lease(ctx context.Context, replica string) error {
	_, err := b.store.Lease(ctx, replica, 2*b.leaseTTL/3)
	return err
}

// LeaseInterval is how often a lease is renewed.
func (b *Broker) LeaseInterval() time.Duration { return b.leaseTTL / 3 }
