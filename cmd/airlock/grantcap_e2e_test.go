package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// approve --grant --ttl past the policy's max_ttl says until when the
// grant lasts, that it was capped and why; --ttl takes days.
func TestApproveSaysGrantWasCapped(t *testing.T) {
	policyDir := t.TempDir()
	os.WriteFile(filepath.Join(policyDir, "airlock.rego"), []byte(`package airlock

decision := {"action": "allow", "reason": "granted", "grant": min({g.id | some g in input.grants})} if {
	count(input.grants) > 0
} else := {
	"action": "hold", "reason": "writes need a person",
	"grantable": {"scopes": ["tool"], "max_ttl": "24h"},
}
`), 0o600)
	base, stderr := startServe(t, fmt.Sprintf("policy: {dir: %s}\nhold_wait: 30s\nservers:\n  t:\n    command: env\n    args: [\"AIRLOCK_TEST_ROLE=server\", \"AIRLOCK_TEST_SERVER=echo\", %q]\n", policyDir, os.Args[0]))
	cs := httpSession(t, base+"/mcp/t")
	for i, tc := range []struct{ ttl, want string }{
		{"48h", " (1 day, not the 2 days asked for: the policy's max_ttl for this call) "},
		{"90d", " (1 day, not the 90 days asked for: the policy's max_ttl for this call) "},
		{"2h", " (airlock grants revoke "},
	} {
		done := make(chan error, 1)
		go func() {
			_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"n": i}})
			done <- err
		}()
		p := pending(t, 1)[0]
		out, err := cli(t, "approve", p.ID, "--grant", "tool", "--ttl", tc.ttl)
		if err != nil {
			t.Fatalf("approve --ttl %s: %v\n%s", tc.ttl, err, stderr)
		}
		if !regexp.MustCompile(`Grant \S+ allows such calls until \d{4}-\d\d-\d\dT\d\d:\d\d:\d\d`).MatchString(out) || !strings.Contains(out, tc.want) {
			t.Errorf("approve --ttl %s says:\n%s\nwant the expiry and %q", tc.ttl, out, tc.want)
		}
		if tc.ttl == "2h" && strings.Contains(out, "asked for") {
			t.Errorf("an uncapped grant is said to be capped:\n%s", out)
		}
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		// Revoke it, so that the next call is held again.
		id := regexp.MustCompile(`Grant (\S+) `).FindStringSubmatch(out)[1]
		if _, err := cli(t, "grants", "revoke", id); err != nil {
			t.Fatal(err)
		}
	}
}
