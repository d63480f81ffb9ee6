package broker

import (
	"context"
	"encoding/json"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// Call is one tools/call at the gate.
type Call struct {
	Server    string
	Transport string
	Tool      string
	// Arguments are exactly the bytes that will be forwarded.
	Arguments json.RawMessage
	// Definition is the tool as the upstream last listed it; nil when the
	// upstream does not list it.
	Definition *ToolDefinition
	Client     ClientInfo
	Session    string
	Principal  Principal
	Received   time.Time
}

// verdict is what the gate decided for a call: forward it, or answer the
// client with result instead.
type verdict struct {
	forward bool
	result  *mcp.CallToolResult
}

// toolsCall takes a tools/call through the gate.
func (s *Session) toolsCall(ctx context.Context, c *call, m *jsonrpc.Request) {
	defer c.cancel()
	var p struct {
		Name      string          `json:"name"`
		Arguments json.RawMessage `json:"arguments"`
	}
	if err := json.Unmarshal(m.Params, &p); err != nil || p.Name == "" {
		s.answerError(c, jsonrpc.CodeInvalidParams, "tools/call needs params with a tool name")
		return
	}
	def, err := s.toolDefinition(ctx, p.Name)
	if err != nil {
		s.log.Warn("tool definition unavailable", "tool", p.Name, "err", err)
		s.answerResult(c, toolError("Airlock could not read the definition of tool "+p.Name+" from "+s.up.Name+": "+err.Error()))
		return
	}
	call := &Call{
		Server:     s.up.Name,
		Transport:  s.up.Transport,
		Tool:       p.Name,
		Arguments:  p.Arguments,
		Definition: def,
		Client:     s.Info(),
		Session:    s.id,
		Principal:  s.principal,
		Received:   c.started,
	}
	v := s.b.gate(ctx, call)
	if !v.forward {
		s.answerResult(c, v.result)
		return
	}
	s.forward(ctx, c, m)
}

// gate decides a call. Every tools/call passes through here before it is
// forwarded.
func (b *Broker) gate(ctx context.Context, c *Call) verdict {
	return verdict{forward: true}
}

// toolError is a tool result the model reads: refusals are results with
// isError set, never JSON-RPC errors, so that the model sees why.
func toolError(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}
