package relay_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"
)

// AwaitGate returns once every call at the gate has its answer written, so
// that sessions closed right after it cannot answer a held call "session
// closed" in place of its result: the shutdown order of serve and wrap.
func TestAwaitGateBeforeClosingSessions(t *testing.T) {
	hold := relaytest.NewHold(0)
	r := relaytest.NewRelay(t, relay.Options{Gate: &relaytest.Gate{Decide: hold.Decide}}, relaytest.NewServer().Upstream("test"))
	if err := r.AwaitGate(ctxT(t)); err != nil {
		t.Fatalf("no call at the gate: %v", err)
	}
	h := r.HTTPHandler(relay.HTTPOptions{Loopback: true})
	mux := http.NewServeMux()
	mux.Handle("/mcp/{server}", h)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	cs, err := relaytest.NewClient(relaytest.NewEvents()).Connect(ctxT(t), &mcp.StreamableClientTransport{Endpoint: srv.URL + "/mcp/test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	t.Cleanup(h.Close) // first: a test that failed may leave a call held
	type answer struct {
		res *mcp.CallToolResult
		err error
	}
	got := make(chan answer, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"text": "x"}})
		got <- answer{res, err}
	}()
	<-hold.Held

	gone, cancel := context.WithCancel(context.Background())
	cancel()
	if err := r.AwaitGate(gone); err == nil {
		t.Fatal("AwaitGate returned while a call was held")
	}
	hold.Release(t, broker.Outcome{Refusal: "abandoned: Airlock stopped while the call waited"})
	if err := r.AwaitGate(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	h.Close()
	a := <-got
	if a.err != nil || !a.res.IsError || len(a.res.Content) != 1 || a.res.Content[0].(*mcp.TextContent).Text != "abandoned: Airlock stopped while the call waited" {
		t.Fatalf("the held call read %+v, %v", a.res, a.err)
	}
}
