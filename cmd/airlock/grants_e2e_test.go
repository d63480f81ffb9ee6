package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// "Always allow" through real processes: a held write_file approved with
// an arguments grant keyed on path; the same path passes without a hold,
// another path is held, and after revocation the first is held again.
func TestGrantFilesystemThroughCLI(t *testing.T) {
	root := t.TempDir()
	policyDir := t.TempDir()
	os.WriteFile(filepath.Join(policyDir, "airlock.rego"), []byte(`package airlock

decision := {"action": "allow", "reason": "reads pass"} if {
	input.tool.annotations.readOnlyHint
} else := {"action": "allow", "reason": "granted", "grant": min({g.id | some g in input.grants})} if {
	count(input.grants) > 0
} else := {
	"action": "hold", "reason": "writes need a person",
	"grantable": {"scopes": ["exact", "arguments", "tool"], "max_ttl": "1h", "key_arguments": ["path"]},
}
`), 0o600)
	fs := brokertest.NPMCommand(t, "mcp-server-filesystem")
	base, stderr := startServe(t, fmt.Sprintf("policy: {dir: %s}\nhold_wait: 30s\nservers:\n  fs:\n    command: %s\n    args: [%q, %q]\n", policyDir, fs[0], fs[1], root))
	cs := httpSession(t, base+"/mcp/fs")

	// write returns the call's outcome, or "held" (and denies the hold so
	// that the test goes on) when it waits for a person.
	write := func(name, content string) string {
		t.Helper()
		done := make(chan *mcp.CallToolResult, 1)
		go func() {
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write_file",
				Arguments: map[string]any{"path": filepath.Join(root, name), "content": content}})
			if err != nil {
				res = &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}
			}
			done <- res
		}()
		select {
		case res := <-done:
			return resultString(res)
		case <-time.After(3 * time.Second):
		}
		p := pending(t, 1)[0]
		if _, err := cli(t, "deny", p.ID, "--reason", "not in this test"); err != nil {
			t.Fatal(err)
		}
		<-done
		return "held"
	}

	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		res, _ := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write_file",
			Arguments: map[string]any{"path": filepath.Join(root, "a.txt"), "content": "one"}})
		done <- res
	}()
	p := pending(t, 1)[0]
	out, err := cli(t, "approve", p.ID, "--grant", "arguments", "--ttl", "1h")
	if err != nil || !strings.Contains(out, "Grant ") {
		t.Fatalf("approve --grant: %q %v", out, err)
	}
	if res := <-done; res == nil || res.IsError {
		t.Fatalf("the approved call: %+v\n%s", res, stderr)
	}
	if got := write("a.txt", "two"); got == "held" {
		t.Fatal("the same path was held despite the grant")
	}
	if data, _ := os.ReadFile(filepath.Join(root, "a.txt")); string(data) != "two" {
		t.Fatalf("a.txt = %q", data)
	}
	if got := write("b.txt", "x"); got != "held" {
		t.Fatalf("another path passed: %q", got)
	}

	out, err = cli(t, "grants", "--json")
	if err != nil || !strings.Contains(out, `"scope": "arguments"`) || !strings.Contains(out, `"uses": 1`) {
		t.Fatalf("grants --json: %v\n%s", err, out)
	}
	id := out[strings.Index(out, `"id": "`)+7:]
	id = id[:strings.Index(id, `"`)]
	if out, err := cli(t, "grants", "revoke", id); err != nil || !strings.Contains(out, "Revoked") {
		t.Fatalf("revoke: %q %v", out, err)
	}
	if got := write("a.txt", "three"); got != "held" {
		t.Fatalf("after revocation the path passed: %q", got)
	}
	out, err = cli(t, "audit", "--json", "-n", "100")
	if err != nil || !strings.Contains(out, "allowed by grant "+id+" (made by admin on approval "+p.ID+")") ||
		!strings.Contains(out, `"grant.revoked"`) {
		t.Errorf("audit lacks the grant's story: %v\n%s", err, out)
	}
}
