// Package relaytest holds shared test parts for the relay and for tests
// that need the whole of Airlock: an MCP server with one of everything a
// relay must carry, a stub Gate to test the relay without an approval
// core, a broker core behind a relay put together as serve and wrap do,
// and clients that reach either over stdio pipes and streamable HTTP.
package relaytest

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/wire"
)

// Airlock is a broker core with a relay in front of it. The broker's
// methods (Vote, Subscribe, Approvals…) and the relay's (ServeConn,
// HTTPHandler…) are both at hand.
type Airlock struct {
	*broker.Broker
	*relay.Relay
}

// Close stops the relay, then the broker.
func (a *Airlock) Close() error {
	a.Relay.Close()
	return a.Broker.Close()
}

// New starts a broker with opts in front of the upstreams, as serve and
// wrap do, and closes it at the end of the test. A nil logger shows logs
// as brokertest.Logger says; a nil store is an in-memory one; a nil
// policy allows everything; Servers are the upstreams' names.
func New(t testing.TB, opts broker.Options, ups ...*relay.Upstream) *Airlock {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = brokertest.Logger()
	}
	if opts.Store == nil {
		opts.Store = brokertest.NewMemStore()
	}
	if opts.Policy == nil {
		opts.Policy = brokertest.AllowAll()
	}
	if opts.Servers == nil {
		for _, u := range ups {
			opts.Servers = append(opts.Servers, u.Name)
		}
	}
	b, err := broker.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	var metrics relay.Metrics
	if m, ok := opts.Metrics.(relay.Metrics); ok {
		metrics = m
	}
	r, err := relay.New(relay.Options{Gate: b, Logger: opts.Logger, Metrics: metrics}, ups...)
	if err != nil {
		t.Fatal(err)
	}
	a := &Airlock{Broker: b, Relay: r}
	t.Cleanup(func() { a.Close() })
	return a
}

// Relay is what the client helpers need: a *relay.Relay, alone in front
// of a Gate or with a broker core behind it (an *Airlock).
type Relay interface {
	ServeConn(ctx context.Context, server string, conn mcp.Connection, p broker.Principal) error
	HTTPHandler(opts relay.HTTPOptions) *relay.HTTPHandler
}

// StdioClient connects c to the upstream named "test" over a pair of
// pipes carrying newline-delimited JSON, as a stdio client would, with
// the principal "tester".
func StdioClient(t testing.TB, a Relay, c *mcp.Client) *mcp.ClientSession {
	t.Helper()
	cr, bw := io.Pipe()
	br, cw := io.Pipe()
	conn := wire.NewLineConn(br, bw, br, 0)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.ServeConn(ctx, "test", conn, broker.Principal{ID: "tester", Source: "os"}) }()
	cs, err := c.Connect(context.Background(), &mcp.IOTransport{Reader: cr, Writer: cw}, nil)
	if err != nil {
		t.Fatalf("connect over stdio: %v", err)
	}
	t.Cleanup(func() {
		cs.Close()
		cw.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeConn: %v", err)
		}
	})
	return cs
}

// HTTPClient connects c to the upstream named "test" over the relay's
// streamable HTTP endpoint.
func HTTPClient(t testing.TB, a Relay, c *mcp.Client) *mcp.ClientSession {
	t.Helper()
	srv := NewHTTPServer(t, a, relay.HTTPOptions{Loopback: true})
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp/test"}, nil)
	if err != nil {
		t.Fatalf("connect over HTTP: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// NewHTTPServer serves the relay's streamable HTTP endpoint at
// /mcp/{server} for the length of the test.
func NewHTTPServer(t testing.TB, a Relay, opts relay.HTTPOptions) *httptest.Server {
	h := a.HTTPHandler(opts)
	mux := http.NewServeMux()
	mux.Handle("/mcp/{server}", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(func() {
		h.Close()
		srv.Close()
	})
	return srv
}
