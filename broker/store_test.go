package broker

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
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

// A record sealed before who-asked had groups, a client id and a person
// still verifies: the fields are omitted when empty, so its encoding, and
// the hash over it, are what they were. A record with them round-trips.
func TestIdentityFieldsKeepOldHashes(t *testing.T) {
	// The encoding of an approval.approved record as versions before these
	// fields wrote it, hashed as they hashed it.
	old := `{"seq":1,"time":"2026-11-21T03:04:05Z","event":"approval.approved","server":"fs","tool":"write_file",` +
		`"principal":"tom","principal_source":"os","client":"claude-code/2.1","approval_id":"a1","actor":"ana",` +
		`"approvers":["ana"],"prev_hash":"","hash":""}`
	sum := sha256.Sum256([]byte(old))
	sealed := strings.Replace(old, `"hash":""`, `"hash":"`+hex.EncodeToString(sum[:])+`"`, 1)
	var r AuditRecord
	if err := json.Unmarshal([]byte(sealed), &r); err != nil {
		t.Fatal(err)
	}
	var v Verifier
	if !v.Check(&r) {
		t.Fatalf("a record sealed before the identity fields: %+v", v.Result())
	}

	n := AuditRecord{Time: time.Unix(0, 0), Event: EventHeld, Principal: "ci-bot", PrincipalSource: "oauth",
		PrincipalGroups: []string{"ci"}, ClientID: "claude-code", Person: "alice"}
	data, _ := n.SealJSON(1, "")
	var back AuditRecord
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	if v := (Verifier{}); !v.Check(&back) || back.ClientID != "claude-code" || back.Person != "alice" || len(back.PrincipalGroups) != 1 {
		t.Fatalf("%s: %+v", data, back)
	}
}
