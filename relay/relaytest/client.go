package relaytest

import (
	"context"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Events collects what a client made by NewClient hears from the server,
// for assertions.
type Events struct {
	Logs             chan *mcp.LoggingMessageParams
	Progress         chan *mcp.ProgressNotificationParams
	ToolsChanged     chan struct{}
	ResourceUpdated  chan string
	ResourcesChanged chan struct{}
	PromptsChanged   chan struct{}
}

// NewClient is a client that answers sampling, elicitation and roots
// requests and reports notifications to ev.
func NewClient(ev *Events) *mcp.Client {
	c := mcp.NewClient(&mcp.Implementation{Name: "relay-test", Version: "0.1"}, &mcp.ClientOptions{
		CreateMessageHandler: func(_ context.Context, req *mcp.CreateMessageRequest) (*mcp.CreateMessageResult, error) {
			return &mcp.CreateMessageResult{Model: "test-model", Role: "assistant", Content: &mcp.TextContent{Text: "sampled by the client"}}, nil
		},
		ElicitationHandler: func(context.Context, *mcp.ElicitRequest) (*mcp.ElicitResult, error) {
			return &mcp.ElicitResult{Action: "accept", Content: map[string]any{"name": "Ada"}}, nil
		},
		LoggingMessageHandler:       func(_ context.Context, r *mcp.LoggingMessageRequest) { ev.Logs <- r.Params },
		ProgressNotificationHandler: func(_ context.Context, r *mcp.ProgressNotificationClientRequest) { ev.Progress <- r.Params },
		ToolListChangedHandler:      func(context.Context, *mcp.ToolListChangedRequest) { ev.ToolsChanged <- struct{}{} },
		ResourceUpdatedHandler: func(_ context.Context, r *mcp.ResourceUpdatedNotificationRequest) {
			ev.ResourceUpdated <- r.Params.URI
		},
		ResourceListChangedHandler: func(context.Context, *mcp.ResourceListChangedRequest) { ev.ResourcesChanged <- struct{}{} },
		PromptListChangedHandler:   func(context.Context, *mcp.PromptListChangedRequest) { ev.PromptsChanged <- struct{}{} },
	})
	c.AddRoots(&mcp.Root{URI: "file:///work/root-a", Name: "a"})
	return c
}

// NewEvents returns buffered channels for NewClient.
func NewEvents() *Events {
	return &Events{
		Logs: make(chan *mcp.LoggingMessageParams, 16), Progress: make(chan *mcp.ProgressNotificationParams, 16),
		ToolsChanged: make(chan struct{}, 16), ResourceUpdated: make(chan string, 16), ResourcesChanged: make(chan struct{}, 16),
		PromptsChanged: make(chan struct{}, 16),
	}
}
