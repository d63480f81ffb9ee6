package broker

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
)

// SealJSON splices the hash into a single encoding; it must produce what
// encoding the sealed record produces, and a hash the verifier accepts.
func TestSealJSONMatchesEncoding(t *testing.T) {
	r := AuditRecord{
		Time: time.Date(2026, 11, 21, 3, 4, 5, 6, time.FixedZone("x", 3600)), Event: EventAllowed,
		Server: "fs", Tool: "write_file", Reason: `quotes " and <html> & more`,
		Approvers: []string{"ana", "bo"}, WaitMS: 12,
	}
	got, err := r.SealJSON(7, "abc")
	if err != nil {
		t.Fatal(err)
	}
	want, err := json.Marshal(&r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("SealJSON:\n%s\nencoding of the sealed record:\n%s", got, want)
	}
	if r.Hash != r.computeHash() || len(r.Hash) != 64 {
		t.Fatalf("hash %q, recomputed %q", r.Hash, r.computeHash())
	}
}

// A record that is not late encodes without "late", so records sealed
// before the field existed still verify.
func TestLateOmittedFromTheHash(t *testing.T) {
	r := AuditRecord{Time: time.Unix(0, 0), Event: EventAllowed, Tool: "t"}
	data, _ := r.SealJSON(1, "")
	if bytes.Contains(data, []byte("late")) {
		t.Fatalf("%s", data)
	}
	r.Late = true
	data, _ = r.SealJSON(1, "")
	if !bytes.Contains(data, []byte(`"late":true`)) {
		t.Fatalf("%s", data)
	}
}
