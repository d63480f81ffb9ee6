package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// holdWritesPolicy is a policy directory that allows reads and holds
// every other call for a person.
func holdWritesPolicy(t *testing.T) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "airlock.rego"), []byte(`package airlock

decision := {"action": "allow", "reason": "reads pass"} if {
	input.tool.annotations.readOnlyHint
} else := {"action": "hold", "reason": "writes need a person", "timeout": "10m"}
`), 0o600)
	return dir
}

// heldWrite calls the test upstream's write tool, which the policy holds,
// and delivers what the client read: the tool result, or the error of a
// call that got none.
func heldWrite(cs *mcp.ClientSession) <-chan string {
	out := make(chan string, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"n": 1}})
		switch {
		case err != nil:
			out <- "transport error: " + err.Error()
		case !res.IsError:
			out <- "not an error: " + resultString(res)
		default:
			out <- resultString(res)
		}
	}()
	return out
}

// checkAbandoned waits for airlock to exit 0 after SIGTERM and for the held
// call's answer, which must be the tool error that says what happened.
func checkAbandoned(t *testing.T, cmd *exec.Cmd, stderr *syncBuffer, ref string, got <-chan string) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	text := <-got
	want := fmt.Sprintf("abandoned: Airlock stopped while the call waited (ref %s)", ref)
	if !strings.Contains(text, want) {
		t.Errorf("the held call read %q, want a tool error containing %q\nstderr:\n%s", text, want, stderr)
	}
	if code := exitCode(t, cmd); code != 0 {
		t.Errorf("airlock exited %d after SIGTERM\n%s", code, stderr)
	}
}

// SIGTERM to wrap while a call is held: the client reads the call's
// abandoned tool error on stdout before the session ends.
func TestWrapShutdownAnswersHeldCall(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(cfg, []byte("policy: {dir: "+holdWritesPolicy(t)+"}\n"), 0o600)
	cs, cmd, stderr := wrapClient(t, []string{"--name", "t", "-c", cfg}, testServerArgs("echo")...)
	defer cs.Close()
	got := heldWrite(cs)
	p := pending(t, 1)[0]
	checkAbandoned(t, cmd, stderr, p.ID, got)
}

// SIGTERM to serve while a call is held: the client reads the call's
// abandoned tool error over streamable HTTP before the session ends.
func TestServeShutdownAnswersHeldCall(t *testing.T) {
	addr := freePort(t)
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "listen: %s\npolicy: {dir: %s}\nservers:\n  t:\n    command: env\n    args: [\"AIRLOCK_TEST_ROLE=server\", \"AIRLOCK_TEST_SERVER=echo\", %q]\n",
		addr, holdWritesPolicy(t), os.Args[0]), 0o600)
	cmd := airlockCmd(t, "serve", "-c", cfg)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	waitListening(t, addr)
	cs := httpSession(t, "http://"+addr+"/mcp/t")
	got := heldWrite(cs)
	p := pending(t, 1)[0]
	checkAbandoned(t, cmd, stderr, p.ID, got)
}
