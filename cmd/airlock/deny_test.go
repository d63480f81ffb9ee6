package main

import (
	"context"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// airlock deny needs --reason, says so before asking any broker, and its
// help says so; with a reason the agent reads, the call is denied.
func TestDenyNeedsAReason(t *testing.T) {
	store := brokertest.NewMemStore()
	b, dir := voteBroker(t, store)
	id := pendingIn(t, store, nil)
	const want = `deny needs --reason "TEXT"`
	for name, args := range map[string][]string{
		"no --reason":      {"deny", id, "--state-dir", dir},
		"a blank --reason": {"deny", id, "--reason", " \t", "--state-dir", dir},
		"no broker to ask": {"deny", id, "--state-dir", t.TempDir()},
	} {
		t.Run(name, func(t *testing.T) {
			out, _, err := run(t, "", args...)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("airlock %s: %q %v, want an error saying %q", strings.Join(args, " "), out, err, want)
			}
		})
	}
	if a, err := b.Approval(context.Background(), id); err != nil || a.Status != broker.StatusPending {
		t.Fatalf("after the refused denials: %v %+v", err, a)
	}
	help, _, err := run(t, "", "deny", "--help")
	if err != nil || !strings.Contains(help, "deny ID --reason TEXT") || !strings.Contains(help, "required") {
		t.Errorf("deny --help:\n%s", help)
	}
	if out, _, err := run(t, "", "deny", id, "--reason", "not on production", "--state-dir", dir); err != nil || !strings.Contains(out, "Denied "+id) {
		t.Fatalf("deny with a reason: %q %v", out, err)
	}
	if a, err := b.Approval(context.Background(), id); err != nil || a.Status != broker.StatusDenied || a.Note != "not on production" {
		t.Errorf("denied: %v %+v", err, a)
	}
}
