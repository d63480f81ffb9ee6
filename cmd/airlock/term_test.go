package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// hostile is what an agent or a server may put in a tool's name, an
// argument or a reason: a colour change, a cursor move that rewrites the
// line above, a C1 CSI, an OSC 8 hyperlink, a bidi override, a forged row.
const hostile = "evil\x1b[31m\x1b[1A\u009b2J\x1b]8;;http://x\x07\u202eexe.txt\t\nforged"

func TestTermSafeEscapesWhatATerminalActsOn(t *testing.T) {
	got := termSafe(hostile + "\xff")
	want := `evil\x1b[31m\x1b[1A\u009b2J\x1b]8;;http://x\x07\u202eexe.txt\x09\x0aforged\xff`
	if got != want {
		t.Errorf("termSafe = %s\nwant       %s", got, want)
	}
	if got := termText("line one\n\tline two\x1b[2K"); got != "line one\n\tline two\\x1b[2K" {
		t.Errorf("termText = %q", got)
	}
	if got := termSafe("plain text, ünïcode and emoji 🙂"); got != "plain text, ünïcode and emoji 🙂" {
		t.Errorf("termSafe changed clean text: %q", got)
	}
	js := jsonSafe([]byte(`{"tool":"a` + "\u009b\u202e\U000e0041" + `"}`))
	if string(js) != `{"tool":"a\u009b\u202e\udb40\udc41"}` {
		t.Errorf("jsonSafe = %s", js)
	}
	var back struct{ Tool string }
	if err := json.Unmarshal(js, &back); err != nil || back.Tool != "a\u009b\u202e\U000e0041" {
		t.Errorf("jsonSafe's output reads back as %q, %v", back.Tool, err)
	}
}

// fakeBroker serves the API the admin commands read, with hostile strings
// in every field an agent or a server controls, and returns the state
// directory that points at it.
func fakeBroker(t *testing.T) string {
	t.Helper()
	now := time.Now()
	a := &broker.Approval{ID: "01TEST", Status: broker.StatusPending, Server: "srv" + hostile, Tool: "tool" + hostile,
		Arguments: json.RawMessage(`{"path":"` + "\u202e" + `"}`), Principal: broker.Principal{ID: "who" + hostile},
		RequestedAt: now, ExpiresAt: now.Add(time.Hour)}
	a.Decision.Reason, a.Decision.Risk = "why"+hostile, "high"
	decided := *a
	decided.Status = broker.StatusApproved
	rec := &broker.AuditRecord{Seq: 7, Time: now, Event: broker.EventHeld, Server: a.Server, Tool: a.Tool, Principal: a.Principal.ID, Reason: a.Decision.Reason}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/approvals", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"approvals": []*broker.Approval{a}})
	})
	mux.HandleFunc("POST /api/v1/approvals/{id}/decision", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(&decided)
	})
	mux.HandleFunc("GET /api/v1/audit", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{"records": []*broker.AuditRecord{rec}})
	})
	mux.HandleFunc("GET /api/v1/grants", func(w http.ResponseWriter, r *http.Request) {
		g := &broker.Grant{ID: "01GRANT", Server: a.Server, Tool: a.Tool, Scope: broker.ScopeTool, Principal: a.Principal.ID, CreatedBy: "x" + hostile, Status: broker.GrantActive, ExpiresAt: now.Add(time.Hour)}
		json.NewEncoder(w).Encode(map[string]any{"grants": []*broker.Grant{g}})
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := writeAPIInfo(dir, apiInfo{URL: srv.URL, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tokenFile), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// Tool names and every other agent- or server-controlled string reached
// the terminal raw through pending, audit, approve and grants.
func TestAdminCommandsEscapeControlCharacters(t *testing.T) {
	dir := fakeBroker(t)
	for _, args := range [][]string{
		{"pending"}, {"pending", "--json"},
		{"audit"}, {"audit", "--json"},
		{"approve", "01TEST"}, {"approve", "01TEST", "--json"},
		{"grants"}, {"grants", "--json"},
	} {
		out, stderr, err := run(t, "", append(args, "--state-dir", dir)...)
		if err != nil {
			t.Fatalf("airlock %s: %v\n%s", strings.Join(args, " "), err, stderr)
		}
		if i := strings.IndexFunc(out, func(r rune) bool { return hiddenRune(r) && r != '\n' && r != '\t' }); i >= 0 {
			t.Errorf("airlock %s printed a raw %U:\n%q", strings.Join(args, " "), []rune(out[i:])[0], out)
		}
		if args[len(args)-1] != "--json" && strings.Contains(out, "\nforged") {
			t.Errorf("airlock %s let a newline in a field forge a line:\n%s", strings.Join(args, " "), out)
		}
		if !strings.Contains(out, `\x1b[31m`) && !strings.Contains(out, `\u001b[31m`) {
			t.Errorf("airlock %s does not show the escape sequence escaped:\n%s", strings.Join(args, " "), out)
		}
	}
}
