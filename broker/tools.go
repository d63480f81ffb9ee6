package broker

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/airlock-mcp/airlock/policy"
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
	Raw json.RawMessage `json:"raw,omitempty"`
	// Suspicious says why the definition cannot be read one way only: it
	// has members whose names are known ones in another case
	// ("Annotations" beside or instead of "annotations"). Every call to
	// such a tool is held, and approvers see Raw. Empty for a sound one.
	Suspicious string `json:"suspicious,omitempty"`
	// Fingerprint is policy.Fingerprint(Raw): what the tool is, for the
	// rug-pull defence and for binding approvals and grants to it.
	Fingerprint string    `json:"-"`
	ListedAt    time.Time `json:"-"`
}

// toolCache holds a session's tool definitions as last listed, whoever
// listed them: the client (its tools/list answers pass through here) or
// Airlock itself when a call names a tool it has not seen.
type toolCache struct {
	mu   sync.Mutex
	defs map[string]*ToolDefinition
	// byRaw holds the same definitions by their exact bytes: a client
	// lists tools again and again, and a definition already fingerprinted
	// need not be again. The last page is kept whole for the same reason:
	// most lists are one page, the same as last time.
	byRaw    map[string]*ToolDefinition
	lastPage json.RawMessage
	lastDefs []*ToolDefinition
	lastNext string
	stale    bool // the upstream said its tools changed since they were listed
}

// record takes in one page of a tools/list result and returns the tools it
// held and the cursor of the next page.
func (tc *toolCache) record(result json.RawMessage, now time.Time) (defs []*ToolDefinition, next string) {
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
		tc.defs = make(map[string]*ToolDefinition, len(defs))
		tc.byRaw = make(map[string]*ToolDefinition, len(defs))
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
func (tc *toolCache) parse(result json.RawMessage, now time.Time) (defs []*ToolDefinition, next string) {
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
		d, err := ParseDefinition(raw)
		if err != nil {
			continue // a definition the policy could not see exactly
		}
		d.ListedAt = now
		defs = append(defs, d)
	}
	return defs, next
}

// toolMembers are the members of a tool definition Airlock reads or
// fingerprints.
var toolMembers = append([]string{"execution"}, policy.FingerprintFields...)

// ParseDefinition reads one tool object of a tools/list result with exact
// member names. Its fields, its Raw bytes and its Fingerprint all come from
// this one strict read. A definition with members that are known ones in
// another case is returned marked Suspicious, with the known members read
// by their exact names, and the fingerprint covering both.
func ParseDefinition(raw json.RawMessage) (*ToolDefinition, error) {
	o, err := policy.ParseObject(raw)
	if err != nil {
		return nil, err
	}
	d := &ToolDefinition{Raw: raw}
	var ok bool
	if d.Name, ok, err = o.String("name"); err != nil || !ok || d.Name == "" {
		return nil, fmt.Errorf("tool definition without a name: %v", err)
	}
	if d.Title, _, err = o.String("title"); err != nil {
		return nil, err
	}
	if d.Description, _, err = o.String("description"); err != nil {
		return nil, err
	}
	d.Annotations, _ = o.Get("annotations")
	d.InputSchema, _ = o.Get("inputSchema")
	d.OutputSchema, _ = o.Get("outputSchema")
	if d.Fingerprint, err = policy.FingerprintObject(o); err != nil {
		return nil, err
	}
	if vs := o.Variants(toolMembers...); len(vs) > 0 {
		var parts []string
		for _, v := range vs {
			parts = append(parts, fmt.Sprintf("%q for %q", v.Name, v.Of))
		}
		d.Suspicious = "the server lists this tool with members whose names differ from known ones only in case (" +
			strings.Join(parts, ", ") + "): clients and servers may read either, so Airlock cannot tell what the tool is"
	}
	return d, nil
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

// recordTools takes in a tools/list page that passed through, and notes
// the first sighting of each tool in the background.
func (s *Session) recordTools(result json.RawMessage) {
	defs, _ := s.tools.record(result, s.b.now())
	if len(defs) == 0 {
		return
	}
	s.b.tools.saw(s.up.Name, defs)
	s.b.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, d := range defs {
			if _, err := s.b.tools.firstSeen(ctx, s.b, s.up.Name, d); err != nil {
				s.log.Warn("recording a tool's first sighting failed", "tool", d.Name, "err", err)
			}
		}
	})
}

// toolDefinition returns the named tool's current definition, listing the
// upstream's tools first when the session has not seen it or the upstream
// said its tools changed. It returns nil if the upstream does not list the
// tool.
func (s *Session) toolDefinition(ctx context.Context, name string) (*ToolDefinition, error) {
	if def, fresh := s.tools.lookup(name); def != nil && fresh {
		return def, nil
	}
	return s.freshDefinition(ctx, name)
}

// freshDefinition lists the upstream's tools now and returns the named
// one's definition, or nil if it is not listed.
func (s *Session) freshDefinition(ctx context.Context, name string) (*ToolDefinition, error) {
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
		var defs []*ToolDefinition
		defs, cursor = s.tools.record(res, s.b.now())
		s.b.tools.saw(s.up.Name, defs)
		if cursor == "" {
			return nil
		}
	}
	return fmt.Errorf("listing tools of %s: too many pages", s.up.Name)
}

// toolRegistry remembers, for each server's tools, the definition first
// seen, backed by the store so that it survives restarts. A tool whose
// fingerprint differs from its first one has changed: the rug-pull defence.
// It also keeps each tool's latest fingerprint, which a grant made without
// an approval is bound to.
type toolRegistry struct {
	mu     sync.Mutex
	first  map[[2]string]*ToolRecord
	newest map[[2]string]string
}

// saw notes the definitions a server just listed.
func (r *toolRegistry) saw(server string, defs []*ToolDefinition) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.newest == nil {
		r.newest = make(map[[2]string]string)
	}
	for _, d := range defs {
		r.newest[[2]string{server, d.Name}] = d.Fingerprint
	}
}

// latest returns the fingerprint the tool was last listed with, or "".
func (r *toolRegistry) latest(server, tool string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.newest[[2]string{server, tool}]
}

func (r *toolRegistry) firstSeen(ctx context.Context, b *Broker, server string, d *ToolDefinition) (*ToolRecord, error) {
	key := [2]string{server, d.Name}
	r.mu.Lock()
	rec := r.first[key]
	r.mu.Unlock()
	if rec != nil {
		return rec, nil
	}
	rec, err := b.store.SeenTool(ctx, &ToolRecord{
		Server: server, Tool: d.Name, Fingerprint: d.Fingerprint, FirstSeen: d.ListedAt, Definition: d.Raw,
	})
	if err != nil {
		return nil, err
	}
	// The stored fingerprint was taken by the rules of the release that
	// first saw the tool. Taken again from the stored definition, by
	// today's rules, it changes only when the tool did: a release that
	// fingerprints more of a definition does not mark every tool changed.
	if fp, err := policy.Fingerprint(rec.Definition); err == nil && fp != rec.Fingerprint {
		cp := *rec
		cp.Fingerprint = fp
		rec = &cp
	}
	r.mu.Lock()
	if r.first == nil {
		r.first = make(map[[2]string]*ToolRecord)
	}
	r.first[key] = rec
	r.mu.Unlock()
	return rec, nil
}
