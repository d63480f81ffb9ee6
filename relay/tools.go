package relay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// toolCache holds a session's tool definitions as last listed, whoever
// listed them: the client (its tools/list answers pass through here) or
// Airlock itself when a call names a tool it has not seen.
type toolCache struct {
	mu   sync.Mutex
	defs map[string]*broker.ToolDefinition
	// byRaw holds the same definitions by their exact bytes: a client
	// lists tools again and again, and a definition already fingerprinted
	// need not be again. The last page is kept whole for the same reason:
	// most lists are one page, the same as last time.
	byRaw    map[string]*broker.ToolDefinition
	lastPage json.RawMessage
	lastDefs []*broker.ToolDefinition
	lastNext string
	stale    bool // the upstream said its tools changed since they were listed
}

// record takes in one page of a tools/list result and returns the tools it
// held and the cursor of the next page.
func (tc *toolCache) record(result json.RawMessage, now time.Time) (defs []*broker.ToolDefinition, next string) {
	tc.mu.Lock()
	same := bytes.Equal(result, tc.lastPage)
	defs, next = tc.lastDefs, tc.lastNext
	tc.mu.Unlock()
	if !same {
		defs, next = tc.parse(result, now)
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.defs == nil {
		tc.defs = make(map[string]*broker.ToolDefinition, len(defs))
		tc.byRaw = make(map[string]*broker.ToolDefinition, len(defs))
	}
	for _, d := range defs {
		if old := tc.defs[d.Name]; old != nil && old != d {
			delete(tc.byRaw, string(old.Raw))
		}
		tc.defs[d.Name] = d
		tc.byRaw[string(d.Raw)] = d
	}
	tc.lastPage, tc.lastDefs, tc.lastNext = result, defs, next
	return defs, next
}

// parse reads a page's definitions, fingerprinting those not known yet.
// A page that is not one strict JSON object yields no definitions, and a
// definition without a readable name is left out: a call to it is then
// decided without a definition, which no policy reads as safe.
func (tc *toolCache) parse(result json.RawMessage, now time.Time) (defs []*broker.ToolDefinition, next string) {
	page, err := policy.ReadObject(result, "tools", "nextCursor")
	if err != nil {
		return nil, ""
	}
	if raw, ok := page.Get("nextCursor"); ok {
		next, _ = policy.DecodeString(raw) // not a string: no next page
	}
	toolsRaw, ok := page.Get("tools")
	if !ok {
		return nil, next
	}
	var tools []json.RawMessage
	// An array of raw values has no member names to match loosely; each
	// element is read strictly below.
	if json.Unmarshal(toolsRaw, &tools) != nil {
		return nil, next
	}
	for _, raw := range tools {
		tc.mu.Lock()
		known := tc.byRaw[string(raw)]
		tc.mu.Unlock()
		if known != nil {
			defs = append(defs, known)
			continue
		}
		d, err := broker.ParseDefinition(raw)
		if err != nil {
			continue // a definition the policy could not see exactly
		}
		d.ListedAt = now
		defs = append(defs, d)
	}
	return defs, next
}

func (tc *toolCache) lookup(name string) (def *broker.ToolDefinition, fresh bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.defs[name], !tc.stale
}

func (tc *toolCache) invalidate() {
	tc.mu.Lock()
	tc.stale = true
	tc.mu.Unlock()
}

// recordTools takes in a tools/list page that passed through, and tells
// the gate what it listed.
func (s *Session) recordTools(result json.RawMessage) {
	defs, _ := s.tools.record(result, time.Now())
	s.r.gate.Listed(s.up.Name, defs)
}

// toolDefinition returns the named tool's current definition, listing the
// upstream's tools first when the session has not seen it or the upstream
// said its tools changed. It returns nil if the upstream does not list the
// tool.
func (s *Session) toolDefinition(ctx context.Context, name string) (*broker.ToolDefinition, error) {
	if def, fresh := s.tools.lookup(name); def != nil && fresh {
		return def, nil
	}
	return s.freshDefinition(ctx, name)
}

// freshDefinition lists the upstream's tools now and returns the named
// one's definition, or nil if it is not listed.
func (s *Session) freshDefinition(ctx context.Context, name string) (*broker.ToolDefinition, error) {
	if err := s.listTools(ctx); err != nil {
		return nil, err
	}
	def, _ := s.tools.lookup(name)
	return def, nil
}

// listTools reads every page of the upstream's tool list into the cache.
func (s *Session) listTools(ctx context.Context) error {
	s.tools.mu.Lock()
	s.tools.defs, s.tools.byRaw = nil, nil // tools that vanished must not linger
	s.tools.stale = false
	s.tools.mu.Unlock()
	cursor := ""
	for range 1000 { // a bound on pages, against a server that loops
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		res, err := s.request(ctx, "tools/list", params)
		if err != nil {
			return fmt.Errorf("listing tools of %s: %w", s.up.Name, err)
		}
		var defs []*broker.ToolDefinition
		defs, cursor = s.tools.record(res, time.Now())
		s.r.gate.Listed(s.up.Name, defs)
		if cursor == "" {
			return nil
		}
	}
	return fmt.Errorf("listing tools of %s: too many pages", s.up.Name)
}
