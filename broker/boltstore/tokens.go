package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-mcp/airlock/broker"
)

// tokens are kept by id, without an index: they are few, and the broker
// reads one by the id its token carries.
var tokens = kind[broker.Token]{
	name:   "token",
	bucket: bucketTokens,
	id:     func(t *broker.Token) string { return t.ID },
	live:   func(*broker.Token) (time.Time, bool) { return time.Time{}, false },
	stored: func(s *Store, _ []byte) { s.tokenGen.Add(1) },
}

// CreateToken stores a new token's record and appends rec (if not nil) to
// the audit log, in one durable transaction; a name held by a token not
// revoked is refused in it.
func (s *Store) CreateToken(ctx context.Context, t *broker.Token, rec *broker.AuditRecord) error {
	if t.ID == "" || t.Name == "" {
		return fmt.Errorf("boltstore: create token: empty id or name")
	}
	data, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("boltstore: encode token %s: %w", t.ID, err)
	}
	var sealed []entry
	err = s.writeThen(ctx, func(tx *txn) error {
		b := tx.Bucket(bucketTokens)
		if b.Get([]byte(t.ID)) != nil {
			return fmt.Errorf("boltstore: token %s already exists", t.ID)
		}
		// Tokens are few and made rarely: a scan here keeps names unique
		// without an index to keep in step.
		err := b.ForEach(func(_, v []byte) error {
			var o broker.Token
			if err := json.Unmarshal(v, &o); err != nil {
				return fmt.Errorf("boltstore: decode token: %w", err)
			}
			if o.Name == t.Name && !o.Revoked() {
				return fmt.Errorf("boltstore: token %s: %w", t.Name, broker.ErrTokenExists)
			}
			return nil
		})
		if err != nil {
			return err
		}
		if sealed, err = tx.sealAudit(rec); err != nil {
			return err
		}
		if err := put(b, []byte(t.ID), data); err != nil {
			return err
		}
		return tx.putAudit(sealed)
	}, func() { s.tokenGen.Add(1) })
	if err != nil {
		return err
	}
	if rec != nil {
		*rec = *sealed[0].rec
	}
	return nil
}

// UpdateToken is UpdateApproval for tokens.
func (s *Store) UpdateToken(ctx context.Context, id string, fn func(*broker.Token) (*broker.AuditRecord, error)) (*broker.Token, error) {
	return update(ctx, s, tokens, id, fn)
}

// Token returns one token's record, or an error wrapping
// broker.ErrNotFound.
func (s *Store) Token(ctx context.Context, id string) (*broker.Token, error) {
	t := new(broker.Token)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		var data []byte
		if b := tx.Bucket(bucketTokens); b != nil {
			data = b.Get([]byte(id))
		}
		if data == nil {
			return fmt.Errorf("boltstore: token %s: %w", id, broker.ErrNotFound)
		}
		return tokens.decode(data, t)
	})
	if err != nil {
		return nil, err
	}
	return t, nil
}

// Tokens lists every token's record, newest first.
func (s *Store) Tokens(ctx context.Context) ([]*broker.Token, error) {
	var out []*broker.Token
	err := s.view(ctx, func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketTokens)
		if b == nil {
			return nil
		}
		return b.ForEach(func(_, v []byte) error {
			t := new(broker.Token)
			if err := tokens.decode(v, t); err != nil {
				return err
			}
			out = append(out, t)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	slices.Reverse(out) // ids sort by time
	return out, nil
}

// TokenGeneration moves once a change to a token is durable.
func (s *Store) TokenGeneration() uint64 { return s.tokenGen.Load() }
