package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// cli runs an admin command against the test's brokers and returns stdout.
func cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	cmd := airlockCmd(t, args...)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("airlock %s: %v: %s", strings.Join(args, " "), err, stderr)
	}
	return string(out), nil
}

// pending polls `airlock pending --json` until n calls wait.
func pending(t *testing.T, n int) []pendingView {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := cli(t, "pending", "--json")
		var list []pendingView
		if err == nil {
			if err := json.Unmarshal([]byte(out), &list); err != nil {
				t.Fatalf("pending --json: %v\n%s", err, out)
			}
			if len(list) == n {
				return list
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited for %d pending calls; last: %d, %v", n, len(list), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A write held for approval, then approved, denied or left to expire, all
// through real processes: the client, airlock serve, the filesystem server
// from npm, and the CLI.
func TestHoldFilesystemThroughCLI(t *testing.T) {
	root := t.TempDir()
	policyDir := t.TempDir()
	os.WriteFile(filepath.Join(policyDir, "airlock.rego"), []byte(`package airlock

decision := {"action": "allow", "reason": "reads pass"} if {
	input.tool.annotations.readOnlyHint
} else := {"action": "hold", "reason": "writes need a person", "risk": "high", "timeout": "3s"}
`), 0o600)
	fs := brokertest.NPMCommand(t, "mcp-server-filesystem")
	base, stderr := startServe(t, fmt.Sprintf("policy: {dir: %s}\nservers:\n  fs:\n    command: %s\n    args: [%q, %q]\n", policyDir, fs[0], fs[1], root))
	cs := httpSession(t, base+"/mcp/fs")
	os.WriteFile(filepath.Join(root, "in.txt"), []byte("readable"), 0o600)
	if got := callText(t, cs, "read_text_file", map[string]any{"path": filepath.Join(root, "in.txt")}); got != "readable" {
		t.Fatalf("read passed as %q", got)
	}

	write := func(name string) <-chan *mcp.CallToolResult {
		out := make(chan *mcp.CallToolResult, 1)
		go func() {
			res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write_file",
				Arguments: map[string]any{"path": filepath.Join(root, name), "content": "written"}})
			if err != nil {
				res = &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}
			}
			out <- res
		}()
		return out
	}
	exists := func(name string) bool { _, err := os.Stat(filepath.Join(root, name)); return err == nil }

	// Approve.
	done := write("approved.txt")
	p := pending(t, 1)[0]
	if p.Tool != "write_file" || p.Reason != "writes need a person" || !strings.Contains(string(p.Arguments), "approved.txt") {
		t.Fatalf("pending = %+v", p)
	}
	if out, err := cli(t, "approve", p.ID); err != nil || !strings.Contains(out, "released") {
		t.Fatalf("approve: %q %v", out, err)
	}
	if res := <-done; res.IsError || !exists("approved.txt") {
		t.Fatalf("after approval: %+v, file exists: %v\n%s", res, exists("approved.txt"), stderr)
	}

	// Deny, with a reason the agent reads.
	done = write("denied.txt")
	p = pending(t, 1)[0]
	if _, err := cli(t, "deny", p.ID, "--reason", "not that file"); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if !res.IsError || !strings.Contains(resultString(res), "denied by admin: not that file") || exists("denied.txt") {
		t.Fatalf("after denial: %q, file exists: %v", resultString(res), exists("denied.txt"))
	}

	// Expire.
	res = <-write("expired.txt")
	if !res.IsError || !strings.Contains(resultString(res), "nobody decided within 3s") || exists("expired.txt") {
		t.Fatalf("after expiry: %q", resultString(res))
	}

	// Deciding twice is refused, naming who decided first.
	if _, err := cli(t, "approve", p.ID); err == nil || !strings.Contains(err.Error(), "already decided by admin") {
		t.Errorf("a second decision: %v", err)
	}
	out, err := cli(t, "audit", "--json", "-n", "100")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"call.allowed"`, `"call.held"`, `"approval.approved"`, `"call.released"`, `"approval.denied"`, `"approval.expired"`} {
		if !strings.Contains(out, want) {
			t.Errorf("audit lacks %s", want)
		}
	}
	if out, err := cli(t, "audit", "verify"); err != nil || !strings.Contains(out, "verifies") {
		t.Errorf("audit verify: %q %v", out, err)
	}
}

func resultString(r *mcp.CallToolResult) string {
	var parts []string
	for _, c := range r.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// kill -9 with 50 held calls: after a restart all 50 are abandoned, the
// audit chain verifies and the database opens cleanly.
func TestKill9WithHeldCalls(t *testing.T) {
	if testing.Short() {
		t.Skip("starts and kills a broker")
	}
	stateDir := filepath.Join(testStateHome(t), "airlock")
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	addr := freePort(t)
	// 50 sessions of one server, each with a held call: past the default
	// limits, which this test is not about.
	os.WriteFile(cfg, fmt.Appendf(nil, "listen: %s\nstate_dir: %s\n"+
		"limits: {sessions_per_principal: 64, children_per_server: 64, held_calls_per_principal: 64}\nservers:\n  t:\n    command: env\n    args: [\"AIRLOCK_TEST_ROLE=server\", \"AIRLOCK_TEST_SERVER=echo\", %q]\n", addr, stateDir, os.Args[0]), 0o600)
	start := func() (*syncBuffer, func() error) {
		cmd := airlockCmd(t, "serve", "-c", cfg)
		stderr := &syncBuffer{}
		cmd.Stderr = stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		waitListening(t, addr)
		return stderr, cmd.Process.Kill
	}
	_, kill := start()
	var wg sync.WaitGroup
	for i := range 50 {
		cs := httpSession(t, "http://"+addr+"/mcp/t")
		wg.Go(func() {
			cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"n": i}})
		})
	}
	pending(t, 50)
	if err := kill(); err != nil {
		t.Fatal(err)
	}
	wg.Wait() // every client sees its connection drop

	stderr, kill := start()
	defer func() {
		kill()
	}()
	if got := pending(t, 0); len(got) != 0 {
		t.Fatalf("pending after restart: %d", len(got))
	}
	out, err := cli(t, "audit", "--event", "approval.abandoned", "--json", "-n", "100")
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out, `"approval.abandoned"`); n != 50 {
		t.Errorf("%d abandoned records after the restart, want 50\n%s", n, stderr)
	}
	if out, err := cli(t, "audit", "verify"); err != nil || !strings.Contains(out, "100 records") {
		t.Errorf("audit verify: %q %v", out, err)
	}
}

// A second broker on the same state directory fails fast, saying why.
func TestSecondBrokerFailsFast(t *testing.T) {
	startServe(t, "")
	cmd := airlockCmd(t, "serve", "--listen", freePort(t))
	start := time.Now()
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatal("a second broker started on the same state directory")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("failing took %s", d)
	}
	if !strings.Contains(string(out), dbFile) || !strings.Contains(string(out), "another Airlock") {
		t.Errorf("message does not say what is wrong:\n%s", out)
	}
}

// The TypeScript SDK client, as clients built on it behave: with
// onprogress and resetTimeoutOnProgress it outlasts its request timeout
// while the call is held; without them it gets "approval pending" before
// its timeout, and its identical retry joins the approval.
func TestTypeScriptClientHold(t *testing.T) {
	node := brokertest.Node(t)
	script := filepath.Join(brokertest.RepoRoot(t), "testdata", "node", "hold-client.mjs")
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(cfg, []byte("hold_wait: 2s\nheartbeat: 1s\n"), 0o600)
	run := func(t *testing.T, mode string) (lines <-chan map[string]any, stdin func(string)) {
		cmd := airlockCmd(t, script, mode, os.Args[0], "wrap", "--name", "t", "-c", cfg, "--",
			"env", "AIRLOCK_TEST_ROLE=server", "AIRLOCK_TEST_SERVER=echo", os.Args[0])
		cmd.Path = node
		cmd.Args[0] = node
		cmd.Stderr = &syncBuffer{}
		in, _ := cmd.StdinPipe()
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { in.Close(); cmd.Wait() })
		ch := make(chan map[string]any, 4)
		go func() {
			dec := json.NewDecoder(out)
			for {
				var m map[string]any
				if dec.Decode(&m) != nil {
					close(ch)
					return
				}
				ch <- m
			}
		}()
		return ch, func(s string) { in.Write([]byte(s + "\n")) }
	}
	next := func(t *testing.T, ch <-chan map[string]any) map[string]any {
		select {
		case m, ok := <-ch:
			if !ok {
				t.Fatal("the client ended without output")
			}
			return m
		case <-time.After(30 * time.Second):
			t.Fatal("no output from the client")
		}
		return nil
	}

	t.Run("progress outlasts the timeout", func(t *testing.T) {
		lines, _ := run(t, "progress")
		p := pending(t, 1)[0]
		time.Sleep(5 * time.Second) // well past the client's 3 s timeout
		if _, err := cli(t, "approve", p.ID); err != nil {
			t.Fatal(err)
		}
		m := next(t, lines)
		if m["isError"] != false || !strings.Contains(fmt.Sprint(m["text"]), "wrote") || m["progress"].(float64) < 4 {
			t.Errorf("client got %v", m)
		}
	})
	t.Run("retry joins the approval", func(t *testing.T) {
		lines, stdin := run(t, "retry")
		first := next(t, lines)
		p := pending(t, 1)[0]
		if first["isError"] != true || !strings.Contains(fmt.Sprint(first["text"]), "Approval pending (ref "+p.ID+")") {
			t.Fatalf("first attempt: %v", first)
		}
		if _, err := cli(t, "approve", p.ID); err != nil {
			t.Fatal(err)
		}
		stdin("go")
		second := next(t, lines)
		if second["isError"] != false || !strings.Contains(fmt.Sprint(second["text"]), "wrote") {
			t.Errorf("retry: %v", second)
		}
		pending(t, 0) // the retry opened no new approval
		out, err := cli(t, "audit", "--event", "call.held", "--json")
		if err != nil || strings.Count(out, `"call.held"`) != 1 {
			t.Errorf("held calls in the audit: %v\n%s", err, out)
		}
		stdin("done")
	})
}
