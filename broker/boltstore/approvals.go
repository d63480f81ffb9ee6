package boltstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/airlock-mcp/airlock/broker"
)

// approvals are kept by id, with an index of the pending ones by expiry.
var approvals = kind[broker.Approval]{
	name:   "approval",
	bucket: bucketApprovals,
	index:  bucketPending,
	id:     func(a *broker.Approval) string { return a.ID },
	live: func(a *broker.Approval) (time.Time, bool) {
		return a.ExpiresAt, a.Status == broker.StatusPending
	},
	stored: (*Store).publish,
}

// publish announces a stored approval to the watchers. It runs in the
// writer goroutine, which commits one write at a time, so one approval's
// changes are announced in the order they were committed.
func (s *Store) publish(data []byte) {
	if err := s.feed.Publish(data); err != nil {
		s.log.Error("announcing a stored approval failed", "err", err)
	}
}

// WatchApprovals calls f with the approval as stored after every change to
// an approval, until ctx is done. f runs in the writer goroutine, after
// the change is on disk and before the caller that made it is released:
// every other write waits while it runs, and it must not call the store
// (it would wait for itself). A write that fails, or whose transaction is
// rolled back, is announced to nobody.
//
// The file is locked to one process, so every writer goes through this
// Store value and every change reaches f.
func (s *Store) WatchApprovals(ctx context.Context, f func(*broker.Approval)) error {
	if s.readOnly {
		return errReadOnly // nothing writes, so nothing would be announced
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	if err := s.feed.Watch(ctx, f); err != nil {
		return fmt.Errorf("boltstore: %w", err)
	}
	return nil
}

// CreateApproval stores a new approval and appends rec (if not nil) to the
// audit log, in one durable transaction.
func (s *Store) CreateApproval(ctx context.Context, a *broker.Approval, rec *broker.AuditRecord) error {
	return create(ctx, s, approvals, a, rec)
}

// UpdateApproval runs fn on the stored approval inside the writer's
// transaction and stores what fn made of it, with fn's audit record. No
// other write runs between fn reading the approval and its result being
// stored, so a compare-and-set in fn holds.
//
// fn must not call the store (it would wait for itself) and should be
// quick: every other write waits while it runs. It may run more than once
// (see write), each time on a fresh copy of the stored approval.
func (s *Store) UpdateApproval(ctx context.Context, id string, fn func(*broker.Approval) (*broker.AuditRecord, error)) (*broker.Approval, error) {
	return update(ctx, s, approvals, id, fn)
}

// Approval returns one approval, or an error wrapping broker.ErrNotFound.
func (s *Store) Approval(ctx context.Context, id string) (*broker.Approval, error) {
	return get(ctx, s, approvals, id)
}

// Approvals lists approvals newest first. A query for pending approvals
// only reads the pending index, not the whole history.
func (s *Store) Approvals(ctx context.Context, q broker.ApprovalQuery) ([]*broker.Approval, error) {
	onlyPending := len(q.Status) > 0 && !slices.ContainsFunc(q.Status, func(s broker.Status) bool { return s != broker.StatusPending })
	return list(ctx, s, approvals, onlyPending, q.Before, q.Limit, q.Matches)
}

// view runs fn in a read-only transaction.
func (s *Store) view(ctx context.Context, fn func(*bolt.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstore: %w", err)
	}
	if err := s.db.View(fn); err != nil {
		if errors.Is(err, bolterrors.ErrDatabaseNotOpen) {
			return errClosed
		}
		return err
	}
	return nil
}
