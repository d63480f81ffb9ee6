// Package relay is Airlock's MCP relay: it joins each client session to a
// session of an upstream server and passes JSON-RPC between them untouched,
// except that every tools/call is handed to the gate first. Clients reach
// it over stdio (ServeConn) or streamable HTTP (HTTPHandler).
//
// The relay knows MCP and nothing of approvals: it hands the gate one
// broker.Call per tools/call with a broker.Caller for what the gate may ask
// of the client while it decides, and carries out the broker.Outcome.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/pool"
)

// DefaultInitTimeout bounds the wait for an upstream's answer to
// initialize; a server that never answers must not hang the client.
const DefaultInitTimeout = 30 * time.Second

// Gate decides every tools/call before the relay forwards it.
// *broker.Broker is the implementation.
type Gate interface {
	// Check decides call and, for a held call, waits for people; it
	// returns when the call may go ahead, is answered, or ctx ends.
	Check(ctx context.Context, call *broker.Call, caller broker.Caller) broker.Outcome
	// Listed takes in the tools a session of server just listed.
	Listed(server string, defs []*broker.ToolDefinition)
}

// Metrics is what the relay counts: refusals at its limits (cmd's
// Prometheus metrics count them for the broker too). Nil in Options means
// none.
type Metrics interface {
	LimitRefused(limit string)
}

// Upstream is one MCP server that Airlock guards.
type Upstream struct {
	Name string
	// Transport says how Airlock reaches the server: "stdio" or "http".
	Transport string
	// Dial opens a new session with the server: for a stdio server, a new
	// child process. Each client session gets its own, since MCP servers
	// assume a single client.
	Dial func(ctx context.Context) (mcp.Connection, error)
	// TrustAnnotations says whether the policy may believe the server's
	// tool annotations (readOnlyHint and the like).
	TrustAnnotations bool
}

// InProcessUpstream serves an MCP server running in this process as an
// upstream: a new in-memory session for each client session, as a stdio
// server gets a new process. To the policy it is a local server like any
// started over stdio. The demo's sample server and tests use it.
func InProcessUpstream(name string, s *mcp.Server) *Upstream {
	return &Upstream{
		Name:             name,
		Transport:        "stdio",
		TrustAnnotations: true,
		Dial: func(ctx context.Context) (mcp.Connection, error) {
			st, ct := mcp.NewInMemoryTransports()
			if _, err := s.Connect(ctx, st, nil); err != nil {
				return nil, err
			}
			return ct.Connect(ctx)
		},
	}
}

// Options configure a Relay. Gate is required; every other field has a
// usable zero value.
type Options struct {
	Gate Gate
	// Logger receives the relay's logs; nil discards them.
	Logger *slog.Logger
	// Metrics counts limit refusals; nil counts none.
	Metrics Metrics
	// InitTimeout bounds the upstream's answer to initialize; 0 means
	// DefaultInitTimeout, negative means no limit.
	InitTimeout time.Duration
	// Limits bound sessions and child processes; the zero value means the
	// defaults.
	Limits Limits
	// OfferTasks declares task support to clients (MCP's tasks utility)
	// where the upstream declares none: in initialize's capabilities, and
	// as execution.taskSupport "optional" on each tool that says nothing of
	// it. A held call that asked for a task is answered with one of
	// Airlock's whether or not this is set.
	OfferTasks bool
}

// Relay serves client sessions for the upstreams it guards.
type Relay struct {
	gate        Gate
	log         *slog.Logger
	upstreams   map[string]*Upstream
	initTimeout time.Duration
	offerTasks  bool
	limits      *limiter
	pool        pool.Pool // goroutines for tools/calls, which may wait
	atGate      gateCount // tools/calls the gate has not let go of yet
	done        chan struct{}
}

// New returns a relay for the given upstreams.
func New(opts Options, upstreams ...*Upstream) (*Relay, error) {
	if opts.Gate == nil {
		return nil, errors.New("relay: a gate is required")
	}
	r := &Relay{
		gate:        opts.Gate,
		log:         opts.Logger,
		upstreams:   make(map[string]*Upstream, len(upstreams)),
		initTimeout: opts.InitTimeout,
		offerTasks:  opts.OfferTasks,
		done:        make(chan struct{}),
	}
	if r.initTimeout == 0 {
		r.initTimeout = DefaultInitTimeout
	}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	r.pool = pool.New(r.done)
	r.limits = newLimiter(opts.Limits, opts.Metrics)
	for _, u := range upstreams {
		if u.Name == "" || u.Dial == nil {
			return nil, fmt.Errorf("relay: upstream %q needs a name and a Dial function", u.Name)
		}
		if _, dup := r.upstreams[u.Name]; dup {
			return nil, fmt.Errorf("relay: upstream %q is configured twice", u.Name)
		}
		r.upstreams[u.Name] = u
	}
	return r, nil
}

// Upstream returns the named upstream, or nil.
func (r *Relay) Upstream(name string) *Upstream { return r.upstreams[name] }

// Upstreams lists the upstreams in no particular order.
func (r *Relay) Upstreams() []*Upstream {
	out := make([]*Upstream, 0, len(r.upstreams))
	for _, u := range r.upstreams {
		out = append(out, u)
	}
	return out
}

// AwaitGate waits until every tools/call at the gate has been answered or
// forwarded, or ctx ends. On shutdown it comes after the gate has answered
// its held calls and before the sessions close: closing first would answer
// a held call "session closed" just before its own result was written.
func (r *Relay) AwaitGate(ctx context.Context) error {
	idle := r.atGate.idle()
	if idle == nil {
		return nil
	}
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}

// gateCount counts tools/calls at the gate, for AwaitGate. Counting is an
// atomic add on every call; only a call that leaves the gate empty takes
// the lock, to wake an AwaitGate. (A WaitGroup may not be waited on while
// calls still arrive.)
type gateCount struct {
	n      atomic.Int64
	mu     sync.Mutex
	waiter chan struct{} // made by idle, closed when n drops to 0
}

func (g *gateCount) enter() { g.n.Add(1) }

func (g *gateCount) leave() {
	if g.n.Add(-1) != 0 {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.waiter != nil && g.n.Load() == 0 {
		close(g.waiter)
		g.waiter = nil
	}
}

// idle returns a channel closed once no call is at the gate, or nil when
// none is now.
func (g *gateCount) idle() <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.n.Load() == 0 {
		return nil
	}
	if g.waiter == nil {
		g.waiter = make(chan struct{})
	}
	return g.waiter
}

// Close lets the relay's idle goroutines go. Sessions end with their
// transports (ServeConn's context, HTTPHandler.Close).
func (r *Relay) Close() {
	select {
	case <-r.done:
	default:
		close(r.done)
	}
}
