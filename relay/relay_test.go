package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// path is one way through Airlock: how the client reaches it and how it
// reaches the upstream.
type path struct {
	upstream   func(t *testing.T, s *relaytest.Server) *relay.Upstream
	downstream func(t testing.TB, a relaytest.Relay, c *mcp.Client) *mcp.ClientSession
}

var paths = map[string]path{
	"stdio-to-memory": {memoryUpstream, relaytest.StdioClient},
	"http-to-memory":  {memoryUpstream, relaytest.HTTPClient},
	"stdio-to-http":   {httpUpstream, relaytest.StdioClient},
	"http-to-http":    {httpUpstream, relaytest.HTTPClient},
}

func memoryUpstream(_ *testing.T, s *relaytest.Server) *relay.Upstream { return s.Upstream("test") }
func httpUpstream(t *testing.T, s *relaytest.Server) *relay.Upstream {
	return s.HTTPUpstream(t, "test")
}

// eachPath runs fn once for every path through a relay whose gate
// forwards every call.
func eachPath(t *testing.T, fn func(t *testing.T, srv *relaytest.Server, cs *mcp.ClientSession, ev *relaytest.Events)) {
	eachPathGated(t, nil, func(t *testing.T, e *gated) { fn(t, e.srv, e.cs, e.ev) })
}

// gated is one path through a relay in front of a stub gate.
type gated struct {
	srv  *relaytest.Server
	cs   *mcp.ClientSession
	ev   *relaytest.Events
	gate *relaytest.Gate
}

// eachPathGated runs fn once for every path through a relay whose gate
// decides with the Decision decide makes for the path; nil decide, or a
// nil Decision, forwards every call.
func eachPathGated(t *testing.T, decide func() relaytest.Decision, fn func(t *testing.T, e *gated)) {
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := &gated{srv: relaytest.NewServer(), ev: relaytest.NewEvents(), gate: &relaytest.Gate{}}
			if decide != nil {
				e.gate.Decide = decide()
			}
			r := relaytest.NewRelay(t, relay.Options{Gate: e.gate}, p.upstream(t, e.srv))
			e.cs = p.downstream(t, r, relaytest.NewClient(e.ev))
			fn(t, e)
		})
	}
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func callText(t *testing.T, cs *mcp.ClientSession, name string, args any) string {
	t.Helper()
	res, err := cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: name, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", name, err)
	}
	if res.IsError || len(res.Content) != 1 {
		t.Fatalf("call %s: unexpected result %+v", name, res)
	}
	return res.Content[0].(*mcp.TextContent).Text
}

func TestInitializeMirrorsUpstream(t *testing.T) {
	eachPath(t, func(t *testing.T, srv *relaytest.Server, cs *mcp.ClientSession, _ *relaytest.Events) {
		res := cs.InitializeResult()
		if res.Instructions != relaytest.Instructions {
			t.Errorf("instructions = %q", res.Instructions)
		}
		if res.ServerInfo.Name != "brokertest" {
			t.Errorf("server info = %+v", res.ServerInfo)
		}
		c := res.Capabilities
		if c.Tools == nil || !c.Tools.ListChanged || c.Resources == nil || !c.Resources.Subscribe ||
			c.Prompts == nil || c.Completions == nil || c.Logging == nil {
			t.Errorf("capabilities not mirrored: %+v", c)
		}
		if res.ProtocolVersion != relay.LatestProtocolVersion {
			t.Errorf("protocol version = %q, want %q", res.ProtocolVersion, relay.LatestProtocolVersion)
		}
		p := upstreamSession(t, srv).InitializeParams()
		if p.ClientInfo.Name != "relay-test" || p.Capabilities.Sampling == nil || p.Capabilities.Elicitation == nil || !p.Capabilities.RootsV2.ListChanged {
			t.Errorf("upstream saw client %+v with capabilities %+v", p.ClientInfo, p.Capabilities)
		}
	})
}

// A client without sampling or elicitation must not be advertised as
// having them: the upstream would send requests nobody can answer.
func TestClientCapabilitiesNotInflated(t *testing.T) {
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			srv := relaytest.NewServer()
			r := relaytest.NewRelay(t, relay.Options{}, p.upstream(t, srv))
			p.downstream(t, r, mcp.NewClient(&mcp.Implementation{Name: "bare", Version: "1"}, nil))
			caps := upstreamSession(t, srv).InitializeParams().Capabilities
			if caps.Sampling != nil || caps.Elicitation != nil {
				t.Errorf("upstream was told the client can sample or elicit: %+v", caps)
			}
		})
	}
}

func TestToolsListPaginated(t *testing.T) {
	eachPath(t, func(t *testing.T, srv *relaytest.Server, cs *mcp.ClientSession, _ *relaytest.Events) {
		var names []string
		for tool, err := range cs.Tools(ctxT(t), nil) {
			if err != nil {
				t.Fatal(err)
			}
			names = append(names, tool.Name)
		}
		if len(names) != 18 {
			t.Errorf("listed %d tools, want 18: %v", len(names), names)
		}
		if n := srv.Count("tools/list"); n < 18/relaytest.PageSize {
			t.Errorf("upstream served %d pages, want at least %d", n, 18/relaytest.PageSize)
		}
	})
}

func TestToolsCall(t *testing.T) {
	eachPath(t, func(t *testing.T, _ *relaytest.Server, cs *mcp.ClientSession, _ *relaytest.Events) {
		if got := callText(t, cs, "echo", map[string]any{"text": "hello"}); got != "hello" {
			t.Errorf("echo = %q", got)
		}
	})
}

func TestUpstreamErrorKeepsCodeMessageData(t *testing.T) {
	eachPath(t, func(t *testing.T, _ *relaytest.Server, cs *mcp.ClientSession, _ *relaytest.Events) {
		_, err := cs.CallTool(ctxT(t), &mcp.CallToolParams{Name: "fail", Arguments: map[string]any{}})
		var werr *jsonrpc.Error
		if !errors.As(err, &werr) {
			t.Fatalf("err = %v, want a JSON-RPC error", err)
		}
		if werr.Code != -32042 || werr.Message != "fail on purpose" || string(werr.Data) != `{"why":"test"}` {
			t.Errorf("error = %d %q %s", werr.Code, werr.Message, werr.Data)
		}
	})
}

func TestResources(t *testing.T) {
	eachPath(t, func(t *testing.T, srv *relaytest.Server, cs *mcp.ClientSession, ev *relaytest.Events) {
		ctx := ctxT(t)
		lr, err := cs.ListResources(ctx, nil)
		if err != nil || len(lr.Resources) != 1 || lr.Resources[0].URI != "test://static" {
			t.Fatalf("resources/list = %+v, %v", lr, err)
		}
		lt, err := cs.ListResourceTemplates(ctx, nil)
		if err != nil || len(lt.ResourceTemplates) != 1 || lt.ResourceTemplates[0].URITemplate != "test://items/{id}" {
			t.Fatalf("resources/templates/list = %+v, %v", lt, err)
		}
		rr, err := cs.ReadResource(ctx, &mcp.ReadResourceParams{URI: "test://items/7"})
		if err != nil || rr.Contents[0].Text != "item test://items/7" {
			t.Fatalf("resources/read = %+v, %v", rr, err)
		}
		if err := cs.Subscribe(ctx, &mcp.SubscribeParams{URI: "test://static"}); err != nil {
			t.Fatal(err)
		}
		if err := srv.ResourceUpdated(ctx, &mcp.ResourceUpdatedNotificationParams{URI: "test://static"}); err != nil {
			t.Fatal(err)
		}
		if uri := brokertest.Wait(t, ev.ResourceUpdated, "resources/updated"); uri != "test://static" {
			t.Errorf("updated %q", uri)
		}
		if err := cs.Unsubscribe(ctx, &mcp.UnsubscribeParams{URI: "test://static"}); err != nil {
			t.Fatal(err)
		}
		want := []string{"subscribe:test://static", "unsubscribe:test://static"}
		if got := srv.Subscriptions(); !slices.Equal(got, want) {
			t.Errorf("subscriptions = %v, want %v", got, want)
		}
	})
}

func TestPromptsAndCompletion(t *testing.T) {
	eachPath(t, func(t *testing.T, _ *relaytest.Server, cs *mcp.ClientSession, _ *relaytest.Events) {
		ctx := ctxT(t)
		lp, err := cs.ListPrompts(ctx, nil)
		if err != nil || len(lp.Prompts) != 1 || lp.Prompts[0].Name != "greet" {
			t.Fatalf("prompts/list = %+v, %v", lp, err)
		}
		gp, err := cs.GetPrompt(ctx, &mcp.GetPromptParams{Name: "greet", Arguments: map[string]string{"name": "Ada"}})
		if err != nil || gp.Messages[0].Content.(*mcp.TextContent).Text != "Hello, Ada" {
			t.Fatalf("prompts/get = %+v, %v", gp, err)
		}
		cr, err := cs.Complete(ctx, &mcp.CompleteParams{
			Ref:      &mcp.CompleteReference{Type: "ref/prompt", Name: "greet"},
			Argument: mcp.CompleteParamsArgument{Name: "name", Value: "A"},
		})
		if err != nil || !slices.Equal(cr.Completion.Values, []string{"A-one", "A-two"}) {
			t.Fatalf("completion/complete = %+v, %v", cr, err)
		}
	})
}

func TestLoggingAndPing(t *testing.T) {
	eachPath(t, func(t *testing.T, srv *relaytest.Server, cs *mcp.ClientSession, ev *relaytest.Events) {
		ctx := ctxT(t)
		if err := cs.Ping(ctx, nil); err != nil {
			t.Fatalf("client ping: %v", err)
		}
		if err := upstreamSession(t, srv).Ping(ctx, nil); err != nil {
			t.Fatalf("server ping: %v", err)
		}
		if err := cs.SetLoggingLevel(ctx, &mcp.SetLoggingLevelParams{Level: "info"}); err != nil {
			t.Fatal(err)
		}
		callText(t, cs, "log", map[string]any{})
		if m := brokertest.Wait(t, ev.Logs, "log message"); m.Data != "logged from a tool" {
			t.Errorf("log data = %v", m.Data)
		}
	})
}

func TestProgress(t *testing.T) {
	eachPath(t, func(t *testing.T, _ *relaytest.Server, cs *mcp.ClientSession, ev *relaytest.Events) {
		params := &mcp.CallToolParams{Name: "slow", Arguments: map[string]any{"ms": 1, "id": "p"}}
		params.SetProgressToken("tok-1")
		if _, err := cs.CallTool(ctxT(t), params); err != nil {
			t.Fatal(err)
		}
		for want := 1.0; want <= 3; want++ {
			p := brokertest.Wait(t, ev.Progress, "progress")
			if p.ProgressToken != "tok-1" || p.Progress != want {
				t.Errorf("progress = %+v, want token tok-1 at %v", p, want)
			}
		}
	})
}

func TestCancellationReachesUpstream(t *testing.T) {
	eachPath(t, func(t *testing.T, srv *relaytest.Server, cs *mcp.ClientSession, _ *relaytest.Events) {
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "slow", Arguments: map[string]any{"ms": 60000, "id": "c1"}})
			errc <- err
		}()
		brokertest.WaitFor(t, "the slow call to start", func() bool { return srv.Count("tools/call") == 1 })
		cancel()
		if id := brokertest.Wait(t, srv.Cancelled, "upstream cancellation"); id != "c1" {
			t.Errorf("cancelled %q", id)
		}
		if err := brokertest.Wait(t, errc, "call to return"); err == nil {
			t.Error("cancelled call returned no error")
		}
	})
}

func TestListChanged(t *testing.T) {
	eachPath(t, func(t *testing.T, srv *relaytest.Server, cs *mcp.ClientSession, ev *relaytest.Events) {
		// The client must have listed for the SDK to announce changes.
		cs.ListTools(ctxT(t), nil)
		srv.AddTool(&mcp.Tool{Name: "late", InputSchema: json.RawMessage(`{"type":"object"}`)},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{}, nil
			})
		brokertest.Wait(t, ev.ToolsChanged, "tools/list_changed")
		srv.AddResource(&mcp.Resource{URI: "test://late", Name: "late"}, nil)
		brokertest.Wait(t, ev.ResourcesChanged, "resources/list_changed")
		srv.AddPrompt(&mcp.Prompt{Name: "late"}, nil)
		brokertest.Wait(t, ev.PromptsChanged, "prompts/list_changed")
	})
}

func TestUpstreamRequestsReachClient(t *testing.T) {
	eachPath(t, func(t *testing.T, srv *relaytest.Server, cs *mcp.ClientSession, _ *relaytest.Events) {
		if got := callText(t, cs, "sample", map[string]any{}); got != "sampled by the client" {
			t.Errorf("sampling: %q", got)
		}
		if got := callText(t, cs, "elicit", map[string]any{}); got != "accept Ada" {
			t.Errorf("elicitation: %q", got)
		}
		if got := callText(t, cs, "roots", map[string]any{}); got != "file:///work/root-a " {
			t.Errorf("roots/list: %q", got)
		}
	})
}

func TestRootsListChanged(t *testing.T) {
	for name, p := range paths {
		t.Run(name, func(t *testing.T) {
			srv := relaytest.NewServer()
			r := relaytest.NewRelay(t, relay.Options{}, p.upstream(t, srv))
			c := relaytest.NewClient(relaytest.NewEvents())
			p.downstream(t, r, c)
			c.AddRoots(&mcp.Root{URI: "file:///work/root-b"})
			brokertest.Wait(t, srv.RootsChanged, "roots/list_changed")
		})
	}
}

// upstreamSession waits for the upstream's single session to be
// initialized; the initialized notification arrives after the client's
// Connect returns.
func upstreamSession(t *testing.T, srv *relaytest.Server) *mcp.ServerSession {
	t.Helper()
	brokertest.WaitFor(t, "the upstream session", func() bool { return len(srv.Sessions()) > 0 })
	if n := len(srv.Sessions()); n != 1 {
		t.Fatalf("upstream has %d sessions, want 1", n)
	}
	return srv.Sessions()[0]
}
