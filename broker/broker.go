package broker

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// DefaultInitTimeout bounds the wait for an upstream's answer to
// initialize; a server that never answers must not hang the client.
const DefaultInitTimeout = 30 * time.Second

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

// Options configure a Broker. The zero value is usable.
type Options struct {
	// Logger receives the broker's logs; nil discards them.
	Logger *slog.Logger
	// InitTimeout bounds the upstream's answer to initialize; 0 means
	// DefaultInitTimeout, negative means no limit.
	InitTimeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Broker relays MCP sessions between clients and the upstream servers it
// guards, and decides every tools/call at its gate.
type Broker struct {
	log         *slog.Logger
	upstreams   map[string]*Upstream
	initTimeout time.Duration
	now         func() time.Time
}

// New returns a broker for the given upstreams.
func New(opts Options, upstreams ...*Upstream) (*Broker, error) {
	b := &Broker{
		log:         opts.Logger,
		upstreams:   make(map[string]*Upstream, len(upstreams)),
		initTimeout: opts.InitTimeout,
		now:         opts.Now,
	}
	if b.log == nil {
		b.log = slog.New(slog.DiscardHandler)
	}
	if b.initTimeout == 0 {
		b.initTimeout = DefaultInitTimeout
	}
	if b.now == nil {
		b.now = time.Now
	}
	for _, u := range upstreams {
		if u.Name == "" || u.Dial == nil {
			return nil, fmt.Errorf("broker: upstream %q needs a name and a Dial function", u.Name)
		}
		if _, dup := b.upstreams[u.Name]; dup {
			return nil, fmt.Errorf("broker: upstream %q is configured twice", u.Name)
		}
		b.upstreams[u.Name] = u
	}
	return b, nil
}

// Upstream returns the named upstream, or nil.
func (b *Broker) Upstream(name string) *Upstream { return b.upstreams[name] }
