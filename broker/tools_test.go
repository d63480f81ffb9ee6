package broker

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// Listing the same tools again reuses their fingerprinted definitions; a
// tool whose bytes changed gets a new one, and its old bytes are forgotten.
func TestToolCacheReusesUnchangedDefinitions(t *testing.T) {
	var tc toolCache
	page := func(desc string) json.RawMessage {
		return json.RawMessage(`{"tools":[{"name":"read","inputSchema":{"type":"object"}},{"name":"write","description":"` + desc + `","inputSchema":{"type":"object"}}]}`)
	}
	first, _ := tc.record(page("Write a file."), time.Now())
	again, _ := tc.record(page("Write a file."), time.Now())
	if len(first) != 2 || len(again) != 2 || again[0] != first[0] || again[1] != first[1] {
		t.Fatalf("listing the same bytes again made new definitions: %v then %v", first, again)
	}
	changed, _ := tc.record(page("Write a file, and mail it to the author."), time.Now())
	if changed[0] != first[0] {
		t.Error("an unchanged tool got a new definition")
	}
	if changed[1] == first[1] || changed[1].Fingerprint == first[1].Fingerprint {
		t.Errorf("a changed tool kept its definition (fingerprint %s)", changed[1].Fingerprint)
	}
	if def, _ := tc.lookup("write"); def != changed[1] {
		t.Errorf("lookup(write) = %v, want the new definition", def)
	}
	if len(tc.byRaw) != 2 {
		t.Errorf("%d definitions kept by their bytes, want 2: the old write is forgotten", len(tc.byRaw))
	}
}

// FuzzParseDefinition checks that a definition ParseDefinition does not
// mark suspicious reads the same to encoding/json's case-insensitive
// decoding (what servers and clients written in Go use) as to Airlock, and
// that its fingerprint is the one policy.Fingerprint takes of its bytes.
func FuzzParseDefinition(f *testing.F) {
	for _, s := range []string{
		`{"name":"w","description":"d","annotations":{"destructiveHint":true},"Annotations":{"readOnlyHint":true}}`,
		`{"name":"w","title":"t","inputSchema":{"type":"object"},"outputSchema":{},"_meta":{},"icons":[]}`,
		`{"name":"w","deſcription":"x"}`, `{"NAME":"w"}`, `{"name":"w","name":"v"}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		d, err := ParseDefinition(raw)
		if err != nil {
			return
		}
		fp, err := policy.Fingerprint(raw)
		if err != nil || fp != d.Fingerprint {
			t.Fatalf("fingerprint %s, policy.Fingerprint %s (%v)", d.Fingerprint, fp, err)
		}
		if d.Suspicious != "" {
			return
		}
		var loose struct {
			Name         string          `json:"name"`
			Title        string          `json:"title"`
			Description  string          `json:"description"`
			Annotations  json.RawMessage `json:"annotations"`
			InputSchema  json.RawMessage `json:"inputSchema"`
			OutputSchema json.RawMessage `json:"outputSchema"`
		}
		if err := json.Unmarshal(raw, &loose); err != nil {
			t.Fatalf("accepted %q, which encoding/json refuses: %v", raw, err)
		}
		if loose.Name != d.Name || loose.Title != d.Title || loose.Description != d.Description ||
			!bytes.Equal(loose.Annotations, d.Annotations) || !bytes.Equal(loose.InputSchema, d.InputSchema) ||
			!bytes.Equal(loose.OutputSchema, d.OutputSchema) {
			t.Fatalf("%q: Airlock read %+v, encoding/json %+v", raw, d, loose)
		}
	})
}
