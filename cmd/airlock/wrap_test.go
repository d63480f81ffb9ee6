package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

func TestWrapRelaysAndStopsTheUpstream(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	cs, cmd, stderr := wrapClient(t, []string{"--name", "test"}, testServerArgs("echo", "AIRLOCK_TEST_PIDFILE="+pidFile)...)
	got := callText(t, cs, "echo", map[string]any{"x": 1})
	if got != `{"x":1}` {
		t.Errorf("echo = %q", got)
	}
	data, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(string(data))
	cs.Close() // closes airlock's stdin
	if code := exitCode(t, cmd); code != 0 {
		t.Fatalf("airlock exited %d after the client closed\n%s", code, stderr)
	}
	if err := syscall.Kill(pid, 0); err == nil {
		t.Errorf("upstream %d still running after airlock exited", pid)
	}
	if !strings.Contains(stderr.String(), "session started") {
		t.Errorf("logs did not reach stderr:\n%s", stderr)
	}
}

func TestWrapUpstreamCrash(t *testing.T) {
	cs, cmd, stderr := wrapClient(t, nil, testServerArgs("echo")...)
	_, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "crash", Arguments: map[string]any{}})
	if err == nil || !strings.Contains(err.Error(), "exited with status 3") {
		t.Errorf("call in flight got %v, want the upstream's exit status", err)
	}
	if code := exitCode(t, cmd); code != 1 {
		t.Errorf("airlock exited %d, want 1", code)
	}
	if !strings.Contains(stderr.String(), "airlock: upstream airlock.test exited with status 3") {
		t.Errorf("stderr does not name the exit status:\n%s", stderr)
	}
	// Without --name, the name chosen for the policy is said at start.
	if !strings.Contains(stderr.String(), "wrapping server airlock.test") || !strings.Contains(stderr.String(), "--name sets another") {
		t.Errorf("stderr does not say the server's name:\n%s", stderr)
	}
}

func TestWrapUpstreamNeverInitializes(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(cfg, []byte("init_timeout: 300ms\n"), 0o600)
	cmd := airlockCmd(t, append([]string{"wrap", "-c", cfg, "--"}, testServerArgs("mute")...)...)
	_, stderr, err := connectCmd(cmd)
	if err == nil || !strings.Contains(err.Error(), "did not answer initialize within 300ms") {
		t.Errorf("connect: %v", err)
	}
	if code := exitCode(t, cmd); code != 1 {
		t.Errorf("airlock exited %d, want 1\n%s", code, stderr)
	}
}

func TestWrapGarbageOnStdin(t *testing.T) {
	cmd := airlockCmd(t, append([]string{"wrap", "--"}, testServerArgs("echo")...)...)
	cmd.Stdin = strings.NewReader("garbage\n{\"jsonrpc\":\"2.0\",\n\x00\x01\n")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("airlock: %v\n%s", err, stderr)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 error responses, got:\n%s", out)
	}
	for _, l := range lines {
		if !strings.HasPrefix(l, `{"jsonrpc":"2.0","id":null,"error":{"code":-32700`) {
			t.Errorf("not a parse error: %s", l)
		}
	}
	if strings.Contains(stderr.String(), "panic") {
		t.Errorf("panic:\n%s", stderr)
	}
}

func TestWrapMissingCommand(t *testing.T) {
	cmd := airlockCmd(t, "wrap", "--", "/nonexistent/mcp-server")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "/nonexistent/mcp-server") {
		t.Errorf("err %v, output:\n%s", err, out)
	}
}

// The go-sdk's conformance server, a real server built from the module
// cache, through wrap.
func TestWrapEverythingServer(t *testing.T) {
	cs, cmd, _ := wrapClient(t, []string{"-c", allowAllConfig(t)}, brokertest.EverythingServer(t))
	got := callText(t, cs, "test_simple_text", map[string]any{})
	if !strings.Contains(got, "simple text") {
		t.Errorf("test_simple_text = %q", got)
	}
	cs.Close()
	exitCode(t, cmd)
}

// The npm reference server-everything through wrap.
func TestWrapNPMServerEverything(t *testing.T) {
	cs, cmd, stderr := wrapClient(t, []string{"-c", allowAllConfig(t)}, brokertest.NPMCommand(t, "mcp-server-everything")...)
	got := callText(t, cs, "echo", map[string]any{"message": "through airlock"})
	if !strings.Contains(got, "through airlock") {
		t.Errorf("echo = %q\n%s", got, stderr)
	}
	cs.Close()
	exitCode(t, cmd)
}

func TestGuessName(t *testing.T) {
	tests := map[string]string{
		"npx -y @modelcontextprotocol/server-filesystem /tmp": "filesystem",
		"npx @scope/pkg@1.2.3":                                "pkg",
		"uvx mcp-server-git --repository .":                   "git",
		"/usr/local/bin/github-mcp-server stdio":              "github",
		"npx -y @modelcontextprotocol/server-everything":      "everything",
		"python3 mcp-postgres.py":                             "postgres",
		"/opt/mcp-server":                                     "mcp-server",
		"node build/index.js":                                 "index",
		"docker run -i --rm ghcr.io/org/img":                  "img",
	}
	for cmdline, want := range tests {
		if got := guessName(strings.Fields(cmdline)); got != want {
			t.Errorf("guessName(%q) = %q, want %q", cmdline, got, want)
		}
	}
}
