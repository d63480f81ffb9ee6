package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Feed fans a store's changes to one kind of record (approvals, grants)
// out to the functions given to WatchApprovals or WatchGrants, so that
// every store keeps the contract's rules the same way: each watcher gets
// its own copy, and one whose context is done is called no more. A store
// calls Watch from its Watch method and Publish for each change once it is
// stored, and Close when it closes. The zero value is ready to use; it is
// safe for concurrent use.
type Feed[T any] struct {
	mu       sync.Mutex
	watchers []*watcher[T]
	closed   bool
}

// ApprovalFeed is the feed of WatchApprovals.
type ApprovalFeed = Feed[Approval]

// GrantFeed is the feed of WatchGrants.
type GrantFeed = Feed[Grant]

type watcher[T any] struct {
	ctx  context.Context
	f    func(*T)
	stop func() bool // unregisters the context.AfterFunc that removes it
}

// ErrFeedClosed is what Watch returns once the feed is closed.
var ErrFeedClosed = errors.New("the store's change feed is closed")

// Watch adds f to the feed until ctx is done (so a ctx already done adds
// nothing for long). A nil f, or a closed feed, is an error.
func (fd *Feed[T]) Watch(ctx context.Context, f func(*T)) error {
	if ctx == nil || f == nil {
		return errors.New("watching a store needs a context and a function")
	}
	fd.mu.Lock()
	defer fd.mu.Unlock()
	if fd.closed {
		return ErrFeedClosed
	}
	w := &watcher[T]{ctx: ctx, f: f}
	// Without changes to publish, nothing else would notice that ctx is
	// done: the watcher and what f holds would stay until the store
	// closes.
	w.stop = context.AfterFunc(ctx, func() { fd.remove(w) })
	fd.watchers = append(fd.watchers, w)
	return nil
}

func (fd *Feed[T]) remove(w *watcher[T]) {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	fd.watchers = slices.DeleteFunc(fd.watchers, func(x *watcher[T]) bool { return x == w })
}

// Publish calls every watcher with its own copy of the record whose
// stored JSON encoding is data. It holds the feed's lock while the
// watchers run, so a store that publishes one record's changes in the
// order it made them (under its own lock, or from its one committing
// goroutine) delivers them in that order. A watcher whose context is done
// is dropped without a call, so that none is called after its context
// ended. Publish returns an error, having called nobody, only when data
// does not decode.
func (fd *Feed[T]) Publish(data []byte) error {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	if len(fd.watchers) == 0 {
		return nil
	}
	// data is the store's own encoding of a record the core built
	// (arguments and definitions in it stay raw bytes), not a client's or
	// a server's JSON: decoding it with encoding/json reads back what was
	// written.
	first := new(T)
	if err := json.Unmarshal(data, first); err != nil {
		return fmt.Errorf("change feed: decode: %w", err)
	}
	fd.watchers = slices.DeleteFunc(fd.watchers, func(w *watcher[T]) bool {
		if w.ctx.Err() != nil {
			w.stop()
			return true
		}
		// Each watcher gets a copy of its own: the first decoding, then
		// fresh ones of the bytes that decoded without error.
		a := first
		if a == nil {
			a = new(T)
			json.Unmarshal(data, a)
		}
		first = nil
		w.f(a)
		return false
	})
	return nil
}

// Close drops every watcher; later Watch calls fail with ErrFeedClosed.
func (fd *Feed[T]) Close() {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	for _, w := range fd.watchers {
		w.stop()
	}
	fd.watchers, fd.closed = nil, true
}

// watching reports how many watchers the feed holds, for tests.
func (fd *Feed[T]) watching() int {
	fd.mu.Lock()
	defer fd.mu.Unlock()
	return len(fd.watchers)
}
