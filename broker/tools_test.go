package broker

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
)

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
