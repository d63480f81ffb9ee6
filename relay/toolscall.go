package relay

import (
	"context"
	"encoding/json"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
)

// toolsCall hands a tools/call to the gate and carries out its outcome. It
// runs on a pool goroutine: the gate may wait for the tool list, or for
// people, and the client's other messages must not wait meanwhile.
func (s *Session) toolsCall(ctx context.Context, c *inflight, m *jsonrpc.Request) {
	defer c.cancel(nil)
	if taskRequested(m.Params) {
		if err := s.tasks.reserve(); err != nil {
			s.answerError(c, jsonrpc.CodeInvalidRequest, err.Error())
			return
		}
		c.wantTask = true
		defer func() {
			if c.task == nil {
				s.tasks.unreserve() // the gate did not hold it: no live task
			}
		}()
	}
	s.r.atGate.enter()
	atGate := true
	leaveGate := func() {
		if atGate {
			atGate = false
			s.r.atGate.leave()
		}
	}
	defer leaveGate()
	call := &broker.Call{
		Server:           s.up.Name,
		Transport:        s.up.Transport,
		TrustAnnotations: s.up.TrustAnnotations,
		Params:           m.Params,
		Client:           s.Info(),
		Session:          s.ref,
		Principal:        s.principal,
		Received:         c.started,
		Progress:         c.token != "",
		Task:             c.wantTask,
	}
	o := s.r.gate.Check(ctx, call, c)
	if c.task != nil {
		// Held and answered with a task: the outcome ends the task.
		leaveGate()
		s.runTask(ctx, c, m, o)
		return
	}
	switch {
	case o.Forward:
		leaveGate() // a forwarded call waits for its upstream, not the gate
		c.audited = o.Audited
		s.forward(ctx, c, m)
	case o.Malformed != "":
		s.answerError(c, jsonrpc.CodeInvalidParams, o.Malformed)
	case o.Refusal != "" && c.wantTask:
		// Refused without a hold: a client that asked for a task still
		// reads one, failed, whose message is the refusal.
		raw, _ := json.Marshal(toolError(o.Refusal))
		if s.takeClient(c) {
			s.send(s.finishedTask(c.clientID, taskFailed, o.Refusal, raw), c.clientID)
		}
	case o.Refusal != "":
		s.answerResult(c, toolError(o.Refusal))
	}
}

// Definition makes a client's tools/call in flight the broker.Caller the
// gate asks while it decides: the tool as the session's cache has it, or as
// the upstream lists it now.
func (c *inflight) Definition(ctx context.Context, tool string, fresh bool) (*broker.ToolDefinition, error) {
	if fresh {
		return c.session.freshDefinition(ctx, tool)
	}
	return c.session.toolDefinition(ctx, tool)
}

// Waiting sends a progress notification with the client's token; the
// upstream's own progress for the call is shifted past these later.
func (c *inflight) Waiting(message string) {
	if c.task != nil {
		// Its client polls the task, and reads the message there.
		c.session.tasks.update(c.task, message, false)
		return
	}
	n := c.heartbeats.Add(1)
	params, _ := json.Marshal(map[string]any{
		"progressToken": json.RawMessage(c.token),
		"progress":      n,
		"message":       message,
	})
	c.session.send(&jsonrpc.Request{Method: "notifications/progress", Params: params}, c.clientID)
}

// toolError is a tool result the model reads: refusals are results with
// isError set, never JSON-RPC errors, so that the model sees why.
func toolError(text string) *mcp.CallToolResult {
	return &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: text}}}
}
