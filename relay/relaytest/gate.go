package relaytest

import (
	"bytes"
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/relay"
)

// A Decision is how a Gate decides one call: what relay.Gate.Check does.
type Decision func(ctx context.Context, call *broker.Call, caller broker.Caller) broker.Outcome

// Gate is a relay.Gate without an approval core, for testing the relay on
// its own: Decide decides each call, and the gate records every call and
// tool list the relay hands it.
type Gate struct {
	// Decide decides each call; nil forwards every call.
	Decide Decision

	mu     sync.Mutex
	calls  []broker.Call
	listed []ToolList
}

// ToolList is one Listed call the relay made.
type ToolList struct {
	Server string
	Tools  []*broker.ToolDefinition
}

// Check records call, with a copy of its Params as they were when the
// relay handed them over, and decides it with Decide.
func (g *Gate) Check(ctx context.Context, call *broker.Call, caller broker.Caller) broker.Outcome {
	seen := *call
	seen.Params = bytes.Clone(call.Params)
	g.mu.Lock()
	g.calls = append(g.calls, seen)
	decide := g.Decide
	g.mu.Unlock()
	if decide == nil {
		return broker.Outcome{Forward: true}
	}
	return decide(ctx, call, caller)
}

// Listed records the tools a session of server listed.
func (g *Gate) Listed(server string, defs []*broker.ToolDefinition) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.listed = append(g.listed, ToolList{Server: server, Tools: slices.Clone(defs)})
}

// Calls returns the calls Check was given, in order.
func (g *Gate) Calls() []broker.Call {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.calls)
}

// ToolLists returns the tool lists Listed was given, in order.
func (g *Gate) ToolLists() []ToolList {
	g.mu.Lock()
	defer g.mu.Unlock()
	return slices.Clone(g.listed)
}

// Forward lets every call go ahead.
func Forward() Decision {
	return func(context.Context, *broker.Call, broker.Caller) broker.Outcome {
		return broker.Outcome{Forward: true}
	}
}

// Refuse answers every call with a tool error saying text.
func Refuse(text string) Decision {
	return func(context.Context, *broker.Call, broker.Caller) broker.Outcome {
		return broker.Outcome{Refusal: text}
	}
}

// Malformed answers every call with an invalid-params error saying msg.
func Malformed(msg string) Decision {
	return func(context.Context, *broker.Call, broker.Caller) broker.Outcome {
		return broker.Outcome{Malformed: msg}
	}
}

// Hold holds each call it decides, as the core holds a call for people:
// it tells a caller that gave a progress token it still waits (Heartbeats
// times), reports the call on Held, and waits for Release or for the
// call's context to end, which it reports on Ended.
type Hold struct {
	// Heartbeats is how often Decide calls Caller.Waiting before it
	// reports the call held.
	Heartbeats int
	// Held receives each call once its heartbeats are sent.
	Held chan *broker.Call
	// Ended receives context.Cause of each held call's context that
	// ended before Release; Decide then returns the zero Outcome, as the
	// core does when nobody is left to answer.
	Ended chan error

	release chan broker.Outcome
}

// NewHold returns a Hold that sends heartbeats heartbeats per call.
func NewHold(heartbeats int) *Hold {
	return &Hold{
		Heartbeats: heartbeats,
		Held:       make(chan *broker.Call, 16),
		Ended:      make(chan error, 16),
		release:    make(chan broker.Outcome),
	}
}

// Decide is the Hold's Decision.
func (h *Hold) Decide(ctx context.Context, call *broker.Call, caller broker.Caller) broker.Outcome {
	if call.Progress {
		for range h.Heartbeats {
			caller.Waiting("held for a test")
		}
	}
	h.Held <- call
	select {
	case o := <-h.release:
		return o
	case <-ctx.Done():
		h.Ended <- context.Cause(ctx)
		return broker.Outcome{}
	}
}

// Release ends the wait of one held call with o. It blocks until a held
// call takes it: call it after the call arrived on Held.
func (h *Hold) Release(t testing.TB, o broker.Outcome) {
	t.Helper()
	select {
	case h.release <- o:
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a held call to release")
	}
}

// NewRelay starts a relay in front of the upstreams with opts, closing it
// at the end of the test. A nil Gate is a Gate that forwards every call; a
// nil Logger shows logs as brokertest.Logger says.
func NewRelay(t testing.TB, opts relay.Options, ups ...*relay.Upstream) *relay.Relay {
	t.Helper()
	if opts.Gate == nil {
		opts.Gate = &Gate{}
	}
	if opts.Logger == nil {
		opts.Logger = brokertest.Logger()
	}
	r, err := relay.New(opts, ups...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}
