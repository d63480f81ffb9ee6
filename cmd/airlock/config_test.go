package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func writeConfig(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestConfigErrorsNameTheKey(t *testing.T) {
	t.Setenv("AIRLOCK_TEST_SET", "x")
	tests := map[string]struct{ yaml, want string }{
		"unknown top-level key": {"lisen: 1.2.3.4:5\n", `line 1: unknown key "lisen"`},
		"unknown server key":    {"servers:\n  a:\n    command: x\n    argz: [y]\n", `line 4: unknown key "argz"`},
		"bad listen":            {"listen: nowhere\n", "listen:"},
		"bad login link":        {"ui: {login_link: tty}\n", "ui.login_link:"},
		"bad log level":         {"log_level: loud\n", "log_level:"},
		"neither":               {"servers:\n  a: {}\n", "servers.a: needs command"},
		"both":                  {"servers:\n  a:\n    command: x\n    url: http://h/mcp\n", "servers.a: set command or url, not both"},
		"bad url":               {"servers:\n  a:\n    url: ftp://h\n", "servers.a.url:"},
		"bad name":              {"servers:\n  'a b':\n    command: x\n", "servers.a b: a server name"},
		"sse":                   {"servers:\n  a:\n    type: sse\n    url: http://h/sse\n", "servers.a.type: the legacy SSE"},
		"duplicate":             {"servers:\n  a: {command: x}\nmcpServers:\n  a: {command: y}\n", "mcpServers.a: also defined under servers"},
		"unset variable":        {"servers:\n  a:\n    url: http://h/mcp\n    headers: {Authorization: 'Bearer ${AIRLOCK_TEST_UNSET}'}\n", "servers.a.headers.Authorization: environment variable AIRLOCK_TEST_UNSET is not set"},
		"headers on a command":  {"servers:\n  a:\n    command: x\n    headers: {A: b}\n", "servers.a.headers: only apply to a url"},
		"wrong type":            {"init_timeout: soon\n", "init_timeout"},
		"unknown ui key":        {"ui:\n  aprover: bob\n", `line 2: unknown key "aprover"`},
		"ui url with a path":    {"ui:\n  url: https://h/airlock\n", "ui.url:"},
		"oidc without issuer":   {"ui:\n  oidc: {client_id: x}\n", "ui.oidc.issuer is required"},
		"oidc over http":        {"ui:\n  oidc: {issuer: 'http://idp.example', client_id: x}\n", "ui.oidc.issuer:"},
		"oidc without client":   {"ui:\n  oidc: {issuer: 'https://idp.example'}\n", "ui.oidc.client_id is required"},
		"missing secret file":   {"ui:\n  oidc: {issuer: 'https://idp.example', client_id: x, client_secret_file: /nonexistent}\n", "ui.oidc.client_secret_file:"},
		"negative limit":        {"limits: {held_bytes: -1}\n", "limits.held_bytes: must not be negative"},
		"unknown limit":         {"limits: {childs: 3}\n", `line 1: unknown key "childs"`},
		"negative progress cap": {"hold_wait_progress: -1s\n", `hold_wait_progress: "-1s" is not a duration`},
		"email as domain":       {"ui:\n  oidc: {issuer: 'https://idp.example', client_id: x, allowed_domains: [a@b.c]}\n", "ui.oidc.allowed_domains:"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to contain %q", err, tc.want)
			}
		})
	}
}

func TestConfigAcceptsClaudeDesktopShape(t *testing.T) {
	t.Setenv("GITHUB_TOKEN", "ghp_test")
	// mcpServers exactly as in claude_desktop_config.json (JSON is YAML).
	cfg, err := loadConfig(writeConfig(t, `{
  "mcpServers": {
    "filesystem": {
      "command": "npx",
      "args": ["-y", "@modelcontextprotocol/server-filesystem", "/srv/data"],
      "env": {"TOKEN": "${GITHUB_TOKEN}"}
    },
    "github": {
      "url": "https://api.githubcopilot.com/mcp/",
      "headers": {"Authorization": "Bearer ${GITHUB_TOKEN}"}
    }
  }
}`))
	if err != nil {
		t.Fatal(err)
	}
	fs, gh := cfg.Servers["filesystem"], cfg.Servers["github"]
	if fs == nil || fs.Command != "npx" || fs.Env["TOKEN"] != "ghp_test" || !fs.trustAnnotations() {
		t.Errorf("filesystem = %+v", fs)
	}
	if gh == nil || gh.Headers["Authorization"] != "Bearer ghp_test" {
		t.Errorf("github = %+v", gh)
	}
	if cfg.Listen != DefaultListen {
		t.Errorf("listen = %q", cfg.Listen)
	}
}

func TestConfigEmptyMeansDefaults(t *testing.T) {
	for _, path := range []string{"", writeConfig(t, "")} {
		cfg, err := loadConfig(path)
		if err != nil || cfg.Listen != DefaultListen || len(cfg.Servers) != 0 {
			t.Errorf("loadConfig(%q) = %+v, %v", path, cfg, err)
		}
	}
}

func TestConfigUI(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(secret, []byte("s3cret\n"), 0o600)
	cfg, err := loadConfig(writeConfig(t, `ui:
  approver: " carol "
  url: https://airlock.example.com/
  session_ttl: 2h
  oidc:
    issuer: https://accounts.example.com
    client_id: airlock
    client_secret_file: `+secret+`
    allowed_domains: [example.com]
`))
	if err != nil {
		t.Fatal(err)
	}
	o := cfg.UI.oidc()
	if cfg.UI.Approver != "carol" || cfg.UI.SessionTTL.Hours() != 2 || o.ClientSecret != "s3cret" || o.Claim != "email" ||
		o.AllowedDomains[0] != "example.com" {
		t.Errorf("ui = %+v, oidc = %+v", cfg.UI, o)
	}
	if cfg, _ := loadConfig(""); cfg.UI.oidc() != nil {
		t.Error("OIDC is on without a config")
	}
}
