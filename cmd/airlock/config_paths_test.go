package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Relative paths in the config are read from the config file's directory,
// whatever the working directory: an MCP client starts wrap wherever it
// likes.
func TestConfigPathsRelativeToConfigFile(t *testing.T) {
	root := t.TempDir()
	confDir := filepath.Join(root, "conf")
	for _, d := range []string{confDir, filepath.Join(root, "policy"), filepath.Join(root, "elsewhere")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(confDir, "oidc-secret"), []byte("s3cret\n"), 0o600)
	cfgPath := filepath.Join(confDir, "airlock.yaml")
	os.WriteFile(cfgPath, []byte(`
policy: {dir: ../policy}
state_dir: state
ui:
  oidc: {issuer: 'https://idp.example', client_id: x, client_secret_file: oidc-secret}
slack:
  bot_token_file: bot-token
  app_token_file: ./app-token
  signing_secret_file: /abs/signing
  channel: C0123ABCD
servers:
  a: {command: ./bin/server, cwd: work}
  b: {command: npx, args: [./data]}
mcpServers:
  c: {command: ../tools/c}
`), 0o600)

	// From another directory, naming the config by a relative path.
	t.Chdir(filepath.Join(root, "elsewhere"))
	cfg, err := loadConfig("../conf/airlock.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for key, kv := range map[string][2]string{
		"policy.dir":                    {cfg.Policy.Dir, filepath.Join(root, "policy")},
		"state_dir":                     {cfg.StateDir, filepath.Join(confDir, "state")},
		"slack.bot_token_file":          {cfg.Slack.BotTokenFile, filepath.Join(confDir, "bot-token")},
		"slack.app_token_file":          {cfg.Slack.AppTokenFile, filepath.Join(confDir, "app-token")},
		"slack.signing_secret_file":     {cfg.Slack.SigningSecretFile, "/abs/signing"},
		"servers.a.command":             {cfg.Servers["a"].Command, filepath.Join(confDir, "bin/server")},
		"servers.a.cwd":                 {cfg.Servers["a"].Cwd, filepath.Join(confDir, "work")},
		"servers.b.command (PATH)":      {cfg.Servers["b"].Command, "npx"},
		"servers.b.args (the server's)": {cfg.Servers["b"].Args[0], "./data"},
		"mcpServers.c.command":          {cfg.Servers["c"].Command, filepath.Join(root, "tools/c")},
		"ui.oidc.client_secret (read)":  {cfg.UI.OIDC.clientSecret, "s3cret"},
		"ui.oidc.client_secret_file":    {cfg.UI.OIDC.ClientSecretFile, filepath.Join(confDir, "oidc-secret")},
	} {
		if kv[0] != kv[1] {
			t.Errorf("%s = %q, want %q", key, kv[0], kv[1])
		}
	}

	// A missing directory is named as checked, with why it is not the
	// path typed.
	os.WriteFile(cfgPath, []byte("policy: {dir: ../nopolicy}\n"), 0o600)
	_, err = loadConfig("../conf/airlock.yaml")
	want := "config: policy.dir: " + filepath.Join(root, "nopolicy") + " is not there (relative paths in the config are read from the config file's directory, " + confDir + ")"
	if err == nil || err.Error() != want {
		t.Errorf("err = %v\nwant %s", err, want)
	}
	os.WriteFile(cfgPath, []byte("policy: {dir: airlock.yaml}\n"), 0o600)
	if _, err = loadConfig(cfgPath); err == nil || !strings.Contains(err.Error(), cfgPath+" is not a directory") {
		t.Errorf("a file as policy.dir: %v", err)
	}
	os.WriteFile(cfgPath, []byte("policy: {dir: /nonexistent/policy}\n"), 0o600)
	if _, err = loadConfig(cfgPath); err == nil || err.Error() != "config: policy.dir: /nonexistent/policy is not there" {
		t.Errorf("an absolute policy.dir: %v", err)
	}
}
