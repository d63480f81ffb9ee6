package main

import (
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
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

// pending says who asked and how that was established, in the words of
// broker.Principal.Describe, in the table and in --json; grants list says
// whom each grant covers the same way.
func TestPendingShowsWhoAsked(t *testing.T) {
	xdg := t.TempDir()
	t.Setenv("XDG_STATE_HOME", xdg)
	t.Setenv("AIRLOCK_STATE_DIR", "")
	home := filepath.Join(xdg, "airlock")
	store := brokertest.NewMemStore()
	brokerIn(t, home, store)
	pendingIn(t, store, func(a *broker.Approval) {
		a.Principal = broker.Principal{ID: "alice@example.com", Source: "oauth", ClientID: "claude-code"}
	})
	pendingIn(t, store, func(a *broker.Approval) { a.Principal = broker.Principal{Source: "anonymous"} })
	now := time.Now()
	for _, g := range []*broker.Grant{
		{ID: "G1", Status: broker.GrantActive, Server: "fs", Tool: "write_file", Scope: broker.ScopeTool, PrincipalSource: "token", Principal: "ci-bot",
			CreatedBy: "ana", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
		{ID: "G2", Status: broker.GrantActive, Server: "fs", Tool: "write_file", Scope: broker.ScopeTool, Anyone: true,
			CreatedBy: "ana", CreatedAt: now, ExpiresAt: now.Add(time.Hour)},
	} {
		if err := store.CreateGrant(context.Background(), g, &broker.AuditRecord{Time: now, Event: broker.EventGrantCreated, GrantID: g.ID}); err != nil {
			t.Fatal(err)
		}
	}

	out, _, err := run(t, "", "pending")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alice@example.com (OAuth, client claude-code)", " anonymous "} {
		if !strings.Contains(out, want) {
			t.Errorf("pending has no %q:\n%s", want, out)
		}
	}
	out, _, err = run(t, "", "pending", "--json")
	var views []pendingView
	if err != nil || json.Unmarshal([]byte(out), &views) != nil || len(views) != 2 {
		t.Fatalf("pending --json: %s %v", out, err)
	}
	if v := views[0]; v.Requester != "alice@example.com" || v.RequesterSource != "oauth" || v.RequestedBy != "alice@example.com (OAuth, client claude-code)" {
		t.Errorf("pending --json: %+v", v)
	}
	out, _, err = run(t, "", "grants", "list")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ci-bot (token)", "anyone"} {
		if !strings.Contains(out, want) {
			t.Errorf("grants list has no %q:\n%s", want, out)
		}
	}
}
