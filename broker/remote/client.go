package remote

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// errLost says a check's connection went before its outcome came.
var errLost = errors.New("remote: the connection to the broker was lost")

// Conn is a wrap's connection to the broker that owns its state: a
// Backend for a Switch.
type Conn struct {
	c   net.Conn
	wmu sync.Mutex
	enc *json.Encoder

	mu     sync.Mutex
	checks map[uint64]*clientCheck
	next   uint64
	lost   bool
	done   chan struct{}
}

// clientCheck is a check waiting for its outcome.
type clientCheck struct {
	ctx     context.Context
	caller  broker.Caller
	outcome chan *frame // the outcome frame, once
	audited chan error  // the audit write's outcome, when the outcome says one follows
	held    string      // the approval it waits on, once the broker says
}

// Dial attaches to the broker serving on the socket at path, as replica,
// showing token.
func Dial(ctx context.Context, path, token, replica string) (*Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, err
	}
	enc := json.NewEncoder(c)
	// The owner's frames: the same user's Airlock, which held the admin
	// token first. What the MCP client and server wrote travels in them as
	// bytes (see frame).
	dec := json.NewDecoder(bufio.NewReader(c))
	c.SetDeadline(time.Now().Add(5 * time.Second))
	var ok frame
	if err := enc.Encode(&frame{Op: opHello, Token: token, Replica: replica}); err == nil {
		err = dec.Decode(&ok)
	}
	if err == nil && ok.Err != "" {
		err = errors.New(ok.Err)
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("remote: attaching to the broker at %s: %w", path, err)
	}
	c.SetDeadline(time.Time{})
	conn := &Conn{c: c, enc: enc, checks: map[uint64]*clientCheck{}, done: make(chan struct{})}
	go conn.read(dec)
	return conn, nil
}

// Done is closed when the connection has gone.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Close detaches from the broker: its checks in progress are cancelled
// there as if their sessions closed.
func (c *Conn) Close() error { return c.c.Close() }

func (c *Conn) send(f *frame) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.enc.Encode(f)
}

// read takes the broker's frames until the connection goes.
func (c *Conn) read(dec *json.Decoder) {
	defer func() {
		c.c.Close()
		c.mu.Lock()
		c.lost = true
		checks := c.checks
		c.checks = map[uint64]*clientCheck{}
		c.mu.Unlock()
		close(c.done)
		for _, ck := range checks {
			select {
			case ck.audited <- fmt.Errorf("the broker went away before it confirmed the call's audit record"):
			default:
			}
		}
	}()
	for {
		f := new(frame)
		if err := dec.Decode(f); err != nil {
			return
		}
		c.mu.Lock()
		ck := c.checks[f.ID]
		if ck != nil {
			switch f.Op {
			case opHeld:
				ck.held = f.Approval
			case opOutcome:
				if !f.Audited {
					delete(c.checks, f.ID)
				}
			case opAudited:
				delete(c.checks, f.ID)
			}
		}
		c.mu.Unlock()
		if ck == nil {
			continue
		}
		switch f.Op {
		case opOutcome:
			ck.outcome <- f
		case opAudited:
			var err error
			if f.Err != "" {
				err = errors.New(f.Err)
			}
			ck.audited <- err
		case opHeld:
			if hc, ok := ck.caller.(broker.HeldCaller); ok {
				hc.Held(broker.Pending{ApprovalID: f.Approval, Reason: f.Text, Left: time.Duration(f.Left) * time.Millisecond})
			}
		case opWaiting:
			ck.caller.Waiting(f.Message)
		case opDefinition:
			go c.define(ck, f)
		}
	}
}

// define answers the broker's question about a tool's definition.
func (c *Conn) define(ck *clientCheck, f *frame) {
	reply := &frame{Op: opDefinition, ID: f.ID, Req: f.Req}
	d, err := ck.caller.Definition(ck.ctx, f.Tool, f.Fresh)
	switch {
	case err != nil:
		reply.Err = err.Error()
	case d != nil:
		reply.Raw = d.Raw
	}
	c.send(reply)
}

// check runs one check (or, with resume set, a resume) on the broker. It
// returns errLost, and the approval the call was held for if any, when
// the connection went first.
func (c *Conn) check(ctx context.Context, call *broker.Call, caller broker.Caller, resume string) (broker.Outcome, string, error) {
	ck := &clientCheck{ctx: ctx, caller: caller, outcome: make(chan *frame, 1), audited: make(chan error, 1), held: resume}
	c.mu.Lock()
	if c.lost {
		c.mu.Unlock()
		return broker.Outcome{}, resume, errLost
	}
	c.next++
	id := c.next
	c.checks[id] = ck
	c.mu.Unlock()
	f := &frame{Op: opCheck, ID: id, Call: &wireCall{
		Server: call.Server, Transport: call.Transport, TrustAnnotations: call.TrustAnnotations,
		Params: call.Params, Client: call.Client, Session: call.Session, Principal: call.Principal,
		Received: call.Received.UnixNano(), Progress: call.Progress, Task: call.Task,
	}}
	if resume != "" {
		f.Op, f.Approval = opResume, resume
	}
	if err := c.send(f); err != nil {
		c.c.Close() // the reader ends, and with it every check
	}
	held := func() string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return ck.held
	}
	cancelled := ctx.Done()
	for {
		select {
		case out := <-ck.outcome:
			o := broker.Outcome{Forward: out.Forward, Refusal: out.Refusal, Malformed: out.Malformed}
			if out.Audited {
				o.Audited = ck.audited
			}
			return o, "", nil
		case <-cancelled:
			// The broker answers a cancelled check at once, with
			// nothing: wait for that, so that the wait ends there first.
			cancelled = nil
			cause := context.Cause(ctx)
			c.send(&frame{Op: opCancel, ID: id, Causes: causeKeys(cause), Text: cause.Error()})
		case <-c.done:
			if ctx.Err() != nil {
				return broker.Outcome{}, "", nil // nobody is left to answer
			}
			return broker.Outcome{}, held(), errLost
		}
	}
}

// Check is Backend's Check.
func (c *Conn) Check(ctx context.Context, call *broker.Call, caller broker.Caller) broker.Outcome {
	o, _, err := c.check(ctx, call, caller, "")
	if err != nil {
		return lostOutcome()
	}
	return o
}

// Resume is Backend's Resume.
func (c *Conn) Resume(ctx context.Context, id string, call *broker.Call, caller broker.Caller) broker.Outcome {
	o, _, err := c.check(ctx, call, caller, id)
	if err != nil {
		return lostOutcome()
	}
	return o
}

func lostOutcome() broker.Outcome {
	return broker.Outcome{Refusal: "Airlock lost its connection to the broker that owns its state while deciding this call, so it was not run. Call again."}
}

// Listed is Backend's Listed.
func (c *Conn) Listed(server string, defs []*broker.ToolDefinition) {
	raws := make([][]byte, 0, len(defs))
	for _, d := range defs {
		raws = append(raws, d.Raw)
	}
	c.send(&frame{Op: opListed, Server: server, Defs: raws})
}
