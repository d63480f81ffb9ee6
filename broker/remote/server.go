package remote

import (
	"bufio"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// Backend is the approval core as a wrap reaches it: *broker.Broker.
type Backend interface {
	Check(ctx context.Context, call *broker.Call, caller broker.Caller) broker.Outcome
	Resume(ctx context.Context, approvalID string, call *broker.Call, caller broker.Caller) broker.Outcome
	Listed(server string, defs []*broker.ToolDefinition)
}

// Leaser renews the lease of an attached wrap while it is connected: its
// held calls' approvals name it as their Holder, and must outlive the
// owner's stop only while the wrap lives. *broker.Broker implements it.
type Leaser interface {
	Lease(ctx context.Context, replica string) error
	LeaseInterval() time.Duration
}

// Server serves a Backend to the wraps attached over a Unix socket.
type Server struct {
	backend Backend
	leaser  Leaser
	token   string
	log     *slog.Logger

	mu     sync.Mutex
	ln     net.Listener
	conns  map[*serverConn]bool
	closed bool
	wg     sync.WaitGroup
}

// NewServer makes a Server of b for peers that show token. A nil log
// discards.
func NewServer(b Backend, l Leaser, token string, log *slog.Logger) *Server {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{backend: b, leaser: l, token: token, log: log, conns: map[*serverConn]bool{}}
}

// Serve accepts wraps on ln until Close.
func (s *Server) Serve(ln net.Listener) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		ln.Close()
		return net.ErrClosed
	}
	s.ln = ln
	s.mu.Unlock()
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.isClosed() {
				return nil
			}
			return err
		}
		sc := &serverConn{s: s, c: c, enc: json.NewEncoder(c), checks: map[uint64]*serverCheck{}}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			continue
		}
		s.conns[sc] = true
		s.wg.Add(1)
		s.mu.Unlock()
		go sc.serve()
	}
}

func (s *Server) isClosed() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Close hands every attached wrap's calls over: their waits here end with
// broker.ErrHandedOver, which leaves their approvals pending, and their
// connections close, so that the wraps go on through the next owner. It
// returns once every connection's work here is done.
func (s *Server) Close() {
	s.mu.Lock()
	s.closed = true
	if s.ln != nil {
		s.ln.Close()
	}
	conns := make([]*serverConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.end(broker.ErrHandedOver)
	}
	s.wg.Wait()
}

// Attached counts the wraps attached now.
func (s *Server) Attached() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.conns)
}

// serverConn is one attached wrap.
type serverConn struct {
	s       *Server
	c       net.Conn
	replica string

	wmu sync.Mutex
	enc *json.Encoder

	mu      sync.Mutex
	checks  map[uint64]*serverCheck
	ended   error // why the connection ends; set once
	nextReq uint64
	waits   map[uint64]chan *frame // definition requests awaiting replies
}

// serverCheck is one check in progress for the wrap.
type serverCheck struct {
	cancel context.CancelCauseFunc
}

func (sc *serverConn) send(f *frame) error {
	sc.wmu.Lock()
	defer sc.wmu.Unlock()
	return sc.enc.Encode(f)
}

// end cancels the connection's checks with cause and closes it.
func (sc *serverConn) end(cause error) {
	sc.mu.Lock()
	if sc.ended == nil {
		sc.ended = cause
	}
	checks := make([]*serverCheck, 0, len(sc.checks))
	for _, c := range sc.checks {
		checks = append(checks, c)
	}
	sc.mu.Unlock()
	for _, c := range checks {
		c.cancel(cause)
	}
	sc.c.Close()
}

func (sc *serverConn) serve() {
	var work sync.WaitGroup
	defer func() {
		// The wrap is gone (or the server closing): its calls' clients
		// can no longer be answered.
		sc.end(broker.ErrSessionClosed)
		work.Wait()
		sc.s.mu.Lock()
		delete(sc.s.conns, sc)
		sc.s.mu.Unlock()
		sc.s.wg.Done()
	}()
	// Frames are read as structs only from a peer that showed the admin
	// token (the hello is compared byte for byte); what the MCP client and
	// server wrote travels in them as bytes (see frame).
	dec := json.NewDecoder(bufio.NewReader(sc.c))
	sc.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	var hello frame
	if err := dec.Decode(&hello); err != nil || hello.Op != opHello {
		sc.s.log.Warn("attached wrap: no hello", "err", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(hello.Token), []byte(sc.s.token)) != 1 || hello.Replica == "" {
		sc.send(&frame{Op: opOK, Err: "wrong admin token"})
		sc.s.log.Warn("attached wrap refused: wrong admin token")
		return
	}
	sc.c.SetReadDeadline(time.Time{})
	sc.replica = hello.Replica
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	if err := sc.s.leaser.Lease(ctx, sc.replica); err != nil {
		sc.send(&frame{Op: opOK, Err: "lease: " + err.Error()})
		return
	}
	if err := sc.send(&frame{Op: opOK}); err != nil {
		return
	}
	sc.s.log.Info("wrap attached", "replica", sc.replica)
	defer sc.s.log.Info("wrap detached", "replica", sc.replica)
	work.Go(func() { sc.keepLease(ctx) })
	for {
		f := new(frame)
		if err := dec.Decode(f); err != nil {
			return
		}
		switch f.Op {
		case opCheck, opResume:
			if f.Call == nil {
				continue
			}
			cctx, cancel := context.WithCancelCause(context.Background())
			sc.mu.Lock()
			if sc.ended != nil {
				sc.mu.Unlock()
				cancel(nil)
				return
			}
			if _, dup := sc.checks[f.ID]; dup {
				sc.mu.Unlock()
				cancel(nil)
				continue
			}
			sc.checks[f.ID] = &serverCheck{cancel: cancel}
			sc.mu.Unlock()
			work.Go(func() { sc.check(cctx, cancel, f) })
		case opCancel:
			sc.mu.Lock()
			c := sc.checks[f.ID]
			sc.mu.Unlock()
			if c != nil {
				c.cancel(readCause(f))
			}
		case opDefinition:
			sc.mu.Lock()
			ch := sc.waits[f.Req]
			delete(sc.waits, f.Req)
			sc.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		case opListed:
			var defs []*broker.ToolDefinition
			now := time.Now()
			for _, raw := range f.Defs {
				if d, err := definition(raw); err == nil && d != nil {
					d.ListedAt = now
					defs = append(defs, d)
				}
			}
			sc.s.backend.Listed(f.Server, defs)
		}
	}
}

// keepLease renews the wrap's lease while it is attached.
func (sc *serverConn) keepLease(ctx context.Context) {
	t := time.NewTicker(sc.s.leaser.LeaseInterval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := sc.s.leaser.Lease(ctx, sc.replica); err != nil && ctx.Err() == nil {
				sc.s.log.Warn("renewing an attached wrap's lease failed", "replica", sc.replica, "err", err)
			}
		}
	}
}

// check runs one check or resume and sends its outcome.
func (sc *serverConn) check(ctx context.Context, cancel context.CancelCauseFunc, f *frame) {
	defer func() {
		sc.mu.Lock()
		delete(sc.checks, f.ID)
		sc.mu.Unlock()
		cancel(nil)
	}()
	w := f.Call
	call := &broker.Call{
		Server: w.Server, Transport: w.Transport, TrustAnnotations: w.TrustAnnotations,
		Params: json.RawMessage(w.Params), Client: w.Client, Session: w.Session, Principal: w.Principal,
		Received: time.Unix(0, w.Received), Progress: w.Progress, Task: w.Task,
		Holder: sc.replica,
	}
	caller := &remoteCaller{sc: sc, id: f.ID}
	var o broker.Outcome
	if f.Op == opResume {
		o = sc.s.backend.Resume(ctx, f.Approval, call, caller)
	} else {
		o = sc.s.backend.Check(ctx, call, caller)
	}
	if errors.Is(context.Cause(ctx), broker.ErrHandedOver) {
		return // the wrap goes on elsewhere; this connection is closing
	}
	out := &frame{Op: opOutcome, ID: f.ID, Forward: o.Forward, Audited: o.Audited != nil, Refusal: o.Refusal, Malformed: o.Malformed}
	if err := sc.send(out); err != nil || o.Audited == nil {
		return
	}
	a := &frame{Op: opAudited, ID: f.ID}
	if err := <-o.Audited; err != nil {
		a.Err = err.Error()
	}
	sc.send(a)
}

// remoteCaller is the broker.Caller of a check from an attached wrap.
type remoteCaller struct {
	sc *serverConn
	id uint64
}

func (rc *remoteCaller) Definition(ctx context.Context, tool string, fresh bool) (*broker.ToolDefinition, error) {
	sc := rc.sc
	ch := make(chan *frame, 1)
	sc.mu.Lock()
	if sc.ended != nil {
		sc.mu.Unlock()
		return nil, fmt.Errorf("the wrap went away: %w", sc.ended)
	}
	sc.nextReq++
	req := sc.nextReq
	if sc.waits == nil {
		sc.waits = map[uint64]chan *frame{}
	}
	sc.waits[req] = ch
	sc.mu.Unlock()
	forget := func() {
		sc.mu.Lock()
		delete(sc.waits, req)
		sc.mu.Unlock()
	}
	if err := sc.send(&frame{Op: opDefinition, ID: rc.id, Req: req, Tool: tool, Fresh: fresh}); err != nil {
		forget()
		return nil, err
	}
	select {
	case f := <-ch:
		if f.Err != "" {
			return nil, errors.New(f.Err)
		}
		d, err := definition(f.Raw)
		if d != nil {
			d.ListedAt = time.Now()
		}
		return d, err
	case <-ctx.Done():
		forget()
		return nil, context.Cause(ctx)
	}
}

func (rc *remoteCaller) Waiting(message string) {
	rc.sc.send(&frame{Op: opWaiting, ID: rc.id, Message: message})
}

func (rc *remoteCaller) Held(p broker.Pending) {
	rc.sc.send(&frame{Op: opHeld, ID: rc.id, Approval: p.ApprovalID, Text: p.Reason, Left: p.Left.Milliseconds()})
}
