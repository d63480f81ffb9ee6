package remote

import (
	"context"
	"fmt"
	"sync"

	"github.com/airlock-mcp/airlock/broker"
)

// Switch is the gate a wrap's relay uses: the broker that owns the state
// now, in this process or another, found again by next when it goes. A
// call in progress on a broker that goes moves to the next one: a call it
// held resumes its wait for the same approval there (Backend.Resume), so
// that a decision made before or after the change still reaches it; a call
// not yet held is checked again.
type Switch struct {
	next func(ctx context.Context) (Backend, error)

	ctx  context.Context // ends with Close
	stop context.CancelFunc

	mu      sync.Mutex
	cur     Backend
	finding chan struct{} // closed when a search for the next backend ends
	err     error         // the last search's failure
}

// NewSwitch makes a Switch that finds its backend with next: it becomes
// the owner (returning its own broker) or attaches to the owner (a Conn).
// next keeps trying until its context ends.
func NewSwitch(next func(ctx context.Context) (Backend, error)) *Switch {
	ctx, stop := context.WithCancel(context.Background())
	return &Switch{next: next, ctx: ctx, stop: stop}
}

// Close stops finding backends and detaches from a remote one.
func (s *Switch) Close() {
	s.stop()
	s.mu.Lock()
	cur := s.cur
	s.mu.Unlock()
	if c, ok := cur.(*Conn); ok {
		c.Close()
	}
}

// Backend returns the current backend, finding one first if there is
// none (or it went), until ctx ends.
func (s *Switch) Backend(ctx context.Context) (Backend, error) {
	for {
		s.mu.Lock()
		if s.cur != nil {
			b := s.cur
			s.mu.Unlock()
			return b, nil
		}
		if s.finding == nil {
			s.finding = make(chan struct{})
			go s.find(s.finding)
		}
		finding := s.finding
		s.mu.Unlock()
		select {
		case <-finding:
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		}
		s.mu.Lock()
		err := s.err
		cur := s.cur
		s.mu.Unlock()
		if cur == nil && err != nil {
			return nil, err
		}
	}
}

// find looks for the next backend, and watches a remote one so that the
// next is found as soon as it goes, with or without calls in progress:
// the approvals page must stay up while any wrap runs.
func (s *Switch) find(done chan struct{}) {
	b, err := s.next(s.ctx)
	s.mu.Lock()
	s.cur, s.err, s.finding = b, err, nil
	s.mu.Unlock()
	close(done)
	if c, ok := b.(*Conn); ok {
		go func() {
			<-c.Done()
			s.lost(c)
			if s.ctx.Err() == nil {
				s.Backend(s.ctx)
			}
		}()
	}
}

// lost forgets c if it is the current backend.
func (s *Switch) lost(c *Conn) {
	s.mu.Lock()
	if s.cur == Backend(c) {
		s.cur = nil
	}
	s.mu.Unlock()
}

// Check takes call through the current backend's gate, moving it to the
// next backend if that one goes first.
func (s *Switch) Check(ctx context.Context, call *broker.Call, caller broker.Caller) broker.Outcome {
	approval := ""
	for {
		b, err := s.Backend(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return broker.Outcome{}
			}
			return broker.Outcome{Refusal: fmt.Sprintf("Airlock could not reach the broker that owns its state (%v), so the call was not run.", err)}
		}
		c, remote := b.(*Conn)
		if !remote {
			if approval != "" {
				return b.Resume(ctx, approval, call, caller)
			}
			return b.Check(ctx, call, caller)
		}
		o, held, err := c.check(ctx, call, caller, approval)
		if err == nil {
			return o
		}
		approval = held
		s.lost(c)
	}
}

// Listed passes a session's tool list to the current backend, if any: a
// new one hears of the tools at their next listing.
func (s *Switch) Listed(server string, defs []*broker.ToolDefinition) {
	s.mu.Lock()
	b := s.cur
	s.mu.Unlock()
	if b != nil {
		b.Listed(server, defs)
	}
}
