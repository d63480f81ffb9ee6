package boltstore

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// grants are kept like approvals, with an index of the active ones by
// expiry: the broker loads them at start and sweeps the expired.
var grants = kind[broker.Grant]{
	name:   "grant",
	bucket: bucketGrants,
	index:  bucketGrantsActive,
	id:     func(g *broker.Grant) string { return g.ID },
	live: func(g *broker.Grant) (time.Time, bool) {
		return g.ExpiresAt, g.Status == broker.GrantActive
	},
	stored: func(s *Store, data []byte) {
		if err := s.grantFeed.Publish(data); err != nil {
			s.log.Error("announcing a stored grant failed", "err", err)
		}
	},
}

// WatchGrants is WatchApprovals for grants.
func (s *Store) WatchGrants(ctx context.Context, f func(*broker.Grant)) error {
	if s.readOnly {
		return errReadOnly
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return errClosed
	}
	if err := s.grantFeed.Watch(ctx, f); err != nil {
		return fmt.Errorf("boltstore: %w", err)
	}
	return nil
}

// Lease keeps leases in the file, each until a day after it runs out:
// the replicas are this process and the wraps attached to it, and one of
// those wraps may open the file next, while the others still wait on
// approvals they hold.
func (s *Store) Lease(ctx context.Context, replica string, ttl time.Duration) ([]broker.Lease, error) {
	now := time.Now()
	var out []broker.Lease
	err := s.write(ctx, func(tx *txn) error {
		out = out[:0]
		b := tx.Bucket(bucketLeases)
		data, err := json.Marshal(boltLease{Renewed: now, Until: now.Add(ttl)})
		if err != nil {
			return err
		}
		if err := put(b, []byte(replica), data); err != nil {
			return err
		}
		var stale [][]byte
		err = b.ForEach(func(k, v []byte) error {
			var l boltLease
			// Our own records; one that does not read is dropped.
			if json.Unmarshal(v, &l) != nil || now.After(l.Until.Add(24*time.Hour)) {
				stale = append(stale, bytes.Clone(k))
				return nil
			}
			out = append(out, broker.Lease{Replica: string(k), Renewed: l.Renewed, Live: now.Before(l.Until)})
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range stale {
			if err := b.Delete(k); err != nil {
				return &spoiledError{fmt.Errorf("boltstore: delete: %w", err)}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// boltLease is a lease as the file keeps it.
type boltLease struct {
	Renewed time.Time `json:"renewed"`
	Until   time.Time `json:"until"`
}

// CreateGrant stores a new grant and appends rec (if not nil) to the audit
// log, in one durable transaction.
func (s *Store) CreateGrant(ctx context.Context, g *broker.Grant, rec *broker.AuditRecord) error {
	return create(ctx, s, grants, g, rec)
}

// UpdateGrant is UpdateApproval for grants.
func (s *Store) UpdateGrant(ctx context.Context, id string, fn func(*broker.Grant) (*broker.AuditRecord, error)) (*broker.Grant, error) {
	return update(ctx, s, grants, id, fn)
}

// Grant returns one grant, or an error wrapping broker.ErrNotFound.
func (s *Store) Grant(ctx context.Context, id string) (*broker.Grant, error) {
	return get(ctx, s, grants, id)
}

// Grants lists grants newest first; a query for active grants reads only
// their index.
func (s *Store) Grants(ctx context.Context, q broker.GrantQuery) ([]*broker.Grant, error) {
	onlyActive := len(q.Status) > 0 && !slices.ContainsFunc(q.Status, func(s broker.GrantStatus) bool { return s != broker.GrantActive })
	return list(ctx, s, grants, onlyActive, q.Before, q.Limit, q.Matches)
}
