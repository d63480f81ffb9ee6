package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAdminTokenIsMadeOnceAndKept(t *testing.T) {
	dir := t.TempDir()
	tok, err := adminToken(filepath.Join(dir, tokenFile))
	if err != nil || len(tok) < 32 {
		t.Fatalf("adminToken = %q, %v", tok, err)
	}
	st, err := os.Stat(filepath.Join(dir, tokenFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v, %v; want mode 0600", st, err)
	}
	again, err := adminToken(filepath.Join(dir, tokenFile))
	if err != nil || again != tok {
		t.Fatalf("second adminToken = %q, %v; want the first", again, err)
	}
	if tmp, _ := filepath.Glob(filepath.Join(dir, tokenFile+".tmp-*")); len(tmp) > 0 {
		t.Errorf("temporary files left behind: %v", tmp)
	}
}

// An empty token file made adminToken call itself until the stack overflowed.
func TestAdminTokenRefusesAFileItCannotUse(t *testing.T) {
	tests := map[string]struct {
		content string
		mode    os.FileMode
		want    string
	}{
		"empty":           {"", 0o600, "is empty"},
		"blank":           {" \n\n", 0o600, "is empty"},
		"readable by all": {"secret\n", 0o644, "(mode 0644); make it private with: chmod 600 "},
		"group writable":  {"secret\n", 0o620, "(mode 0620); make it private with: chmod 600 "},
		"unreadable":      {"secret\n", 0o200, "permission denied"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			if tc.mode == 0o200 && os.Geteuid() == 0 {
				t.Skip("root reads any file")
			}
			dir := t.TempDir()
			path := filepath.Join(dir, tokenFile)
			if err := os.WriteFile(path, []byte(tc.content), tc.mode); err != nil {
				t.Fatal(err)
			}
			os.Chmod(path, tc.mode) // past the umask
			tok, err := adminToken(filepath.Join(dir, tokenFile))
			if err == nil {
				t.Fatalf("adminToken = %q, want an error", tok)
			}
			if !strings.Contains(err.Error(), path) && tc.mode != 0o200 || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q should name %s and say %q", err, path, tc.want)
			}
			if data, _ := os.ReadFile(path); string(data) != tc.content {
				t.Errorf("the file was changed to %q", data)
			}
		})
	}
}

func TestSecretFilesOpenToOthersAreRefused(t *testing.T) {
	dir := t.TempDir()
	bot, app := filepath.Join(dir, "bot"), filepath.Join(dir, "app")
	os.WriteFile(bot, []byte("xoxb-1\n"), 0o600)
	os.WriteFile(app, []byte("xapp-1\n"), 0o600)
	os.Chmod(bot, 0o640)
	cfg, err := loadConfig(writeConfig(t, "slack:\n  bot_token_file: "+bot+"\n  app_token_file: "+app+"\n  channel: C0APPROVALS\n"))
	if err != nil {
		t.Fatal(err)
	}
	_, err = newSlack(cfg, nil)
	want := "config: slack.bot_token_file: " + bot + " is open to other users (mode 0640); make it private with: chmod 600 " + bot
	if err == nil || err.Error() != want {
		t.Errorf("loadConfig: %v\nwant %s", err, want)
	}
	secret := filepath.Join(dir, "oidc")
	os.WriteFile(secret, []byte("s3cret\n"), 0o604)
	os.Chmod(secret, 0o604)
	_, err = loadConfig(writeConfig(t, "ui:\n  oidc:\n    issuer: https://id.example.com\n    client_id: airlock\n    client_secret_file: "+secret+"\n"))
	if err == nil || !strings.Contains(err.Error(), "ui.oidc.client_secret_file: "+secret+" is open to other users (mode 0604); make it private with: chmod 600 "+secret) {
		t.Errorf("loadConfig with an open OIDC secret: %v", err)
	}
}
