package main

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

func TestServeEverythingServer(t *testing.T) {
	base, _ := startServe(t, "policy: {dir: "+allowAllPolicy(t)+"}\nservers:\n  everything:\n    command: "+brokertest.EverythingServer(t)+"\n")
	cs := httpSession(t, base+"/mcp/everything")
	got := callText(t, cs, "test_simple_text", map[string]any{})
	if !strings.Contains(got, "simple text") {
		t.Errorf("test_simple_text = %q", got)
	}

	resp, err := http.Get(base + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var h struct {
		Status   string
		Sessions int
		Servers  []struct{ Name, Transport string }
	}
	json.NewDecoder(resp.Body).Decode(&h)
	if h.Status != "ok" || h.Sessions != 1 || len(h.Servers) != 1 || h.Servers[0].Name != "everything" {
		t.Errorf("healthz = %+v", h)
	}
}

// Each HTTP session gets its own child process: MCP servers assume one
// client.
func TestServeOneChildPerSession(t *testing.T) {
	base, _ := startServe(t, `mcpServers:
  echo:
    command: env
    args: ["AIRLOCK_TEST_ROLE=server", "AIRLOCK_TEST_SERVER=echo", "`+os.Args[0]+`"]
`)
	a := callText(t, httpSession(t, base+"/mcp/echo"), "pid", map[string]any{})
	b := callText(t, httpSession(t, base+"/mcp/echo"), "pid", map[string]any{})
	if a == "" || a == b {
		t.Errorf("two sessions were served by processes %q and %q", a, b)
	}
}

// The filesystem reference server from npm, behind serve, over HTTP: a
// real server with real side effects.
func TestServeNPMFilesystem(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "hello.txt"), []byte("hello from disk"), 0o600)
	fs := brokertest.NPMCommand(t, "mcp-server-filesystem")
	base, stderr := startServe(t, `policy: {dir: `+allowAllPolicy(t)+`}
servers:
  fs:
    command: `+fs[0]+`
    args: ["`+fs[1]+`", "`+root+`"]
`)
	cs := httpSession(t, base+"/mcp/fs")
	got := callText(t, cs, "read_text_file", map[string]any{"path": filepath.Join(root, "hello.txt")})
	if !strings.Contains(got, "hello from disk") {
		t.Errorf("read_text_file = %q\n%s", got, stderr)
	}
	callText(t, cs, "write_file", map[string]any{"path": filepath.Join(root, "new.txt"), "content": "written"})
	if data, err := os.ReadFile(filepath.Join(root, "new.txt")); err != nil || string(data) != "written" {
		t.Errorf("file after write_file: %q, %v", data, err)
	}
}
