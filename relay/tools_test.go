package relay

import (
	"encoding/json"
	"testing"
	"time"
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
