package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-mcp/airlock/broker"
)

// SeenTool stores t if its tool was never seen on its server and returns
// the first record stored.
func (s *Store) SeenTool(ctx context.Context, t *broker.ToolRecord) (*broker.ToolRecord, error) {
	key := toolKey(t.Server, t.Tool)
	var stored []byte
	// Tools are listed far more often than they are new: look before
	// queueing a write.
	err := s.view(ctx, func(tx *bolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucketTools).Get(key))
		return nil
	})
	if err != nil {
		return nil, err
	}
	if stored == nil {
		data, err := json.Marshal(t)
		if err != nil {
			return nil, fmt.Errorf("boltstore: encode tool %s/%s: %w", t.Server, t.Tool, err)
		}
		err = s.write(ctx, func(tx *txn) error {
			b := tx.Bucket(bucketTools)
			if v := b.Get(key); v != nil {
				stored = bytes.Clone(v) // another sighting got here first
				return nil
			}
			stored = data
			return put(b, key, data)
		})
		if err != nil {
			return nil, err
		}
	}
	r := new(broker.ToolRecord)
	// Our own store's record; the definition in it stays raw bytes.
	if err := json.Unmarshal(stored, r); err != nil {
		return nil, fmt.Errorf("boltstore: decode tool %s/%s: %w", t.Server, t.Tool, err)
	}
	return r, nil
}

// toolKey is the server's length, the server and the tool, so that no two
// pairs share a key whatever bytes their names hold.
func toolKey(server, tool string) []byte {
	k := binary.AppendUvarint(make([]byte, 0, binary.MaxVarintLen64+len(server)+len(tool)), uint64(len(server)))
	return append(append(k, server...), tool...)
}

// ToolRecords lists every tool first seen, by server and tool, for
// copying the store elsewhere (airlock state copy).
func (s *Store) ToolRecords(ctx context.Context) ([]*broker.ToolRecord, error) {
	var out []*broker.ToolRecord
	err := s.view(ctx, func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTools).ForEach(func(k, v []byte) error {
			r := new(broker.ToolRecord)
			// Our own store's record, as SeenTool decodes it.
			if err := json.Unmarshal(v, r); err != nil {
				return fmt.Errorf("boltstore: decode tool record %x: %w", k, err)
			}
			out = append(out, r)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
