package boltstore

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync/atomic"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-mcp/airlock/broker"
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
//
// A write of audit records alone (audit set) goes to the journal when its
// whole group is like it; apply then does not run.
type write struct {
	apply func(*txn) error
	audit []*broker.AuditRecord
	state atomic.Int32 // queued, taken or cancelled
	err   error        // set by the writer before done is closed
	// sealed holds the audit records as appended, by the journal or by
	// apply.
	sealed []entry
	// stored, if set, runs in the writer once the write is durable and
	// before its caller is released: what the write changed is announced
	// to the store's watchers then, and only then.
	stored func()
	done   chan struct{}
}

func newWrite(apply func(*txn) error) *write {
	return &write{apply: apply, done: make(chan struct{})}
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
	return s.submit(ctx, newWrite(apply))
}

// writeThen is write with stored run as the write is acknowledged (see
// write.stored).
func (s *Store) writeThen(ctx context.Context, apply func(*txn) error, stored func()) error {
	w := newWrite(apply)
	w.stored = stored
	return s.submit(ctx, w)
}

// submit queues w for the writer and waits for its outcome, as write.
func (s *Store) submit(ctx context.Context, w *write) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("boltstore: %w", err)
	}
	if s.readOnly {
		return errReadOnly
	}
	switch s.mode {
	case updateEach, boltBatch:
		// Baselines for the benchmarks: stored runs in the caller, so
		// they do not keep the feed's order between callers.
		run := s.db.Update
		if s.mode == boltBatch {
			run = s.db.Batch
		}
		err := run(func(tx *bolt.Tx) error { return w.apply(&txn{Tx: tx}) })
		if err == nil && w.stored != nil {
			w.stored()
		}
		return err
	}
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

// commit makes group durable, in the journal when it holds audit records
// alone, else in one transaction, or as few as spoiled writes force; and
// releases each write's caller.
func (s *Store) commit(group []*write) {
	group = slices.DeleteFunc(group, func(w *write) bool { return !w.state.CompareAndSwap(queued, taken) })
	if len(group) > 0 && !slices.ContainsFunc(group, func(w *write) bool { return w.audit == nil }) {
		s.appendJournal(group)
		if s.journal.due() {
			if _, err := s.try(nil); err != nil {
				s.log.Error("moving the audit journal into the database failed; it stays in the journal", "records", len(s.journal.pending), "err", err)
			}
		}
		return
	}
	for len(group) > 0 {
		i, err := s.try(group)
		if i < 0 {
			for _, w := range group {
				if err != nil {
					// Whatever a write decided, it decided on a state
					// that never reached the disk.
					w.err = err
				} else if w.err == nil && w.stored != nil {
					w.stored()
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

// appendJournal seals the group's records onto the chain and makes them
// durable in the journal, in one write and one sync.
func (s *Store) appendJournal(group []*write) {
	defer func() {
		for _, w := range group {
			close(w.done)
		}
	}()
	head, err := s.chainHead()
	if err != nil {
		for _, w := range group {
			w.err = err
		}
		return
	}
	var frames []byte
	var es []entry
	for _, w := range group {
		sealed, next, err := seal(head, w.audit)
		if err == nil {
			err = fitsFrame(sealed)
		}
		if err != nil {
			w.err = err
			continue
		}
		head, w.sealed = next, sealed
		for _, e := range sealed {
			frames = appendFrame(frames, e.data)
		}
		es = append(es, sealed...)
	}
	if err := s.journal.append(frames, es); err != nil {
		s.log.Error("audit journal write failed", "records", len(es), "err", err)
		for _, w := range group {
			w.err, w.sealed = err, nil
		}
		return
	}
	s.head, s.headKnown = head, true
	s.journaled.Store(int64(len(s.journal.pending)))
}

// chainHead is the head of the audit chain, journal included.
func (s *Store) chainHead() (auditHead, error) {
	if n := len(s.journal.pending); n > 0 {
		last := s.journal.pending[n-1].rec
		return auditHead{last.Seq, last.Hash}, nil
	}
	if s.headKnown {
		return s.head, nil
	}
	var head auditHead
	err := s.db.View(func(tx *bolt.Tx) (err error) {
		head, err = lastRecord(tx)
		return err
	})
	return head, err
}

// try applies group in one transaction and commits it, after moving the
// journal's records into the database: the transaction's own records
// follow them on the chain. When a write spoils the transaction, try rolls
// back and returns that write's index and error; otherwise it returns -1
// and the commit's error, each write's own error being set.
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
	moved := len(s.journal.pending)
	if moved > 0 {
		if err := t.putAudit(s.journal.pending); err != nil {
			tx.Rollback()
			return -1, err
		}
		t.loaded = true
	}
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
	if moved > 0 {
		if err := s.journal.moved(); err != nil {
			// The records are in the database; a replay skips them.
			s.log.Warn("emptying the audit journal failed", "err", err)
		}
		s.journaled.Store(0)
	}
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
