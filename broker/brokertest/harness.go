package brokertest

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// Harness is a started broker core on an in-memory store, with a Caller,
// for tests of holds, votes and grants and for the channels (web UI,
// Slack) that decide them. It calls the core as the relay does, without
// MCP, so testing/synctest can control its time.
type Harness struct {
	T      testing.TB
	Broker *broker.Broker
	Store  *MemStore
	Caller *Caller
	// Events follows the broker's approval events from the start.
	Events <-chan broker.ApprovalEvent
	// Principal is who makes the calls: "tester" from the OS by default.
	Principal broker.Principal
	// Client is what the calls' client said about itself in initialize:
	// "harness" version "1" by default. Channels show it to approvers.
	Client broker.ClientInfo

	forwarded atomic.Int64
}

// NewHarness starts a broker with opts for the server "test" and closes
// it at the end of the test. A nil store is a new MemStore; a nil policy
// holds "write" for one approver; a nil logger is Logger(). Store is the
// MemStore opts.Store is or a FaultyStore wraps, nil for other stores.
func NewHarness(t testing.TB, opts broker.Options) *Harness {
	t.Helper()
	h := &Harness{T: t, Caller: NewCaller(), Principal: broker.Principal{ID: "tester", Source: "os"},
		Client: broker.ClientInfo{Name: "harness", Version: "1"}}
	if opts.Store == nil {
		opts.Store = NewMemStore()
	}
	under := opts.Store
	if f, ok := under.(*FaultyStore); ok {
		under = f.Store
	}
	if ms, ok := under.(*MemStore); ok {
		h.Store = ms
	}
	if opts.Logger == nil {
		opts.Logger = Logger()
	}
	if opts.Policy == nil {
		opts.Policy = HoldTools(1, "write")
	}
	if opts.Servers == nil {
		opts.Servers = []string{"test"}
	}
	b, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	h.Broker = b
	h.Caller.OnList = func(defs []*broker.ToolDefinition) { b.Listed("test", defs) }
	events, stop := b.Subscribe()
	h.Events = events
	// Cleanups run last first: the broker answers its waiting calls
	// before the subscription ends.
	t.Cleanup(stop)
	t.Cleanup(func() { b.Close() })
	return h
}

// NewCall is a tools/call of tool with args (JSON) to the server "test"
// from h.Principal and h.Client, as the relay would hand it to Check.
func (h *Harness) NewCall(tool string, args any) *broker.Call {
	params := map[string]any{"name": tool}
	if args != nil {
		params["arguments"] = args
	}
	raw, err := json.Marshal(params)
	if err != nil {
		h.T.Fatal(err)
	}
	return &broker.Call{
		Server: "test", Transport: "stdio", TrustAnnotations: true,
		Params: raw, Client: h.Client,
		Session: "0123456789ab", Principal: h.Principal, Received: time.Now(),
	}
}

// Check runs call through the gate on a goroutine of its own and returns
// where its outcome will arrive. A forwarded call's audit write is
// awaited first, as the relay does before it answers; a forwarded call
// is counted (Forwarded) before its outcome arrives.
func (h *Harness) Check(ctx context.Context, call *broker.Call) <-chan broker.Outcome {
	out := make(chan broker.Outcome, 1)
	go func() {
		o := h.Broker.Check(ctx, call, h.Caller)
		if o.Audited != nil {
			if err := <-o.Audited; err != nil {
				o = broker.Outcome{Refusal: "audit write failed: " + err.Error()}
			}
		}
		if o.Forward {
			h.forwarded.Add(1)
		}
		out <- o
	}()
	return out
}

// Forwarded counts the calls Check forwarded: those a relay would have
// sent on to the upstream.
func (h *Harness) Forwarded() int { return int(h.forwarded.Load()) }

// Call is Check of NewCall(tool, args).
func (h *Harness) Call(ctx context.Context, tool string, args any) <-chan broker.Outcome {
	return h.Check(ctx, h.NewCall(tool, args))
}

// Held waits for the next approval to be opened.
func (h *Harness) Held() *broker.Approval {
	h.T.Helper()
	for {
		ev := Wait(h.T, h.Events, "a held call")
		if ev.Type == "held" {
			return ev.Approval
		}
	}
}

// Vote records approver's verdict through the one decision authority,
// failing the test if it is refused.
func (h *Harness) Vote(id, approver string, v broker.Verdict, reason string) *broker.Approval {
	h.T.Helper()
	a, err := h.Broker.Vote(context.Background(), id, broker.Vote{Approver: approver, Channel: "test", Verdict: v, Reason: reason})
	if err != nil {
		h.T.Fatalf("vote: %v", err)
	}
	return a
}

// AuditEvents lists the audit log's event names, oldest first.
func (h *Harness) AuditEvents() []string {
	h.T.Helper()
	recs, err := h.Broker.Audit(context.Background(), broker.AuditQuery{After: 0, Limit: 1000})
	if err != nil {
		h.T.Fatal(err)
	}
	var out []string
	for i := len(recs) - 1; i >= 0; i-- {
		out = append(out, string(recs[i].Event))
	}
	return out
}
