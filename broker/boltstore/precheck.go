package boltstore

import (
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// ErrDamaged reports a database file whose pages cannot be read.
var ErrDamaged = errors.New("the database file is damaged")

// precheck reads every page of the database at path that a read-write
// open would, before that open. bbolt's open rebuilds the free list
// (NoFreelistSync) by walking the pages in a goroutine of its own, where a
// damaged page panics beyond any recover and takes the process down with
// a stack trace. Here the same pages are read by cursors in this
// goroutine, read-only (which loads no free list), with faults turned
// into panics, so damage becomes an error naming the file.
func precheck(path string, timeout time.Duration) (err error) {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil // a new store
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: timeout})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return fmt.Errorf("boltstore: open %s: %w: another Airlock is probably running on it (gave up after %s)", path, ErrLocked, timeout)
	}
	if err != nil {
		return damaged(path, err)
	}
	defer db.Close()
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = damaged(path, fmt.Errorf("%v", p))
		}
	}()
	if err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	}); err != nil {
		return damaged(path, err)
	}
	return nil
}

// walk reads every key and value of b and of the buckets in it.
func walk(b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if v != nil {
			return nil
		}
		nested := b.Bucket(k)
		if nested == nil {
			return fmt.Errorf("bucket entry %x is neither a value nor a bucket", k)
		}
		return walk(nested)
	})
}

func damaged(path string, cause error) error {
	return fmt.Errorf("boltstore: %s: %w (%v). Airlock will not start on it. Stop Airlock, move the file aside "+
		"(with %s%s next to it, which continues its audit log) and keep it for inspection; then restore it from a backup, "+
		"or start with a fresh one, which begins a new audit log", path, ErrDamaged, cause, path, journalSuffix)
}
