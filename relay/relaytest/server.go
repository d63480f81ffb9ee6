package relaytest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/wire"
)

// Instructions are the test server's instructions to clients.
const Instructions = "Test server: use echo for harmless calls."

// Server is an MCP server for tests. Its tools exercise each direction of
// the protocol:
//
//	echo       read-only; returns its "text" argument
//	write      destructive; returns "wrote <path>"
//	slow       waits "ms" milliseconds (or until cancelled), sending
//	           progress when asked; a cancellation is reported on Cancelled
//	sample     asks the client for a completion and returns its text
//	elicit     asks the client for a "name" and returns it
//	roots      asks the client for its roots and returns their URIs
//	log        sends an info log message, then returns
//	fail       fails with a JSON-RPC error carrying code -32042 and data
//	tool_0..9  filler, so that tools/list needs several pages
//
// It also has a static resource, a resource template, a prompt and
// completions, and records what it received.
type Server struct {
	*mcp.Server

	mu       sync.Mutex
	methods  []string
	sessions []*mcp.ServerSession
	subs     []string

	// Cancelled receives the id of each slow call whose context was
	// cancelled before it finished.
	Cancelled chan string
	// RootsChanged receives a value for each roots list_changed.
	RootsChanged chan struct{}
}

// PageSize is the test server's page size for list results.
const PageSize = 4

// NewServer returns a fresh test server.
func NewServer() *Server {
	s := &Server{Cancelled: make(chan string, 16), RootsChanged: make(chan struct{}, 16)}
	s.Server = mcp.NewServer(&mcp.Implementation{Name: "brokertest", Version: "1.0.0"}, &mcp.ServerOptions{
		Instructions: Instructions,
		PageSize:     PageSize,
		CompletionHandler: func(_ context.Context, req *mcp.CompleteRequest) (*mcp.CompleteResult, error) {
			return &mcp.CompleteResult{Completion: mcp.CompletionResultDetails{
				Values: []string{req.Params.Argument.Value + "-one", req.Params.Argument.Value + "-two"},
			}}, nil
		},
		SubscribeHandler: func(_ context.Context, req *mcp.SubscribeRequest) error {
			s.note("subscribe:" + req.Params.URI)
			return nil
		},
		UnsubscribeHandler: func(_ context.Context, req *mcp.UnsubscribeRequest) error {
			s.note("unsubscribe:" + req.Params.URI)
			return nil
		},
		RootsListChangedHandler: func(context.Context, *mcp.RootsListChangedRequest) {
			s.RootsChanged <- struct{}{}
		},
		InitializedHandler: func(_ context.Context, req *mcp.InitializedRequest) {
			s.mu.Lock()
			s.sessions = append(s.sessions, req.Session)
			s.mu.Unlock()
		},
	})
	s.AddReceivingMiddleware(func(next mcp.MethodHandler) mcp.MethodHandler {
		return func(ctx context.Context, method string, req mcp.Request) (mcp.Result, error) {
			s.mu.Lock()
			s.methods = append(s.methods, method)
			s.mu.Unlock()
			return next(ctx, method, req)
		}
	})
	s.addTools()
	s.AddResource(&mcp.Resource{URI: "test://static", Name: "static", MIMEType: "text/plain"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, MIMEType: "text/plain", Text: "static text"}}}, nil
		})
	s.AddResourceTemplate(&mcp.ResourceTemplate{URITemplate: "test://items/{id}", Name: "item"},
		func(_ context.Context, req *mcp.ReadResourceRequest) (*mcp.ReadResourceResult, error) {
			return &mcp.ReadResourceResult{Contents: []*mcp.ResourceContents{{URI: req.Params.URI, Text: "item " + req.Params.URI}}}, nil
		})
	s.AddPrompt(&mcp.Prompt{Name: "greet", Arguments: []*mcp.PromptArgument{{Name: "name", Required: true}}},
		func(_ context.Context, req *mcp.GetPromptRequest) (*mcp.GetPromptResult, error) {
			return &mcp.GetPromptResult{Messages: []*mcp.PromptMessage{{Role: "user", Content: &mcp.TextContent{Text: "Hello, " + req.Params.Arguments["name"]}}}}, nil
		})
	return s
}

func objectSchema(props string) json.RawMessage {
	return json.RawMessage(`{"type":"object","properties":{` + props + `}}`)
}

func (s *Server) addTools() {
	yes := true
	s.AddTool(&mcp.Tool{Name: "echo", Description: "Echo text back.", InputSchema: objectSchema(`"text":{"type":"string"}`),
		Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			var a struct{ Text string }
			json.Unmarshal(req.Params.Arguments, &a)
			return text(a.Text), nil
		})
	s.AddTool(&mcp.Tool{Name: "write", Description: "Write a file.", InputSchema: objectSchema(`"path":{"type":"string"},"content":{"type":"string"}`),
		Annotations: &mcp.ToolAnnotations{DestructiveHint: &yes}},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			var a struct{ Path string }
			json.Unmarshal(req.Params.Arguments, &a)
			return text("wrote " + a.Path), nil
		})
	s.AddTool(&mcp.Tool{Name: "slow", Description: "Wait.", InputSchema: objectSchema(`"ms":{"type":"integer"},"id":{"type":"string"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			var a struct {
				MS int
				ID string
			}
			json.Unmarshal(req.Params.Arguments, &a)
			if tok := req.Params.GetProgressToken(); tok != nil {
				for i := 1; i <= 3; i++ {
					req.Session.NotifyProgress(ctx, &mcp.ProgressNotificationParams{ProgressToken: tok, Progress: float64(i), Total: 3})
				}
			}
			select {
			case <-time.After(time.Duration(a.MS) * time.Millisecond):
				return text("done " + a.ID), nil
			case <-ctx.Done():
				s.Cancelled <- a.ID
				return nil, ctx.Err()
			}
		})
	s.AddTool(&mcp.Tool{Name: "sample", InputSchema: objectSchema(`"prompt":{"type":"string"}`)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			res, err := req.Session.CreateMessage(ctx, &mcp.CreateMessageParams{
				MaxTokens: 10, Messages: []*mcp.SamplingMessage{{Role: "user", Content: &mcp.TextContent{Text: "hi"}}}})
			if err != nil {
				return nil, err
			}
			return text(res.Content.(*mcp.TextContent).Text), nil
		})
	s.AddTool(&mcp.Tool{Name: "elicit", InputSchema: objectSchema(``)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			res, err := req.Session.Elicit(ctx, &mcp.ElicitParams{Message: "Who are you?",
				RequestedSchema: json.RawMessage(`{"type":"object","properties":{"name":{"type":"string"}}}`)})
			if err != nil {
				return nil, err
			}
			return text(fmt.Sprintf("%s %v", res.Action, res.Content["name"])), nil
		})
	s.AddTool(&mcp.Tool{Name: "roots", InputSchema: objectSchema(``)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			res, err := req.Session.ListRoots(ctx, nil)
			if err != nil {
				return nil, err
			}
			out := ""
			for _, r := range res.Roots {
				out += r.URI + " "
			}
			return text(out), nil
		})
	s.AddTool(&mcp.Tool{Name: "log", InputSchema: objectSchema(``)},
		func(ctx context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			req.Session.Log(ctx, &mcp.LoggingMessageParams{Level: "info", Logger: "brokertest", Data: "logged from a tool"})
			return text("logged"), nil
		})
	s.AddTool(&mcp.Tool{Name: "fail", InputSchema: objectSchema(``)},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return nil, &jsonrpc.Error{Code: -32042, Message: "fail on purpose", Data: json.RawMessage(`{"why":"test"}`)}
		})
	for i := range 10 {
		s.AddTool(&mcp.Tool{Name: fmt.Sprintf("tool_%d", i), InputSchema: objectSchema(``)},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) { return text("filler"), nil })
	}
}

func text(s string) *mcp.CallToolResult {
	return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: s}}}
}

func (s *Server) note(m string) {
	s.mu.Lock()
	s.subs = append(s.subs, m)
	s.mu.Unlock()
}

// Methods returns the methods the server has received, in order.
func (s *Server) Methods() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.methods...)
}

// Count returns how often the server received method.
func (s *Server) Count(method string) int {
	n := 0
	for _, m := range s.Methods() {
		if m == method {
			n++
		}
	}
	return n
}

// Subscriptions returns "subscribe:URI" and "unsubscribe:URI" events in
// order.
func (s *Server) Subscriptions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.subs...)
}

// Sessions returns the server sessions that completed initialization.
func (s *Server) Sessions() []*mcp.ServerSession {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*mcp.ServerSession(nil), s.sessions...)
}

// Upstream returns an upstream that dials a new in-memory session with s,
// as a stdio server would get a new process.
func (s *Server) Upstream(name string) *relay.Upstream {
	return relay.InProcessUpstream(name, s.Server)
}

// HTTPUpstream serves s over streamable HTTP for the length of the test and
// returns an upstream that reaches it with Airlock's HTTP client.
func (s *Server) HTTPUpstream(t testing.TB, name string) *relay.Upstream {
	srv := httptest.NewServer(mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s.Server }, nil))
	t.Cleanup(srv.Close)
	return &relay.Upstream{
		Name:             name,
		Transport:        "http",
		TrustAnnotations: true,
		Dial: func(ctx context.Context) (mcp.Connection, error) {
			return (&wire.HTTPClient{URL: srv.URL}).Connect(ctx)
		},
	}
}
