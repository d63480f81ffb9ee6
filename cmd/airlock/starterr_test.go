package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// wrap of a server that is not there fails at once, saying so, before it
// opens a state directory or makes a login link.
func TestWrapMissingCommandFailsFirst(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(cfg, []byte("ui: {login_link: stderr}\n"), 0o600)
	for _, tc := range []struct{ command, want string }{
		{"airlock-test-no-such-server", `server command "airlock-test-no-such-server": not found in PATH`},
		{"/nonexistent/mcp-server", `server command "/nonexistent/mcp-server": `},
	} {
		cmd := airlockCmd(t, "wrap", "--name", "missing", "-c", cfg, "--", tc.command)
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("wrap %s: err %v, output:\n%s", tc.command, err, out)
		}
		if strings.Contains(strings.ToLower(string(out)), "login") {
			t.Errorf("wrap %s made a login link before failing:\n%s", tc.command, out)
		}
		if _, err := os.Stat(filepath.Join(testStateHome(t), "airlock", wrapsDir)); err == nil {
			t.Errorf("wrap %s opened its state directory before failing", tc.command)
		}
	}
}

// serve on a taken port names the address and how to pick another.
func TestServePortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	out, err := airlockCmd(t, "serve", "--listen", addr).CombinedOutput()
	if err == nil {
		t.Fatal("serve started on a taken port")
	}
	for _, want := range []string{"address already in use", addr + " is taken", "--listen", "127.0.0.1:0 takes any free port"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

// A second serve on the same state directory names the broker that holds
// it: its pid and URL, from its api.json.
func TestSecondServeNamesTheRunningBroker(t *testing.T) {
	base, _ := startServe(t, "")
	data, err := os.ReadFile(filepath.Join(testStateHome(t), "airlock", apiInfoFile))
	if err != nil {
		t.Fatal(err)
	}
	var info apiInfo
	if err := json.Unmarshal(data, &info); err != nil {
		t.Fatal(err)
	}
	out, err := airlockCmd(t, "serve", "--listen", freePort(t)).CombinedOutput()
	if err == nil {
		t.Fatal("a second broker started on the same state directory")
	}
	for _, want := range []string{fmt.Sprintf("pid %d", info.PID), "at " + base + " since ", "another --state-dir"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}
