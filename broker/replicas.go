package broker

import (
	"context"
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
func (b *Broker) keepLease(ctx context.Context) error {
	leases, err := b.store.Lease(ctx, b.replica, 2*b.leaseTTL/3)
	if err != nil {
		return err
	}
	lastSeen := map[string]time.Time{}
	for _, l := range leases {
		if l.Live && !slices.Contains(b.gone, l.Replica) {
			lastSeen[l.Replica] = time.Time{}
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
	return err
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
		if err := b.keepLease(ctx); err != nil {
			b.log.Warn("renewing the lease failed", "replica", b.replica, "err", err)
		}
		cancel()
		b.expireOverdue()
	}
}

// expireOverdue ends this replica's approvals past their expiry that are
// still pending.
func (b *Broker) expireOverdue() {
	now := b.now()
	var overdue []*Approval
	b.live.mu.Lock()
	for _, la := range b.live.byID {
		if a := la.approval; a.Status == StatusPending && now.After(a.ExpiresAt) {
			overdue = append(overdue, a)
		}
	}
	b.live.mu.Unlock()
	for _, a := range overdue {
		b.expire(a.ID, a.ExpiresAt.Sub(a.RequestedAt))
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
