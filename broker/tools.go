package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// ToolDefinition is a tool as the upstream last listed it.
type ToolDefinition struct {
	Name         string          `json:"name"`
	Title        string          `json:"title,omitempty"`
	Description  string          `json:"description,omitempty"`
	Annotations  json.RawMessage `json:"annotations,omitempty"`
	InputSchema  json.RawMessage `json:"inputSchema,omitempty"`
	OutputSchema json.RawMessage `json:"outputSchema,omitempty"`
	// Raw is the whole tool object as listed.
	Raw      json.RawMessage `json:"-"`
	ListedAt time.Time       `json:"-"`
}

// toolCache holds a session's tool definitions as last listed, whoever
// listed them: the client (its tools/list answers pass through here) or
// Airlock itself when a call names a tool it has not seen.
type toolCache struct {
	mu    sync.Mutex
	defs  map[string]*ToolDefinition
	stale bool // the upstream said its tools changed since they were listed
}

// record takes in one page of a tools/list result.
func (tc *toolCache) record(result json.RawMessage, now time.Time) (next string) {
	var page struct {
		Tools      []json.RawMessage `json:"tools"`
		NextCursor string            `json:"nextCursor"`
	}
	if json.Unmarshal(result, &page) != nil {
		return ""
	}
	tc.mu.Lock()
	defer tc.mu.Unlock()
	if tc.defs == nil {
		tc.defs = make(map[string]*ToolDefinition, len(page.Tools))
	}
	for _, raw := range page.Tools {
		var d ToolDefinition
		if json.Unmarshal(raw, &d) != nil || d.Name == "" {
			continue
		}
		d.Raw = raw
		d.ListedAt = now
		tc.defs[d.Name] = &d
	}
	return page.NextCursor
}

func (tc *toolCache) lookup(name string) (def *ToolDefinition, fresh bool) {
	tc.mu.Lock()
	defer tc.mu.Unlock()
	return tc.defs[name], !tc.stale
}

func (tc *toolCache) invalidate() {
	tc.mu.Lock()
	tc.stale = true
	tc.mu.Unlock()
}

// toolDefinition returns the named tool's current definition, listing the
// upstream's tools first when the session has not seen it or the upstream
// said its tools changed. It returns nil if the upstream does not list the
// tool.
func (s *Session) toolDefinition(ctx context.Context, name string) (*ToolDefinition, error) {
	if def, fresh := s.tools.lookup(name); def != nil && fresh {
		return def, nil
	}
	if err := s.listTools(ctx); err != nil {
		return nil, err
	}
	def, _ := s.tools.lookup(name)
	return def, nil
}

// listTools reads every page of the upstream's tool list into the cache.
func (s *Session) listTools(ctx context.Context) error {
	s.tools.mu.Lock()
	s.tools.defs = nil // tools that vanished must not linger
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
		if cursor = s.tools.record(res, s.b.now()); cursor == "" {
			return nil
		}
	}
	return fmt.Errorf("listing tools of %s: too many pages", s.up.Name)
}
