package main

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"
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

func TestConfigListenerLimits(t *testing.T) {
	c := &Config{}
	if err := c.resolve(); err != nil {
		t.Fatal(err)
	}
	if c.BodyTimeout != DefaultBodyTimeout || c.MaxConnections != DefaultMaxConnections {
		t.Errorf("defaults: body_timeout %v, max_connections %d", c.BodyTimeout, c.MaxConnections)
	}
	for key, c := range map[string]*Config{"body_timeout": {BodyTimeout: -1}, "max_connections": {MaxConnections: -1}} {
		if err := c.resolve(); err == nil || !strings.Contains(err.Error(), key) {
			t.Errorf("%s: %v", key, err)
		}
	}
}

// serve's listener cuts off a dripped body after body_timeout and accepts
// no more than max_connections at a time.
func TestServeListenerLimits(t *testing.T) {
	base, _ := startServe(t, "body_timeout: 100ms\nmax_connections: 1\n")
	http.DefaultClient.CloseIdleConnections() // startServe's, which held the one place
	addr := strings.TrimPrefix(base, "http://")

	// A takes the one place: its answer comes once the server has it.
	a, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.SetDeadline(time.Now().Add(20 * time.Second))
	fmt.Fprintf(a, "GET /healthz HTTP/1.1\r\nHost: %s\r\n\r\n", addr)
	resp, err := http.ReadResponse(bufio.NewReader(a), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	short := &http.Client{Timeout: 300 * time.Millisecond, Transport: &http.Transport{}}
	if resp, err := short.Get(base + "/healthz"); err == nil {
		resp.Body.Close()
		t.Fatal("a second connection was served while max_connections: 1 was taken")
	}

	// A now drips a body; the server gives up on it and lets A go.
	fmt.Fprintf(a, "POST /api/v1/approvals HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n{", addr)
	buf := make([]byte, 4096)
	for {
		if _, err := a.Read(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("the server waited for a dripped body past body_timeout")
			}
			break // closed by the server
		}
	}
	a.Close()
	long := &http.Client{Timeout: 20 * time.Second, Transport: &http.Transport{}}
	resp, err = long.Get(base + "/healthz")
	if err != nil {
		t.Fatalf("the place was not given back: %v", err)
	}
	resp.Body.Close()
}
