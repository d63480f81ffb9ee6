package broker

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

var update = flag.Bool("update", false, "rewrite golden files")

// messageReasons are free texts as policies, approvers and the broker
// write them: with and without a final full stop, with other final
// punctuation, padded, and empty.
var messageReasons = []struct{ name, text string }{
	{"plain", `"write_file" on server "fs" is not read-only`},
	{"full-stop", `"write_file" on server "fs" is not read-only; it waits for a person to approve it.`},
	{"two-stops", "it waits for a person.."},
	{"colon", "the policy says:"},
	{"semicolon", "see the runbook;"},
	{"question", "are you sure?"},
	{"padded", "  spaced out.  "},
	{"empty", ""},
}

// messageTexts renders every user-visible message template that embeds free
// text, for every reason, plus the policy-error denial.
func messageTexts(t *testing.T) []struct{ name, text string } {
	now := time.Date(2026, 12, 7, 6, 6, 40, 0, time.UTC)
	var out []struct{ name, text string }
	add := func(name, text string) { out = append(out, struct{ name, text string }{name, text}) }
	le := &LimitError{Limit: "held_calls", Max: 100, What: "calls waiting for approval"}
	for _, r := range messageReasons {
		a := &Approval{
			ID: "01JAPPROVAL", Tool: "write_file", Server: "fs",
			Decision:    policy.Decision{ID: "01JDECISION", Action: policy.Hold, Reason: r.text},
			RequestedAt: now, ExpiresAt: now.Add(10 * time.Minute),
			DecidedBy: "alice", Note: r.text,
		}
		b := &Broker{now: func() time.Time { return now }}
		add("waiting/"+r.name, b.waitingText(a))
		add("pending/"+r.name, pendingText(a, now))
		for _, s := range []Status{StatusDenied, StatusWithdrawn, StatusAbandoned} {
			c := *a
			c.Status = s
			add(fmt.Sprintf("outcome-%s/%s", s, r.name), outcomeText(&c, now))
		}
		add("denied/"+r.name, deniedText("write_file", policy.Decision{ID: "01JDECISION", Action: policy.Deny, Reason: r.text}))
		add("held-refused/"+r.name, heldRefusedText("write_file", r.text, le, "01JREF"))
		def := &ToolDefinition{Suspicious: "the server lists this tool oddly"}
		add("suspicious-allow/"+r.name, holdSuspicious(def, policy.Decision{Action: policy.Allow, Reason: r.text}).Reason)
		add("suspicious-hold/"+r.name, holdSuspicious(def, policy.Decision{Action: policy.Hold, Reason: r.text}).Reason)
		g := &Grant{ID: "01JGRANT", Scope: "arguments", ExpiresAt: now.Add(10 * time.Minute), Reason: r.text, CreatedBy: "alice", ApprovalID: "01JAPPROVAL"}
		add("grant-record/"+r.name, grantRecord(EventGrantCreated, g, "alice", now).Reason)
	}
	a := &Approval{ID: "01JAPPROVAL", Tool: "write_file", Status: StatusExpired, RequestedAt: now, ExpiresAt: now.Add(10 * time.Minute)}
	add("outcome-expired", outcomeText(a, now))
	// The engine's fail-closed reason names its reference: take it from
	// a real engine whose policy decides nothing.
	d := policyError(t)
	add("denied/policy-error", strings.ReplaceAll(deniedText("write_file", d), d.ID, "01JREF"))
	add("denied/other-ref", deniedText("write_file", policy.Decision{ID: "01JREF", Action: policy.Deny, Reason: "see incident (ref 01JOTHER)."}))
	add("granted", grantedReason(&Grant{ID: "01JGRANT", CreatedBy: "alice", ApprovalID: "01JAPPROVAL"}))
	add("granted/no-approval", grantedReason(&Grant{ID: "01JGRANT", CreatedBy: "alice"}))
	return out
}

// policyError is the decision of an engine whose policy fails.
func policyError(t *testing.T) policy.Decision {
	dir := t.TempDir()
	rego := "package airlock\n\ndecision := {\"action\": \"allow\", \"reason\": \"never\"} if input.tool.name == \"never\"\n"
	if err := os.WriteFile(filepath.Join(dir, "airlock.rego"), []byte(rego), 0o600); err != nil {
		t.Fatal(err)
	}
	e, err := policy.New(t.Context(), policy.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	d := e.Decide(t.Context(), &policy.Input{Tool: policy.Tool{Name: "write_file"}, Time: time.Now()})
	if d.Action != policy.Deny || d.ID == "" || !strings.Contains(d.Reason, d.ID) {
		t.Fatalf("a failing policy decided %+v, want a deny whose reason names its id", d)
	}
	return d
}

// badPunctuation is what a template joining free text carelessly writes.
var badPunctuation = regexp.MustCompile(`\.\.|[.:;,][.:;,]|[?!][.;,]|:\s*$|:\s*[()]|\(\s*\)|\s[.,;:)]|\s\s`)

var refRE = regexp.MustCompile(`\(ref [^)]*\)`)

func TestMessageTexts(t *testing.T) {
	var sb strings.Builder
	for _, m := range messageTexts(t) {
		if loc := badPunctuation.FindStringIndex(m.text); loc != nil {
			t.Errorf("%s: broken punctuation at %q in %q", m.name, m.text[loc[0]:loc[1]], m.text)
		}
		seen := map[string]bool{}
		for _, ref := range refRE.FindAllString(m.text, -1) {
			if seen[ref] {
				t.Errorf("%s: %s twice in %q", m.name, ref, m.text)
			}
			seen[ref] = true
		}
		fmt.Fprintf(&sb, "%s\n\t%s\n", m.name, m.text)
	}
	golden := filepath.Join("testdata", "messages.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(sb.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test ./broker -run TestMessageTexts -update)", err)
	}
	if got := sb.String(); got != string(want) {
		t.Errorf("messages differ from %s (rerun with -update if the change is meant):\n%s", golden, lineDiff(string(want), got))
	}
}

func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var sb strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			fmt.Fprintf(&sb, "-%s\n+%s\n", wl, gl)
		}
	}
	return sb.String()
}
