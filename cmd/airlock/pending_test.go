package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// pending's ARGUMENTS column is one line, hides what the policy redacts
// (as Slack and the web UI do), and is cut to fit.
func TestArgumentsSummary(t *testing.T) {
	a := &broker.Approval{
		Arguments: json.RawMessage("{\n  \"path\": \"/srv/x\",\n  \"token\": \"s3cret\"\n}"),
		Decision:  policy.Decision{Redact: []string{"arguments.token"}},
	}
	got := argumentsSummary(a, 60)
	if strings.Contains(got, "s3cret") || !strings.Contains(got, `"path":"/srv/x"`) || strings.Contains(got, "\n") {
		t.Errorf("summary = %q, want one line without the redacted token", got)
	}
	long := &broker.Approval{Arguments: json.RawMessage(`{"content":"` + strings.Repeat("é", 100) + `"}`)}
	if got := argumentsSummary(long, 20); len([]rune(got)) != 20 || !strings.HasSuffix(got, "…") {
		t.Errorf("long summary = %q (%d characters), want 20 ending in …", got, len([]rune(got)))
	}
	if got := argumentsSummary(&broker.Approval{}, 20); got != "{}" {
		t.Errorf("no arguments = %q", got)
	}
}
