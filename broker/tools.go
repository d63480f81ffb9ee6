package broker

import (
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

// Listed takes in tools a session just listed for server (the client's
// tools/list passing through, or Airlock's own): each tool's latest
// fingerprint is noted at once, and its first sighting recorded in the
// background.
func (b *Broker) Listed(server string, defs []*ToolDefinition) {
	if len(defs) == 0 {
		return
	}
	b.tools.saw(server, defs)
	b.bg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		for _, d := range defs {
			if _, err := b.tools.firstSeen(ctx, b, server, d); err != nil {
				b.log.Warn("recording a tool's first sighting failed", "server", server, "tool", d.Name, "err", err)
			}
		}
	})
}
