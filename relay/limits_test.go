package relay_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
)

// children counts the upstream connections a test upstream has open: for
// a stdio server, its child processes.
type children struct {
	mu         sync.Mutex
	open, peak int
}

func (c *children) wrap(up *relay.Upstream) *relay.Upstream {
	dial := up.Dial
	up.Dial = func(ctx context.Context) (mcp.Connection, error) {
		conn, err := dial(ctx)
		if err != nil {
			return nil, err
		}
		c.mu.Lock()
		c.open++
		c.peak = max(c.peak, c.open)
		c.mu.Unlock()
		return &countedConn{Connection: conn, c: c}, nil
	}
	return up
}

func (c *children) counts() (open, peak int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.open, c.peak
}

type countedConn struct {
	mcp.Connection
	c    *children
	once sync.Once
}

func (cc *countedConn) Close() error {
	cc.once.Do(func() {
		cc.c.mu.Lock()
		cc.c.open--
		cc.c.mu.Unlock()
	})
	return cc.Connection.Close()
}

// limitsServer is an HTTP endpoint for a broker with limits whose callers
// name their principal in X-Principal.
func limitsServer(t *testing.T, l relay.Limits) (url string, kids *children, b *relay.Relay) {
	kids = &children{}
	b = relaytest.NewRelay(t, relay.Options{Limits: l}, kids.wrap(relaytest.NewServer().Upstream("test")))
	hs := relaytest.NewHTTPServer(t, b, relay.HTTPOptions{Loopback: true, Authenticate: func(_ http.ResponseWriter, r *http.Request, _ string) (broker.Principal, bool) {
		return broker.Principal{ID: r.Header.Get("X-Principal"), Source: "token"}, true
	}})
	return hs.URL + "/mcp/test", kids, b
}

// initializeAs sends initialize as principal and returns the answer's
// status, its Retry-After header and the JSON-RPC error message, if any.
func initializeAs(t *testing.T, url, principal string) (status int, retryAfter, msg string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(initBody))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set("X-Principal", principal)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After"), errorMessage(readMessages(t, resp))
}

func TestHTTPSessionLimits(t *testing.T) {
	tests := map[string]struct {
		limits relay.Limits
		// principals of the initializes that must succeed, then of the one
		// refused, then of one that must still succeed
		ok      []string
		refused string
		after   string
		key     string
	}{
		"in all": {
			limits: relay.Limits{Sessions: 3, SessionsPerPrincipal: -1},
			ok:     []string{"alice", "bob", "carol"}, refused: "dave", key: "limits.sessions ",
		},
		"per principal": {
			limits: relay.Limits{Sessions: -1, SessionsPerPrincipal: 2},
			ok:     []string{"alice", "alice"}, refused: "alice", after: "bob", key: "limits.sessions_per_principal",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			url, kids, _ := limitsServer(t, tt.limits)
			for _, p := range tt.ok {
				if status, _, msg := initializeAs(t, url, p); status != http.StatusOK {
					t.Fatalf("initialize as %s: %d %s", p, status, msg)
				}
			}
			status, retry, msg := initializeAs(t, url, tt.refused)
			if status != http.StatusServiceUnavailable || retry == "" || !strings.Contains(msg+" ", tt.key) {
				t.Fatalf("initialize over the limit: %d, Retry-After %q, %q; want 503 naming %s", status, retry, msg, tt.key)
			}
			if open, peak := kids.counts(); open != len(tt.ok) || peak != len(tt.ok) {
				t.Errorf("upstream connections open %d, at most %d; want %d", open, peak, len(tt.ok))
			}
			if tt.after != "" {
				if status, _, msg := initializeAs(t, url, tt.after); status != http.StatusOK {
					t.Errorf("initialize as %s, under its own limit: %d %s", tt.after, status, msg)
				}
			}
		})
	}
}

// A session that ends gives its place back.
func TestHTTPSessionLimitFreedByDelete(t *testing.T) {
	url, _, _ := limitsServer(t, relay.Limits{Sessions: 1})
	c := &rawClient{t: t, url: url}
	c.initialize()
	if status, _, msg := initializeAs(t, url, "x"); status != http.StatusServiceUnavailable {
		t.Fatalf("second session: %d %s", status, msg)
	}
	req, _ := http.NewRequest(http.MethodDelete, url, nil)
	req.Header.Set("Mcp-Session-Id", c.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %v %v", resp, err)
	}
	resp.Body.Close()
	// The place is given back once the session has ended, just after the
	// DELETE is answered: a bounded number of tries.
	for i := 0; ; i++ {
		status, _, msg := initializeAs(t, url, "x")
		if status == http.StatusOK {
			break
		}
		if i == 1000 {
			t.Fatalf("no session after DELETE: %d %s", status, msg)
		}
	}
}

func TestChildrenPerServerLimit(t *testing.T) {
	url, kids, b := limitsServer(t, relay.Limits{ChildrenPerServer: 2})
	for _, p := range []string{"alice", "bob"} {
		if status, _, msg := initializeAs(t, url, p); status != http.StatusOK {
			t.Fatalf("initialize as %s: %d %s", p, status, msg)
		}
	}
	status, retry, msg := initializeAs(t, url, "carol")
	if status != http.StatusServiceUnavailable || retry == "" || !strings.Contains(msg, "limits.children_per_server") || !strings.Contains(msg, "server test") {
		t.Fatalf("third child: %d, Retry-After %q, %q", status, retry, msg)
	}
	if open, peak := kids.counts(); open != 2 || peak != 2 {
		t.Errorf("children open %d, at most %d; want 2", open, peak)
	}
	if got := b.Children()["test"]; got != 2 {
		t.Errorf("Children()[test] = %d, want 2", got)
	}
}

// The limit counts child processes over every transport: a stdio client
// (wrap's one session) is refused too once the server has its share.
func TestChildrenLimitOverStdio(t *testing.T) {
	kids := &children{}
	b := relaytest.NewRelay(t, relay.Options{Limits: relay.Limits{ChildrenPerServer: 1}},
		kids.wrap(relaytest.NewServer().Upstream("test")))
	cs := relaytest.StdioClient(t, b, relaytest.NewClient(relaytest.NewEvents()))
	if _, err := cs.ListTools(ctxT(t), nil); err != nil {
		t.Fatalf("the first session: %v", err)
	}
	hs := relaytest.NewHTTPServer(t, b, relay.HTTPOptions{Loopback: true})
	status, _, msg := initializeAs(t, hs.URL+"/mcp/test", "")
	if status != http.StatusServiceUnavailable || !strings.Contains(msg, "limits.children_per_server") {
		t.Fatalf("a second child: %d %q", status, msg)
	}
	if _, peak := kids.counts(); peak != 1 {
		t.Errorf("children at most %d, want 1", peak)
	}
}
