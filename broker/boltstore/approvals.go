package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"

	"github.com/airlock-mcp/airlock/broker"
)

// CreateApproval stores a new approval and appends rec (if not nil) to the
// audit log, in one durable transaction.
func (s *Store) CreateApproval(ctx context.Context, a *broker.Approval, rec *broker.AuditRecord) error {
	if a.ID == "" {
		return errors.New("boltstore: create approval: empty id")
	}
	// Encoding here, in the caller's goroutine, keeps the writer's
	// serial work short.
	data, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("boltstore: encode approval %s: %w", a.ID, err)
	}
	id := []byte(a.ID)
	var index []byte
	if a.Status == broker.StatusPending {
		index = pendingKey(a.ExpiresAt, a.ID)
	}
	var sealed []entry
	err = s.write(ctx, func(t *txn) error {
		b := t.Bucket(bucketApprovals)
		if b.Get(id) != nil {
			return fmt.Errorf("boltstore: approval %s already exists", a.ID)
		}
		var err error
		if sealed, err = t.sealAudit(rec); err != nil {
			return err
		}
		if err := put(b, id, data); err != nil {
			return err
		}
		if index != nil {
			if err := put(t.Bucket(bucketPending), index, nil); err != nil {
				return err
			}
		}
		return t.putAudit(sealed)
	})
	if err != nil {
		return err
	}
	if rec != nil {
		*rec = *sealed[0].rec
	}
	return nil
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
	key := []byte(id)
	var (
		data   []byte
		rec    *broker.AuditRecord
		sealed []entry
	)
	err := s.write(ctx, func(t *txn) error {
		b := t.Bucket(bucketApprovals)
		old := b.Get(key)
		if old == nil {
			return fmt.Errorf("boltstore: approval %s: %w", id, broker.ErrNotFound)
		}
		a := new(broker.Approval)
		if err := json.Unmarshal(old, a); err != nil {
			return fmt.Errorf("boltstore: decode approval %s: %w", id, err)
		}
		var oldIndex, newIndex []byte
		if a.Status == broker.StatusPending {
			oldIndex = pendingKey(a.ExpiresAt, id)
		}
		var err error
		if rec, err = fn(a); err != nil {
			return err // as it is: the caller's compare-and-set may branch on it
		}
		if a.ID != id {
			return fmt.Errorf("boltstore: update approval %s: fn changed its id to %q", id, a.ID)
		}
		if a.Status == broker.StatusPending {
			newIndex = pendingKey(a.ExpiresAt, id)
		}
		if data, err = json.Marshal(a); err != nil {
			return fmt.Errorf("boltstore: encode approval %s: %w", id, err)
		}
		if sealed, err = t.sealAudit(rec); err != nil {
			return err
		}
		if err := put(b, key, data); err != nil {
			return err
		}
		if !bytes.Equal(oldIndex, newIndex) {
			pending := t.Bucket(bucketPending)
			if oldIndex != nil {
				if err := del(pending, oldIndex); err != nil {
					return err
				}
			}
			if newIndex != nil {
				if err := put(pending, newIndex, nil); err != nil {
					return err
				}
			}
		}
		return t.putAudit(sealed)
	})
	if err != nil {
		return nil, err
	}
	if rec != nil {
		*rec = *sealed[0].rec
	}
	a := new(broker.Approval)
	if err := json.Unmarshal(data, a); err != nil {
		return nil, fmt.Errorf("boltstore: decode approval %s: %w", id, err)
	}
	return a, nil
}

// pendingKey is an approval's key in the pending index: its expiry, so
// that the next to expire comes first, then its id.
func pendingKey(expires time.Time, id string) []byte {
	ms := expires.UnixMilli()
	if expires.IsZero() || ms < 0 {
		ms = 0
	}
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(ms)), id...)
}

// Approval returns one approval, or an error wrapping broker.ErrNotFound.
func (s *Store) Approval(ctx context.Context, id string) (*broker.Approval, error) {
	a := new(broker.Approval)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		data := tx.Bucket(bucketApprovals).Get([]byte(id))
		if data == nil {
			return fmt.Errorf("boltstore: approval %s: %w", id, broker.ErrNotFound)
		}
		return decodeApproval(data, a)
	})
	if err != nil {
		return nil, err
	}
	return a, nil
}

// Approvals lists approvals newest first. A query for pending approvals
// only reads the pending index, not the whole history.
func (s *Store) Approvals(ctx context.Context, q broker.ApprovalQuery) ([]*broker.Approval, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	var out []*broker.Approval
	err := s.view(ctx, func(tx *bolt.Tx) error {
		// keep decodes data, which is only valid inside the
		// transaction, and reports whether to go on.
		keep := func(data []byte) (bool, error) {
			a := new(broker.Approval)
			if err := decodeApproval(data, a); err != nil {
				return false, err
			}
			if q.Matches(a) {
				out = append(out, a)
			}
			return len(out) < limit, nil
		}
		b := tx.Bucket(bucketApprovals)
		if onlyPending(q.Status) {
			var ids []string
			err := tx.Bucket(bucketPending).ForEach(func(k, _ []byte) error {
				if len(k) <= 8 {
					return fmt.Errorf("boltstore: pending index key %x is too short", k)
				}
				if id := string(k[8:]); q.Before == "" || id < q.Before {
					ids = append(ids, id)
				}
				return nil
			})
			if err != nil {
				return err
			}
			slices.Sort(ids)
			for _, id := range slices.Backward(ids) {
				data := b.Get([]byte(id))
				if data == nil {
					return fmt.Errorf("boltstore: the pending index names approval %s, which is not stored", id)
				}
				if more, err := keep(data); !more || err != nil {
					return err
				}
			}
			return nil
		}
		c := b.Cursor()
		var k, v []byte
		if q.Before != "" {
			// Seek finds the first id at or after Before; the one
			// before it is the newest that qualifies.
			if k, _ = c.Seek([]byte(q.Before)); k != nil {
				k, v = c.Prev()
			} else {
				k, v = c.Last()
			}
		} else {
			k, v = c.Last()
		}
		for ; k != nil; k, v = c.Prev() {
			if more, err := keep(v); !more || err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

func onlyPending(ss []broker.Status) bool {
	return len(ss) > 0 && !slices.ContainsFunc(ss, func(s broker.Status) bool { return s != broker.StatusPending })
}

func decodeApproval(data []byte, a *broker.Approval) error {
	if err := json.Unmarshal(data, a); err != nil {
		return fmt.Errorf("boltstore: decode approval: %w", err)
	}
	return nil
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
