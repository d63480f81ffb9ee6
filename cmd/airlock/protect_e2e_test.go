package main

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// The red team's self-approval: a filesystem server whose root covers
// Airlock's state dir, under the default policy, which allows reads. The
// admin token must stay out of reach in every spelling, while an ordinary
// file in the same root is still read.
func TestProtectedPathsThroughFilesystemServer(t *testing.T) {
	root := testStateHome(t) // serve's state dir is <root>/airlock
	state := filepath.Join(root, "airlock")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "readme.txt"), []byte("hello from the root"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(state, "admin-token"), filepath.Join(root, "shortcut")); err != nil {
		t.Fatal(err)
	}
	fs := brokertest.NPMCommand(t, "mcp-server-filesystem")
	base, stderr := startServe(t, "servers:\n  fs:\n    command: "+fs[0]+"\n    args: ["+quote(fs[1])+", "+quote(root)+"]\n")
	cs := httpSession(t, base+"/mcp/fs")
	read := func(path string) *mcp.CallToolResult {
		t.Helper()
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "read_text_file", Arguments: map[string]any{"path": path}})
		if err != nil {
			t.Fatalf("read_text_file %s: %v\n%s", path, err, stderr)
		}
		return res
	}

	if res := read(filepath.Join(root, "readme.txt")); res.IsError || !strings.Contains(resultString(res), "hello from the root") {
		t.Fatalf("an ordinary file in the root: %s\n%s", resultString(res), stderr)
	}
	token := filepath.Join(state, "admin-token")
	secret, err := os.ReadFile(token)
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{
		token,
		root + "/missing/../airlock/admin-token",
		root + "/./airlock/../airlock/admin-token",
		"file://" + token,
		strings.ReplaceAll(token, "/", "%2F"),
		strings.ReplaceAll(token, "admin-token", "%61dmin-token"),
		filepath.Join(root, "shortcut"),
	} {
		res := read(path)
		got := resultString(res)
		if !res.IsError || !strings.Contains(got, "Airlock's own state") {
			t.Errorf("%s: not denied: %s", path, got)
		}
		if strings.Contains(got, strings.TrimSpace(string(secret))) {
			t.Errorf("%s: the admin token reached the agent", path)
		}
	}
}

func quote(s string) string { return `"` + strings.ReplaceAll(s, `"`, `\"`) + `"` }

// Every file the config names as a secret, the config itself, the policy
// and the state home (every wrap's state dir, so that one wrap's agent
// cannot read a sibling's token) are protected, not just the state dir.
func TestProtectedPathsFromConfig(t *testing.T) {
	t.Setenv("XDG_STATE_HOME", "/home/u/.local/state")
	cfg := &Config{path: "/etc/airlock/airlock.yaml"}
	cfg.Policy.Dir = "/etc/airlock/policy"
	cfg.Slack = &SlackConfig{BotTokenFile: "/etc/airlock/bot", AppTokenFile: "/etc/airlock/app", SigningSecretFile: "/etc/airlock/signing"}
	cfg.UI.OIDC = &OIDCConfig{ClientSecretFile: "/etc/airlock/oidc"}
	cfg.Servers = map[string]*ServerConfig{"fs": {Command: "x", Cwd: "/srv/work"}}
	protect, dirs := protectedPaths(cfg, "/home/u/.local/state/airlock/wrap-fs")
	for _, want := range []string{
		"/home/u/.local/state/airlock/wrap-fs", "/home/u/.local/state/airlock/wrap-fs/admin-token", "/home/u/.local/state/airlock",
		"/etc/airlock/airlock.yaml", "/etc/airlock/policy", "/etc/airlock/bot", "/etc/airlock/app", "/etc/airlock/signing", "/etc/airlock/oidc",
	} {
		if !slices.Contains(protect, want) {
			t.Errorf("%s is not protected: %q", want, protect)
		}
	}
	if !slices.Contains(dirs, "/srv/work") {
		t.Errorf("servers.fs.cwd is not a work dir: %q", dirs)
	}
}
