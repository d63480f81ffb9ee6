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
