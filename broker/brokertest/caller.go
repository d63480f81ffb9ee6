package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/airlock-mcp/airlock/broker"
)

// Caller is a broker.Caller for tests of the core: the tools its
// "upstream" lists are a map the test can change, and it keeps every
// progress message it was asked to send. No MCP is involved.
type Caller struct {
	mu      sync.Mutex
	tools   map[string]*broker.ToolDefinition
	err     error
	listed  int
	waiting []string
	notify  chan string
	// OnList, if set, hears each listing the Caller makes, as the relay
	// tells the broker (Broker.Listed): the first Definition, and every
	// fresh one.
	OnList func([]*broker.ToolDefinition)
	once   bool
}

// DefaultTools are what a Caller lists unless told otherwise: a harmless
// echo, a destructive write, and a slow tool.
var DefaultTools = []string{
	`{"name":"echo","description":"Echo text back.","inputSchema":{"type":"object","properties":{"text":{"type":"string"}}},"annotations":{"readOnlyHint":true}}`,
	`{"name":"write","description":"Write a file.","inputSchema":{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}}},"annotations":{"destructiveHint":true}}`,
	`{"name":"slow","description":"Wait.","inputSchema":{"type":"object","properties":{"ms":{"type":"integer"},"id":{"type":"string"}}}}`,
}

// NewCaller returns a Caller listing the given tool definitions (JSON
// objects as a tools/list result holds them), DefaultTools if none.
func NewCaller(defs ...string) *Caller {
	if len(defs) == 0 {
		defs = DefaultTools
	}
	c := &Caller{tools: map[string]*broker.ToolDefinition{}, notify: make(chan string, 64)}
	for _, d := range defs {
		c.SetTool(d)
	}
	return c
}

// SetTool adds or changes a tool: a server that changed a definition.
func (c *Caller) SetTool(def string) *broker.ToolDefinition {
	d, err := broker.ParseDefinition(json.RawMessage(def))
	if err != nil {
		panic(fmt.Sprintf("brokertest: bad tool definition %s: %v", def, err))
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.tools[d.Name] = d
	return d
}

// Tools returns the tools listed now, for broker.Broker.Listed.
func (c *Caller) Tools() []*broker.ToolDefinition {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*broker.ToolDefinition, 0, len(c.tools))
	for _, d := range c.tools {
		out = append(out, d)
	}
	return out
}

// Fail makes every later Definition fail with err (nil: succeed again).
func (c *Caller) Fail(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.err = err
}

// Definition implements broker.Caller.
func (c *Caller) Definition(_ context.Context, tool string, fresh bool) (*broker.ToolDefinition, error) {
	c.mu.Lock()
	if fresh {
		c.listed++
	}
	if c.err != nil {
		c.mu.Unlock()
		return nil, c.err
	}
	lists := fresh || !c.once
	c.once = true
	def := c.tools[tool]
	c.mu.Unlock()
	if lists && c.OnList != nil {
		c.OnList(c.Tools())
	}
	return def, nil
}

// Fresh counts the Definition calls that asked the upstream again.
func (c *Caller) Fresh() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.listed
}

// Waiting implements broker.Caller.
func (c *Caller) Waiting(message string) {
	c.mu.Lock()
	c.waiting = append(c.waiting, message)
	c.mu.Unlock()
	select {
	case c.notify <- message:
	default:
	}
}

// Waited returns the progress messages sent so far.
func (c *Caller) Waited() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.waiting...)
}
