package main

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// The client of `airlock wrap` crashes while a call is held: its end of
// stdin, stdout and stderr closes at once, as a killed process's does.
// wrap is not killed by SIGPIPE writing to them: it withdraws the call,
// recording that the client went away, removes its api.json and exits 0.
func TestWrapClientCrashWithHeldCall(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(cfg, []byte("policy: {dir: "+holdWritesPolicy(t)+"}\n"), 0o600)
	cmd := airlockCmd(t, append([]string{"wrap", "--name", "t", "-c", cfg, "--"}, testServerArgs("echo")...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	// stderr goes to the client too (Claude Desktop keeps it in a log):
	// it dies with the client.
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	go io.Copy(logs, stderr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "crash-test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: stdout, Writer: stdin}, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, logs)
	}
	go cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"n": 1}})
	held := pending(t, 1)[0]
	stateDir := filepath.Join(testStateHome(t), "airlock", wrapsDir)
	if _, err := os.Stat(filepath.Join(stateDir, apiInfoFile)); err != nil {
		t.Fatalf("no api.json while wrap runs: %v", err)
	}

	// The crash: every pipe to the client closes.
	stdout.Close()
	stderr.Close()
	stdin.Close()
	crashed := time.Now()
	if code := exitCode(t, cmd); code != 0 {
		t.Errorf("wrap exited %d (%v) after its client crashed, want 0", code, cmd.ProcessState)
	}
	if d := time.Since(crashed); d > 5*time.Second {
		t.Errorf("wrap took %s to exit after its client crashed", d)
	}
	if _, err := os.Stat(filepath.Join(stateDir, apiInfoFile)); err == nil {
		t.Error("wrap left its api.json behind")
	}
	out, err := cli(t, "audit", "--json", "--state-dir", stateDir)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"approval.withdrawn"`) || !strings.Contains(out, `"reason":"the client's session ended"`) ||
		!strings.Contains(out, held.ID) || strings.Contains(out, `"approval.abandoned"`) {
		t.Errorf("the audit log after the crash does not say the call was withdrawn:\n%s", out)
	}
}
