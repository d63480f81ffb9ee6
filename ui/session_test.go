package ui_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"
)

// The approver's pages name an agent's session by its SessionRef: the
// Mcp-Session-Id itself would let whoever reads the page act in the
// session (withdraw its held calls, say). The session id is the relay's,
// so this test puts a relay, as serve has it, in front of the harness's
// broker.
func TestPagesShowSessionRefOnly(t *testing.T) {
	h := newHarness(t)
	r, err := relay.New(relay.Options{Gate: h.Broker, Logger: brokertest.Logger()}, relaytest.NewServer().Upstream("test"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	mcpSrv := relaytest.NewHTTPServer(t, &relaytest.Airlock{Broker: h.Broker, Relay: r}, relay.HTTPOptions{Loopback: true,
		Authenticate: func(http.ResponseWriter, *http.Request, string) (broker.Principal, bool) { return h.Principal, true }})
	cs, err := mcp.NewClient(&mcp.Implementation{Name: "ui-test-agent", Version: "1"}, nil).
		Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: mcpSrv.URL + "/mcp/test"}, nil)
	if err != nil {
		t.Fatalf("connect to the MCP endpoint: %v", err)
	}
	// Cleanups run last first: the broker answers the held call, the
	// session closes, and then the relay's server stops.
	t.Cleanup(func() { cs.Close() })
	t.Cleanup(func() { h.Broker.Close() })
	go cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"path": "/x", "content": "y"}})
	a := h.Held()
	id := cs.ID()
	if id == "" {
		t.Fatal("the MCP client has no session id")
	}
	ref := relay.SessionRef(id)
	c := h.signIn("")
	pages := []string{"/", "/approvals/" + a.ID, "/history", "/history/1"}
	for _, p := range pages {
		req, _ := http.NewRequest(http.MethodGet, h.url(p), nil)
		resp, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		if strings.Contains(string(body), id) {
			t.Errorf("%s shows the session id", p)
		}
	}
	_, doc := c.get("/approvals/" + a.ID)
	if !strings.Contains(doc.Text(), ref) {
		t.Errorf("the approval page does not name the session %s", ref)
	}
}
