package main

import (
	"net"
	"os"
	"strings"
	"testing"
)

func TestAuthConfigErrors(t *testing.T) {
	tests := map[string]struct{ yaml, want string }{
		"nobody let in":          {"auth: {tokens: false}\n", "auth lets nobody in"},
		"issuer over http":       {"auth:\n  oauth: {issuer: 'http://idp.example.com/'}\n", "auth.oauth.issuer: \"http://idp.example.com/\" must be an https URL"},
		"no issuer":              {"auth:\n  oauth: {audience: 'https://a.example/mcp'}\n", "auth.oauth.issuer:"},
		"relative audience":      {"auth:\n  oauth: {issuer: 'https://idp.example/', audience: mcp}\n", "auth.oauth.audience:"},
		"two-word scope":         {"auth:\n  oauth: {issuer: 'https://idp.example/', scopes: ['mcp read']}\n", "auth.oauth.scopes:"},
		"introspection, no auth": {"auth:\n  oauth: {issuer: 'https://idp.example/', introspection_url: 'https://idp.example/introspect'}\n", "needs client_id and client_secret_file"},
		"unknown key":            {"auth:\n  anonymus: true\n", `unknown key "anonymus"`},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			_, err := loadConfig(writeConfig(t, tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want %q", err, tt.want)
			}
		})
	}
	for _, ok := range []string{
		"auth: {anonymous: true}\n",
		"auth: {}\n",
		"auth:\n  oauth: {issuer: 'http://127.0.0.1:9000/'}\n",
		"auth:\n  oauth: {issuer: 'http://localhost:9000/realms/x'}\n",
	} {
		if _, err := loadConfig(writeConfig(t, ok)); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
}

// serve beyond loopback with nobody checked at the door does not start;
// the explicit opt-out does.
func TestServeRefusesAnOpenDoor(t *testing.T) {
	cmd := airlockCmd(t, "serve", "-c", writeConfig(t, "servers: {}\n"), "--listen", "0.0.0.0:0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve on 0.0.0.0 without auth started:\n%s", out)
	}
	for _, want := range []string{"refusing to listen on 0.0.0.0:0 with no auth configured", "airlock tokens create", "auth: {anonymous: true}"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not say %q:\n%s", want, out)
		}
	}
	demo := airlockCmd(t, "demo", "--listen", "0.0.0.0:0")
	if out, err := demo.CombinedOutput(); err == nil || !strings.Contains(string(out), "loopback address only") {
		t.Errorf("demo on 0.0.0.0: %v\n%s", err, out)
	}
}

// The explicit opt-out starts serve beyond loopback, and callers without
// credentials are anonymous.
func TestServeAnonymousOptOut(t *testing.T) {
	_, port, _ := net.SplitHostPort(freePort(t))
	cmd := airlockCmd(t, "serve", "-c", writeConfig(t, "auth: {anonymous: true}\nservers: {}\n"), "--listen", "0.0.0.0:"+port)
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		if code := exitCode(t, cmd); code != 0 {
			t.Errorf("serve exited %d\n%s", code, stderr)
		}
	})
	waitHealthy(t, "http://127.0.0.1:"+port, stderr)
}
