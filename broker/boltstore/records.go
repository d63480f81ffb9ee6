package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-mcp/airlock/broker"
)

// kind describes a kind of record kept the same way as approvals and
// grants: JSON by time-sortable id in one bucket, plus an index of the live
// ones (pending approvals, active grants) keyed by expiry then id. Few are
// live at a time however long the history, so listing them and finding
// the next to expire stay cheap.
type kind[T any] struct {
	name   string // for messages: "approval", "grant"
	bucket []byte
	index  []byte
	id     func(*T) string
	// live reports whether the record belongs in the index, and its
	// expiry.
	live func(*T) (expires time.Time, ok bool)
	// stored, if set, announces a record's stored encoding once the write
	// that changed it is durable (see write.stored).
	stored func(s *Store, data []byte)
}

// writeKind runs apply as s.write does, then k.stored with the record's
// encoding as apply left it, when k has one.
func writeKind[T any](ctx context.Context, s *Store, k kind[T], apply func(*txn) error, data *[]byte) error {
	if k.stored == nil {
		return s.write(ctx, apply)
	}
	return s.writeThen(ctx, apply, func() { k.stored(s, *data) })
}

// indexKey is a live record's key in its index: its expiry, so that the
// next to expire comes first, then its id. Nil for a record that is not
// live.
func (k kind[T]) indexKey(v *T) []byte {
	expires, ok := k.live(v)
	if !ok {
		return nil
	}
	ms := expires.UnixMilli()
	if expires.IsZero() || ms < 0 {
		ms = 0
	}
	id := k.id(v)
	return append(binary.BigEndian.AppendUint64(make([]byte, 0, 8+len(id)), uint64(ms)), id...)
}

// create stores a new record and appends rec (if not nil) to the audit
// log, in one durable transaction.
func create[T any](ctx context.Context, s *Store, k kind[T], v *T, rec *broker.AuditRecord) error {
	id := k.id(v)
	if id == "" {
		return fmt.Errorf("boltstore: create %s: empty id", k.name)
	}
	// Encoding here, in the caller's goroutine, keeps the writer's serial
	// work short.
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("boltstore: encode %s %s: %w", k.name, id, err)
	}
	index := k.indexKey(v)
	var sealed []entry
	err = writeKind(ctx, s, k, func(t *txn) error {
		b := t.Bucket(k.bucket)
		if b.Get([]byte(id)) != nil {
			return fmt.Errorf("boltstore: %s %s already exists", k.name, id)
		}
		var err error
		if sealed, err = t.sealAudit(rec); err != nil {
			return err
		}
		if err := put(b, []byte(id), data); err != nil {
			return err
		}
		if index != nil {
			if err := put(t.Bucket(k.index), index, nil); err != nil {
				return err
			}
		}
		return t.putAudit(sealed)
	}, &data)
	if err != nil {
		return err
	}
	if rec != nil {
		*rec = *sealed[0].rec
	}
	return nil
}

// update runs fn on the stored record inside the writer's transaction and
// stores what fn made of it, with fn's audit record. No other write runs
// between fn reading the record and its result being stored, so a
// compare-and-set in fn holds.
//
// fn must not call the store (it would wait for itself) and should be
// quick: every other write waits while it runs. It may run more than once
// (see write), each time on a fresh copy of the stored record.
func update[T any](ctx context.Context, s *Store, k kind[T], id string, fn func(*T) (*broker.AuditRecord, error)) (*T, error) {
	key := []byte(id)
	var (
		data   []byte
		rec    *broker.AuditRecord
		sealed []entry
	)
	err := writeKind(ctx, s, k, func(t *txn) error {
		b := t.Bucket(k.bucket)
		old := b.Get(key)
		if old == nil {
			return fmt.Errorf("boltstore: %s %s: %w", k.name, id, broker.ErrNotFound)
		}
		v := new(T)
		if err := json.Unmarshal(old, v); err != nil {
			return fmt.Errorf("boltstore: decode %s %s: %w", k.name, id, err)
		}
		oldIndex := k.indexKey(v)
		var err error
		if rec, err = fn(v); err != nil {
			return err // as it is: the caller's compare-and-set may branch on it
		}
		if k.id(v) != id {
			return fmt.Errorf("boltstore: update %s %s: fn changed its id to %q", k.name, id, k.id(v))
		}
		newIndex := k.indexKey(v)
		if data, err = json.Marshal(v); err != nil {
			return fmt.Errorf("boltstore: encode %s %s: %w", k.name, id, err)
		}
		if sealed, err = t.sealAudit(rec); err != nil {
			return err
		}
		if err := put(b, key, data); err != nil {
			return err
		}
		if !bytes.Equal(oldIndex, newIndex) {
			index := t.Bucket(k.index)
			if oldIndex != nil {
				if err := del(index, oldIndex); err != nil {
					return err
				}
			}
			if newIndex != nil {
				if err := put(index, newIndex, nil); err != nil {
					return err
				}
			}
		}
		return t.putAudit(sealed)
	}, &data)
	if err != nil {
		return nil, err
	}
	if rec != nil {
		*rec = *sealed[0].rec
	}
	v := new(T)
	if err := json.Unmarshal(data, v); err != nil {
		return nil, fmt.Errorf("boltstore: decode %s %s: %w", k.name, id, err)
	}
	return v, nil
}

// get returns one record, or an error wrapping broker.ErrNotFound.
func get[T any](ctx context.Context, s *Store, k kind[T], id string) (*T, error) {
	v := new(T)
	err := s.view(ctx, func(tx *bolt.Tx) error {
		data := tx.Bucket(k.bucket).Get([]byte(id))
		if data == nil {
			return fmt.Errorf("boltstore: %s %s: %w", k.name, id, broker.ErrNotFound)
		}
		return k.decode(data, v)
	})
	if err != nil {
		return nil, err
	}
	return v, nil
}

func (k kind[T]) decode(data []byte, v *T) error {
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("boltstore: decode %s: %w", k.name, err)
	}
	return nil
}

// list returns records newest first that match, with an id below before
// (when set), up to limit (0 means 100). With onlyLive it reads only the
// index of live records, not the whole history.
func list[T any](ctx context.Context, s *Store, k kind[T], onlyLive bool, before string, limit int, match func(*T) bool) ([]*T, error) {
	if limit <= 0 {
		limit = 100
	}
	var out []*T
	err := s.view(ctx, func(tx *bolt.Tx) error {
		// keep decodes data, which is only valid inside the transaction,
		// and reports whether to go on.
		keep := func(data []byte) (bool, error) {
			v := new(T)
			if err := k.decode(data, v); err != nil {
				return false, err
			}
			if match(v) {
				out = append(out, v)
			}
			return len(out) < limit, nil
		}
		b := tx.Bucket(k.bucket)
		if onlyLive {
			var ids []string
			err := tx.Bucket(k.index).ForEach(func(key, _ []byte) error {
				if len(key) <= 8 {
					return fmt.Errorf("boltstore: %s index key %x is too short", k.name, key)
				}
				if id := string(key[8:]); before == "" || id < before {
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
					return fmt.Errorf("boltstore: the %s index names %s, which is not stored", k.name, id)
				}
				if more, err := keep(data); !more || err != nil {
					return err
				}
			}
			return nil
		}
		c := b.Cursor()
		var key, v []byte
		if before != "" {
			// Seek finds the first id at or after before; the one before
			// it is the newest that qualifies.
			if key, _ = c.Seek([]byte(before)); key != nil {
				key, v = c.Prev()
			} else {
				key, v = c.Last()
			}
		} else {
			key, v = c.Last()
		}
		for ; key != nil; key, v = c.Prev() {
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
