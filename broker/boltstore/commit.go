package boltstore

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"
)

const (
	// queueLen bounds the writes waiting for the writer; more callers
	// block in send, which queues them just the same.
	queueLen = 256
	// maxGroup bounds the writes in one transaction, so that a burst does
	// not build one huge commit.
	maxGroup = 512
)

// A write is one caller's change, made by the writer goroutine inside a
// transaction it shares with the other writes of its group.
//
// The rule that lets writes share a transaction: apply checks everything
// that can fail before it first changes the transaction. An error it
// returns before then leaves the transaction as it found it, so the other
// writes still commit. Changes go through put and del, which mark bbolt's
// own errors as spoiling the transaction; a spoiled transaction (or one
// in which apply panicked) is rolled back and the group retried without
// that write. Applies must therefore be safe to run more than once: they
// see the same state each time.
type write struct {
	apply func(*txn) error
	state atomic.Int32 // queued, taken or cancelled
	err   error        // set by the writer before done is closed
	done  chan struct{}
}

const (
	queued int32 = iota
	taken
	cancelled
)

// txn is a group's transaction as its writes see it: bbolt's, plus the
// head of the audit chain once a write has needed it.
type txn struct {
	*bolt.Tx
	head   auditHead
	loaded bool
}

// spoiledError marks an error after which the transaction may hold half a
// write and must not be committed.
type spoiledError struct{ err error }

func (e *spoiledError) Error() string { return e.err.Error() }
func (e *spoiledError) Unwrap() error { return e.err }

// panicError carries a panic in apply back to the caller, whose goroutine
// panics with it.
type panicError struct {
	value any
	stack []byte
}

func (e *panicError) Error() string {
	return fmt.Sprintf("%v\n\n[recovered in the boltstore writer; its stack:]\n%s", e.value, e.stack)
}

func put(b *bolt.Bucket, k, v []byte) error {
	if err := b.Put(k, v); err != nil {
		return &spoiledError{fmt.Errorf("boltstore: put: %w", err)}
	}
	return nil
}

func del(b *bolt.Bucket, k []byte) error {
	if err := b.Delete(k); err != nil {
		return &spoiledError{fmt.Errorf("boltstore: delete: %w", err)}
	}
	return nil
}

// commitMode says how writes reach the disk. Only group commit is used in
// production; the others are the benchmarks' baselines.
type commitMode int

const (
	groupCommit commitMode = iota
	updateEach             // one db.Update per write
	boltBatch              // db.Batch
)

// write runs apply in a durable transaction and returns once that
// transaction is on disk (or failed). Once the writer has taken the write
// the caller waits for its outcome even if ctx ends: a commit takes
// milliseconds, and "maybe stored" is worse than late.
func (s *Store) write(ctx context.Context, apply func(*txn) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstore: %w", err)
	}
	switch s.mode {
	case updateEach:
		return s.db.Update(func(tx *bolt.Tx) error { return apply(&txn{Tx: tx}) })
	case boltBatch:
		return s.db.Batch(func(tx *bolt.Tx) error { return apply(&txn{Tx: tx}) })
	}
	w := &write{apply: apply, done: make(chan struct{})}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return errClosed
	}
	select {
	case s.writes <- w:
		s.mu.RUnlock()
	case <-ctx.Done():
		s.mu.RUnlock()
		return fmt.Errorf("boltstore: %w", ctx.Err())
	}
	select {
	case <-w.done:
	case <-ctx.Done():
		if w.state.CompareAndSwap(queued, cancelled) {
			return fmt.Errorf("boltstore: %w", ctx.Err())
		}
		<-w.done
	}
	if pe, ok := errors.AsType[*panicError](w.err); ok {
		panic(pe)
	}
	return w.err
}

// run is the writer goroutine: it commits a group as soon as it has one,
// and while it commits, the next group queues. It exits when Close closes
// the queue and the queue is empty.
func (s *Store) run() {
	defer close(s.done)
	group := make([]*write, 0, maxGroup)
	for w := range s.writes {
		group = append(group[:0], w)
	collect:
		for len(group) < maxGroup {
			select {
			case w, ok := <-s.writes:
				if !ok {
					break collect
				}
				group = append(group, w)
			default:
				break collect
			}
		}
		s.commit(group)
	}
}

// commit makes group durable in one transaction, or as few as spoiled
// writes force, and releases each write's caller.
func (s *Store) commit(group []*write) {
	group = slices.DeleteFunc(group, func(w *write) bool { return !w.state.CompareAndSwap(queued, taken) })
	for len(group) > 0 {
		i, err := s.try(group)
		if i < 0 {
			for _, w := range group {
				if err != nil {
					// Whatever a write decided, it decided on a state
					// that never reached the disk.
					w.err = err
				}
				close(w.done)
			}
			if err != nil {
				s.log.Error("commit failed", "writes", len(group), "err", err)
			}
			return
		}
		s.log.Warn("a write spoiled its group's transaction; retrying the others", "writes", len(group)-1, "err", err)
		group[i].err = err
		close(group[i].done)
		group = slices.Delete(group, i, i+1)
	}
}

// try applies group in one transaction and commits it. When a write spoils
// the transaction, try rolls back and returns that write's index and
// error; otherwise it returns -1 and the commit's error, each write's own
// error being set.
func (s *Store) try(group []*write) (int, error) {
	tx, err := s.db.Begin(true)
	if err != nil {
		return -1, fmt.Errorf("boltstore: begin: %w", err)
	}
	// The writer alone changes the file, so the audit head a commit left
	// is still the head: the next transaction starts from it instead of
	// reading and decoding the last record again.
	t := &txn{Tx: tx, head: s.head, loaded: s.headKnown}
	s.headKnown = false // until this transaction commits
	for i, w := range group {
		w.err = apply(w, t)
		if w.err == nil {
			continue
		}
		_, spoiled := errors.AsType[*spoiledError](w.err)
		_, panicked := errors.AsType[*panicError](w.err)
		if spoiled || panicked {
			tx.Rollback()
			return i, w.err
		}
	}
	if err := tx.Commit(); err != nil {
		return -1, fmt.Errorf("boltstore: commit: %w", err)
	}
	s.head, s.headKnown = t.head, t.loaded
	return -1, nil
}

func apply(w *write, t *txn) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = &panicError{value: v, stack: debug.Stack()}
		}
	}()
	return w.apply(t)
}
