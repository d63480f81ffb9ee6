package main

import (
	"net/http"
	"strings"
	"testing"
)

// Every route on serve's listener refuses a Host that is not one of its
// names, before the route sees the request: a DNS-rebinding page could
// otherwise read /healthz, /metrics or the UI under its own name.
func TestServeRefusesForeignHost(t *testing.T) {
	base, _ := startServe(t, "pprof: true\nallowed_hosts: [hooks.example.com]\nui: {url: \"https://airlock.example.com\"}\n"+
		"servers: {demo: {command: \"true\"}}\n")
	routes := []struct{ method, path string }{
		{"GET", "/"},
		{"GET", "/healthz"},
		{"GET", "/metrics"},
		{"GET", "/api/v1/approvals"},
		{"POST", "/api/v1/login-links"},
		{"POST", "/mcp/demo"},
		{"GET", "/mcp/demo"},
		{"POST", "/slack/interactivity"},
		{"GET", "/debug/pprof/"},
		{"GET", "/no-such-page"},
	}
	do := func(method, path, host string) int {
		req, _ := http.NewRequest(method, base+path, strings.NewReader("{}"))
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	port := base[strings.LastIndex(base, ":"):]
	for _, r := range routes {
		for _, host := range []string{"evil.example" + port, "evil.example", "127.0.0.1.evil.example" + port} {
			if code := do(r.method, r.path, host); code != http.StatusMisdirectedRequest {
				t.Errorf("%s %s with Host %s: %d, want 421", r.method, r.path, host, code)
			}
		}
	}
	for _, host := range []string{strings.TrimPrefix(base, "http://"), "localhost" + port, "airlock.example.com", "hooks.example.com"} {
		if code := do("GET", "/healthz", host); code != http.StatusOK {
			t.Errorf("GET /healthz with Host %s: %d, want 200", host, code)
		}
	}
}

func TestConfigAllowedHosts(t *testing.T) {
	for _, bad := range []string{"", "https://airlock.example.com", "airlock.example.com:443", "*.example.com", "a/b"} {
		c := &Config{AllowedHosts: []string{bad}}
		if err := c.resolve(); err == nil || !strings.Contains(err.Error(), "allowed_hosts[0]") {
			t.Errorf("%q: %v", bad, err)
		}
	}
	c := &Config{AllowedHosts: []string{"airlock.example.com", "10.0.0.5", "::1"}}
	if err := c.resolve(); err != nil {
		t.Error(err)
	}
}
