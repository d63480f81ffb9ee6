package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"
	"github.com/airlock-mcp/airlock/relay/wire"
)

// Tests of the seam between the relay and the gate (broker.Call, Caller,
// Outcome), from the relay's side, against a stub gate.

// What the gate judges is what is forwarded: the Call carries the
// tools/call params byte for byte as the client sent them, and the
// upstream receives exactly those bytes.
func TestGateSeesTheForwardedParams(t *testing.T) {
	params := map[string]string{
		"plain":          `{"name":"echo","arguments":{"text":"hi"}}`,
		"spaced":         "{ \"name\" :\t\"echo\" , \"arguments\" : { \"text\" : \"hi\" } }",
		"escapes":        `{"name":"\u0065cho","arguments":{"text":"\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"}}`,
		"numbers":        `{"name":"echo","arguments":{"n":1.0e+2,"big":9007199254740993,"neg":-0,"tiny":1e-400}}`,
		"unknown fields": `{"name":"echo","arguments":{},"x-extra":{"k":[true,null]},"_meta":{"trace":"t"}}`,
		"progress":       `{"name":"echo","arguments":{},"_meta":{"progressToken":"tok"}}`,
		"long":           `{"name":"echo","arguments":{"text":"` + strings.Repeat("ab", 40000) + `"}}`,
	}
	for name, p := range params {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rr := newRawRelay(t)
			initializeRaw(t, rr)
			rr.client(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":` + p + `}`)
			c := rr.gateGets()
			if string(c.params) != p {
				t.Errorf("the gate saw params\n%s\nwant\n%s", c.params, p)
			}
			c.decide(t, broker.Outcome{Forward: true})
			line, _ := rr.upstreamGets()
			msg, err := wire.Decode([]byte(line))
			if err != nil {
				t.Fatalf("upstream got %s: %v", line, err)
			}
			req, ok := msg.(*jsonrpc.Request)
			if !ok || req.Method != "tools/call" || string(req.Params) != string(c.params) {
				t.Errorf("upstream got\n%s\nthe gate saw\n%s", line, c.params)
			}

			calls := rr.gate.Calls()
			if len(calls) != 1 {
				t.Fatalf("the gate saw %d calls", len(calls))
			}
			call := calls[0]
			if call.Server != "test" || call.Transport != "stdio" || !reflect.DeepEqual(call.Principal, broker.Principal{ID: "tester", Source: "os"}) ||
				call.Client.Name != "raw" || call.Client.ProtocolVersion != "2025-11-25" || call.Received.IsZero() {
				t.Errorf("the gate saw call %+v", call)
			}
			if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(call.Session) {
				t.Errorf("the call names session %q, want a SessionRef", call.Session)
			}
			if call.Progress != (name == "progress") {
				t.Errorf("Progress = %v for params %s", call.Progress, p)
			}
		})
	}
}

// Heartbeats the gate sends while it holds a call reach the client under
// the client's progress token, and the upstream's progress after them is
// shifted past them, so that progress keeps increasing; its total is the
// upstream's, unshifted.
func TestHeartbeatsThenShiftedProgress(t *testing.T) {
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := relaytest.NewServer()
			h := relaytest.NewHold(2)
			g := &relaytest.Gate{Decide: h.Decide}
			r := relaytest.NewRelay(t, relay.Options{Gate: g}, p.upstream(t, srv))
			ev := relaytest.NewEvents()
			cs := p.downstream(t, r, relaytest.NewClient(ev))

			params := &mcp.CallToolParams{Name: "slow", Arguments: map[string]any{"ms": 1, "id": "h"}}
			params.SetProgressToken("tok-h")
			errc := make(chan error, 1)
			go func() {
				_, err := cs.CallTool(ctxT(t), params)
				errc <- err
			}()
			if call := brokertest.Wait(t, h.Held, "the call to be held"); !call.Progress {
				t.Error("the gate was not told the caller gave a progress token")
			}
			for want := 1.0; want <= 2; want++ {
				pr := brokertest.Wait(t, ev.Progress, "a heartbeat")
				if pr.ProgressToken != "tok-h" || pr.Progress != want || pr.Message != "held for a test" {
					t.Errorf("heartbeat = %+v, want token tok-h at %v", pr, want)
				}
			}
			h.Release(t, broker.Outcome{Forward: true})
			if err := brokertest.Wait(t, errc, "the call to return"); err != nil {
				t.Fatal(err)
			}
			// The upstream sent 1, 2 and 3 of 3.
			for want := 3.0; want <= 5; want++ {
				pr := brokertest.Wait(t, ev.Progress, "upstream progress")
				if pr.ProgressToken != "tok-h" || pr.Progress != want || pr.Total != 3 {
					t.Errorf("progress = %+v, want token tok-h at %v of 3", pr, want)
				}
			}
		})
	}
}

// A client that cancels a held call, or goes away, ends the gate's wait,
// and the context the gate was given says why.
func TestClientCancelEndsTheGatesWait(t *testing.T) {
	t.Run("stdio cancel", func(t *testing.T) {
		t.Parallel()
		h := relaytest.NewHold(0)
		srv := relaytest.NewServer()
		r := relaytest.NewRelay(t, relay.Options{Gate: &relaytest.Gate{Decide: h.Decide}}, srv.Upstream("test"))
		cs := relaytest.StdioClient(t, r, relaytest.NewClient(relaytest.NewEvents()))
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"path": "/x"}})
			errc <- err
		}()
		brokertest.Wait(t, h.Held, "the call to be held")
		cancel()
		if cause := brokertest.Wait(t, h.Ended, "the gate's wait to end"); !errors.Is(cause, broker.ErrClientCancelled) || errors.Is(cause, broker.ErrClientTimedOut) {
			t.Errorf("cause = %v, want %v and no timeout", cause, broker.ErrClientCancelled)
		}
		brokertest.Wait(t, errc, "the call to return")
		if err := cs.Ping(ctxT(t), nil); err != nil {
			t.Fatal(err)
		}
		if n := srv.Count("tools/call"); n != 0 {
			t.Errorf("the upstream got %d tools/calls", n)
		}
	})
	// The client's reason for cancelling is kept, as one line and bounded:
	// the withdrawal says "the client cancelled the call: Request timed
	// out" where the TypeScript SDK's timeout fired.
	t.Run("stdio cancel with a reason", func(t *testing.T) {
		t.Parallel()
		rr := newRawRelay(t)
		rr.client(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","arguments":{"path":"/x"}}}`)
		c := rr.gateGets()
		rr.client(`{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1,"reason":"Request timed out\n\u001b[31m` + strings.Repeat("é", 300) + `"}}`)
		select {
		case <-c.ctx.Done():
		case <-timeout():
			t.Fatal("the cancellation did not end the gate's wait")
		}
		cause := context.Cause(c.ctx)
		want := "the client cancelled the call: Request timed out  [31m" + strings.Repeat("é", 88) + "…"
		if !errors.Is(cause, broker.ErrClientCancelled) || !errors.Is(cause, broker.ErrClientTimedOut) || cause.Error() != want {
			t.Errorf("cause = %q, want %q, a timeout", cause, want)
		}
	})
	// The go-sdk cancels a call whose context's deadline passed with the
	// reason "context deadline exceeded": a timeout too, whose approval
	// the core keeps open for the retry.
	t.Run("stdio go-sdk deadline", func(t *testing.T) {
		t.Parallel()
		h := relaytest.NewHold(0)
		r := relaytest.NewRelay(t, relay.Options{Gate: &relaytest.Gate{Decide: h.Decide}}, relaytest.NewServer().Upstream("test"))
		cs := relaytest.StdioClient(t, r, relaytest.NewClient(relaytest.NewEvents()))
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		go cs.CallTool(ctx, &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"path": "/x"}})
		brokertest.Wait(t, h.Held, "the call to be held")
		cause := brokertest.Wait(t, h.Ended, "the gate's wait to end")
		if !errors.Is(cause, broker.ErrClientTimedOut) || cause.Error() != "the client cancelled the call: context deadline exceeded" {
			t.Errorf("cause = %q, want a timeout", cause)
		}
	})
	// The session ends when the client closes stdin, or when ServeConn's
	// context ends (Airlock shutting down).
	for name, end := range map[string]func(*rawRelay){"stdio session closed": (*rawRelay).close, "stdio ServeConn stopped": func(rr *rawRelay) { rr.stop() }} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rr := newRawRelay(t)
			rr.client(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","arguments":{"path":"/x"}}}`)
			c := rr.gateGets()
			end(rr)
			select {
			case <-c.ctx.Done():
			case <-timeout():
				t.Fatal("the gate's wait did not end with the session")
			}
			if cause := context.Cause(c.ctx); !errors.Is(cause, broker.ErrSessionClosed) {
				t.Errorf("cause = %v, want %v", cause, broker.ErrSessionClosed)
			}
		})
	}
	held := func(t *testing.T) (*rawClient, *relaytest.Hold, context.CancelFunc) {
		h := relaytest.NewHold(0)
		c, _, _ := newRawClientGated(t, relay.HTTPOptions{Loopback: true}, h.Decide)
		c.initialize()
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url,
				strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"write","arguments":{"path":"/x"}}}`))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", "application/json, text/event-stream")
			req.Header.Set(wire.HeaderSessionID, c.session)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
		brokertest.Wait(t, h.Held, "the call to be held")
		return c, h, cancel
	}
	t.Run("HTTP disconnect", func(t *testing.T) {
		t.Parallel()
		_, h, cancel := held(t)
		cancel()
		if cause := brokertest.Wait(t, h.Ended, "the gate's wait to end"); !errors.Is(cause, broker.ErrClientGone) {
			t.Errorf("cause = %v, want %v", cause, broker.ErrClientGone)
		}
	})
	// The go-sdk over HTTP closes the request of a call whose context
	// ended and says why in notifications/cancelled on another: the
	// reason reaches the gate, not "disconnected".
	for name, tc := range map[string]struct {
		end     func(context.Context) (context.Context, context.CancelFunc)
		timeout bool
		want    string
	}{
		"HTTP go-sdk deadline": {func(ctx context.Context) (context.Context, context.CancelFunc) {
			return context.WithTimeout(ctx, 300*time.Millisecond)
		}, true, "the client cancelled the call: context deadline exceeded"},
		"HTTP go-sdk cancel": {context.WithCancel, false, "the client cancelled the call: context canceled"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := relaytest.NewHold(0)
			r := relaytest.NewRelay(t, relay.Options{Gate: &relaytest.Gate{Decide: h.Decide}}, relaytest.NewServer().Upstream("test"))
			cs := relaytest.HTTPClient(t, r, relaytest.NewClient(relaytest.NewEvents()))
			ctx, cancel := tc.end(context.Background())
			defer cancel()
			go cs.CallTool(ctx, &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"path": "/x"}})
			brokertest.Wait(t, h.Held, "the call to be held")
			if !tc.timeout {
				cancel()
			}
			cause := brokertest.Wait(t, h.Ended, "the gate's wait to end")
			if !errors.Is(cause, broker.ErrClientCancelled) || errors.Is(cause, broker.ErrClientTimedOut) != tc.timeout || cause.Error() != tc.want {
				t.Errorf("cause = %q, want %q (a timeout: %v)", cause, tc.want, tc.timeout)
			}
		})
	}
	t.Run("HTTP DELETE", func(t *testing.T) {
		t.Parallel()
		c, h, _ := held(t)
		req, _ := http.NewRequest(http.MethodDelete, c.url, nil)
		req.Header.Set(wire.HeaderSessionID, c.session)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if cause := brokertest.Wait(t, h.Ended, "the gate's wait to end"); !errors.Is(cause, broker.ErrSessionClosed) {
			t.Errorf("cause = %v, want %v", cause, broker.ErrSessionClosed)
		}
	})
}

// A refusal reaches the client as a tool result with isError set, malformed
// params as an invalid-params error, on every path.
func TestGateRefusalAndMalformed(t *testing.T) {
	const refusal = "Denied by policy: no writes (decided by policy)."
	eachPathGated(t, func() relaytest.Decision {
		return func(_ context.Context, call *broker.Call, _ broker.Caller) broker.Outcome {
			if strings.Contains(string(call.Params), `"Name"`) {
				return broker.Outcome{Malformed: `tools/call params: "Name" is not "name"`}
			}
			return broker.Outcome{Refusal: refusal}
		}
	}, func(t *testing.T, e *gated) {
		res, err := e.cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"path": "/x"}})
		if err != nil || !res.IsError || len(res.Content) != 1 || res.Content[0].(*mcp.TextContent).Text != refusal {
			t.Errorf("refused call: %+v, %v", res, err)
		}
		_, err = e.cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{"Name": "write"}})
		var werr *jsonrpc.Error
		if !errors.As(err, &werr) || werr.Code != jsonrpc.CodeInvalidParams || werr.Message != `tools/call params: "Name" is not "name"` {
			t.Errorf("malformed call: %v, want an invalid-params error", err)
		}
		if n := e.srv.Count("tools/call"); n != 0 {
			t.Errorf("the upstream got %d tools/calls", n)
		}
	})
}

// The result of a forwarded call waits for Outcome.Audited: the upstream's
// other answers pass meanwhile, and a failed audit write withholds it.
func TestResultWaitsForTheAudit(t *testing.T) {
	const result = `{"content":[{"type":"text","text":"wrote /x"}]}`
	for name, auditErr := range map[string]error{"written": nil, "failed": errors.New("disk full")} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rr := newRawRelay(t)
			audited := make(chan error, 1)
			rr.client(`{"jsonrpc":"2.0","id":"w","method":"tools/call","params":{"name":"write","arguments":{"path":"/x"}}}`)
			rr.gateGets().decide(t, broker.Outcome{Forward: true, Audited: audited})
			mustGet(t, rr.upstreamGets, `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write","arguments":{"path":"/x"}}}`)
			rr.upstream(`{"jsonrpc":"2.0","id":1,"result":` + result + `}`)
			// The relay reads the upstream in order: the ping's answer
			// comes after the call's result, and overtakes it.
			rr.client(`{"jsonrpc":"2.0","id":"p","method":"ping"}`)
			mustGet(t, rr.upstreamGets, `{"jsonrpc":"2.0","id":2,"method":"ping"}`)
			rr.upstream(`{"jsonrpc":"2.0","id":2,"result":{}}`)
			mustGet(t, rr.clientGets, `{"jsonrpc":"2.0","id":"p","result":{}}`)
			audited <- auditErr
			line, _ := rr.clientGets()
			if auditErr == nil {
				if want := `{"jsonrpc":"2.0","id":"w","result":` + result + `}`; line != want {
					t.Errorf("got  %s\nwant %s", line, want)
				}
				return
			}
			var m struct {
				ID     string
				Result mcp.CallToolResult
			}
			if err := json.Unmarshal([]byte(line), &m); err != nil || m.ID != "w" || !m.Result.IsError || len(m.Result.Content) != 1 ||
				!strings.Contains(m.Result.Content[0].(*mcp.TextContent).Text, "could not write this call to its audit log") ||
				strings.Contains(line, "wrote /x") {
				t.Errorf("a result whose audit failed reached the client as %s", line)
			}
		})
	}
}

// The gate's lookups go through the caller: a definition the session has
// listed is reused, a fresh one is listed again, a tool the upstream does
// not list is nil, and every page the relay lists reaches the gate's
// Listed.
func TestCallerDefinition(t *testing.T) {
	type lookup struct {
		def   *broker.ToolDefinition
		err   error
		lists int // tools/list requests the upstream had served after it
	}
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv := relaytest.NewServer()
			lookups := make(chan []lookup, 1)
			g := &relaytest.Gate{Decide: func(ctx context.Context, _ *broker.Call, caller broker.Caller) broker.Outcome {
				var out []lookup
				for _, q := range []struct {
					tool  string
					fresh bool
				}{{"write", false}, {"write", false}, {"write", true}, {"nope", false}} {
					def, err := caller.Definition(ctx, q.tool, q.fresh)
					out = append(out, lookup{def, err, srv.Count("tools/list")})
				}
				lookups <- out
				return broker.Outcome{Refusal: "looked up"}
			}}
			r := relaytest.NewRelay(t, relay.Options{Gate: g}, p.upstream(t, srv))
			cs := p.downstream(t, r, relaytest.NewClient(relaytest.NewEvents()))
			if _, err := cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{}}); err != nil {
				t.Fatal(err)
			}
			got := brokertest.Wait(t, lookups, "the gate's lookups")
			pages := (18 + relaytest.PageSize - 1) / relaytest.PageSize
			// The first lookup lists every page, the second reuses them,
			// the fresh one lists them all again; "nope" is not listed, so
			// looking it up lists once more and finds nothing.
			for i, want := range []int{pages, pages, 2 * pages, 3 * pages} {
				if got[i].err != nil || got[i].lists != want {
					t.Errorf("lookup %d: %v after %d tools/list requests, want %d", i, got[i].err, got[i].lists, want)
				}
			}
			for _, i := range []int{0, 1, 2} {
				if d := got[i].def; d == nil || d.Name != "write" || !strings.Contains(string(d.Annotations), "destructiveHint") {
					t.Errorf("lookup %d: %+v", i, d)
				}
			}
			if got[3].def != nil {
				t.Errorf("a tool the upstream does not list: %+v", got[3].def)
			}
			var listed int
			for _, l := range g.ToolLists() {
				if l.Server != "test" {
					t.Errorf("Listed for server %q", l.Server)
				}
				listed += len(l.Tools)
			}
			if listed != 3*18 {
				t.Errorf("the gate was told of %d tools listed, want %d", listed, 3*18)
			}
		})
	}
}
