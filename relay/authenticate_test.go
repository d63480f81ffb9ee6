package relay_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"
	"github.com/airlock-mcp/airlock/relay/wire"
)

// door lets in the bearer of a key it knows as that key's identity, and
// refuses everyone else with 401, as relay/auth does.
type door struct {
	mu    sync.Mutex
	keys  map[string]string // bearer → identity
	asked int
}

func (d *door) authenticate(w http.ResponseWriter, r *http.Request, server string) (broker.Principal, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.asked++
	id, ok := d.keys[strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")]
	if !ok || server != "test" {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		w.Write([]byte(`{"error":"invalid_token"}`))
		return broker.Principal{}, false
	}
	return broker.Principal{ID: id, Source: "token"}, true
}

func (d *door) revoke(key string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.keys, key)
}

const listBody = `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`

// Every request is authenticated, not only initialize: a credential
// revoked while its session is open stops working at the next request,
// and the upstream never hears of a refused one.
func TestEveryRequestIsAuthenticated(t *testing.T) {
	d := &door{keys: map[string]string{"k-alice": "alice"}}
	c, srv, _ := newRawClient(t, relay.HTTPOptions{Loopback: true, Authenticate: d.authenticate})
	auth := []string{"Authorization", "Bearer k-alice"}

	if status, _ := c.post(context.Background(), initBody); status != http.StatusUnauthorized {
		t.Fatalf("initialize without a credential: %d, want 401", status)
	}
	if n := len(srv.Sessions()); n != 0 {
		t.Fatalf("a refused initialize started %d upstream sessions", n)
	}
	if status, msgs := c.post(context.Background(), initBody, auth...); status != http.StatusOK || len(msgs) != 1 {
		t.Fatalf("initialize: %d %v", status, msgs)
	}
	if status, _ := c.post(context.Background(), listBody, auth...); status != http.StatusOK {
		t.Fatalf("tools/list: %d", status)
	}
	lists := srv.Count("tools/list")
	d.revoke("k-alice")
	if status, _ := c.post(context.Background(), listBody, auth...); status != http.StatusUnauthorized {
		t.Errorf("tools/list after revocation: %d, want 401", status)
	}
	if srv.Count("tools/list") != lists {
		t.Error("a request with a revoked credential reached the upstream")
	}
	req, _ := http.NewRequest(http.MethodGet, c.url, nil)
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Mcp-Session-Id", c.session)
	req.Header.Set(auth[0], auth[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("GET stream after revocation: %d, want 401", resp.StatusCode)
	}
}

// A session id is a capability, but only for the identity that opened the
// session: another identity holding it can neither act in it nor end it.
func TestSessionBelongsToItsIdentity(t *testing.T) {
	d := &door{keys: map[string]string{"k-alice": "alice", "k-mallory": "mallory"}}
	c, srv, _ := newRawClient(t, relay.HTTPOptions{Loopback: true, Authenticate: d.authenticate})
	alice, mallory := []string{"Authorization", "Bearer k-alice"}, []string{"Authorization", "Bearer k-mallory"}
	if status, _ := c.post(context.Background(), initBody, alice...); status != http.StatusOK {
		t.Fatalf("initialize: %d", status)
	}
	lists := srv.Count("tools/list")
	status, msgs := c.post(context.Background(), listBody, mallory...)
	if status != http.StatusForbidden || !strings.Contains(errorMessage(msgs), "another identity") {
		t.Errorf("mallory in alice's session: %d %v, want 403", status, msgs)
	}
	if srv.Count("tools/list") != lists {
		t.Error("mallory's request reached the upstream")
	}
	req, _ := http.NewRequest(http.MethodDelete, c.url, nil)
	req.Header.Set("Mcp-Session-Id", c.session)
	req.Header.Set(mallory[0], mallory[1])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("mallory ending alice's session: %d, want 403", resp.StatusCode)
	}
	if status, _ := c.post(context.Background(), listBody, alice...); status != http.StatusOK {
		t.Errorf("alice's session after mallory's attempts: %d", status)
	}
}

// The caller's credential is for Airlock alone: an HTTP upstream gets the
// headers its config names, never the client's Authorization (the MCP
// authorization spec forbids passing tokens through).
func TestCredentialsAreNotPassedUpstream(t *testing.T) {
	srv := relaytest.NewServer()
	var mu sync.Mutex
	var seen []string
	mcpHandler := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return srv.Server }, nil)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Values("Authorization")...)
		mu.Unlock()
		mcpHandler.ServeHTTP(w, r)
	}))
	t.Cleanup(upstream.Close)
	up := &relay.Upstream{Name: "test", Transport: "http", Dial: func(ctx context.Context) (mcp.Connection, error) {
		return (&wire.HTTPClient{URL: upstream.URL, Header: http.Header{"Authorization": {"Bearer upstream-secret"}}}).Connect(ctx)
	}}
	d := &door{keys: map[string]string{"k-alice": "alice"}}
	r := relaytest.NewRelay(t, relay.Options{Gate: &relaytest.Gate{}}, up)
	hs := relaytest.NewHTTPServer(t, r, relay.HTTPOptions{Loopback: true, Authenticate: d.authenticate})
	c := &rawClient{t: t, url: hs.URL + "/mcp/test"}
	auth := []string{"Authorization", "Bearer k-alice"}
	if status, _ := c.post(context.Background(), initBody, auth...); status != http.StatusOK {
		t.Fatalf("initialize: %d", status)
	}
	if status, _ := c.post(context.Background(), `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{}}}`, auth...); status != http.StatusOK {
		t.Fatalf("tools/call: %d", status)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) == 0 {
		t.Fatal("the upstream saw no requests")
	}
	for _, v := range seen {
		if v != "Bearer upstream-secret" {
			t.Errorf("the upstream got Authorization %q; want only its configured header", v)
		}
	}
}
