package relay_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"
)

func tcpAddr(s string) net.Addr {
	a, err := net.ResolveTCPAddr("tcp", s)
	if err != nil {
		panic(err)
	}
	return a
}

func TestHostsAllowed(t *testing.T) {
	cases := map[string]struct {
		cfg   relay.HostsConfig
		allow []string
		deny  []string
	}{
		// The listen host is a name that resolves to loopback: only that
		// name and loopback names are this listener's, not any name that
		// happens to resolve here too.
		"name resolving to loopback": {
			cfg:   relay.HostsConfig{Listen: "vm:7432", Bound: tcpAddr("127.0.0.1:7432")},
			allow: []string{"vm:7432", "VM", "vm.:7432", "localhost:7432", "127.0.0.1:7432", "127.0.0.2", "[::1]:7432"},
			deny:  []string{"evil.example:7432", "evil.example", "", "vm.evil.example", "10.0.0.1:7432", "localhost.evil.example"},
		},
		"loopback literal": {
			cfg:   relay.HostsConfig{Listen: "127.0.0.1:0", Bound: tcpAddr("127.0.0.1:41000")},
			allow: []string{"127.0.0.1:41000", "localhost:41000"},
			deny:  []string{"evil.example:41000", "example.com"},
		},
		"behind a proxy": {
			cfg:   relay.HostsConfig{Listen: "127.0.0.1:7420", Bound: tcpAddr("127.0.0.1:7420"), Allowed: []string{"airlock.example.com", "Hooks.Example.com"}},
			allow: []string{"airlock.example.com", "airlock.example.com:443", "hooks.example.com"},
			deny:  []string{"evil.example", "example.com", "sub.airlock.example.com"},
		},
		"every address": {
			cfg:   relay.HostsConfig{Listen: "0.0.0.0:7420", Bound: tcpAddr("0.0.0.0:7420")},
			allow: []string{"10.1.2.3:7420", "localhost:7420", "[fe80::1]:7420"},
			deny:  []string{"evil.example:7420", "airlock"},
		},
		"a LAN address": {
			cfg:   relay.HostsConfig{Listen: "10.0.0.5:7420", Bound: tcpAddr("10.0.0.5:7420")},
			allow: []string{"10.0.0.5:7420"},
			deny:  []string{"localhost:7420", "127.0.0.1:7420", "evil.example:7420", "10.0.0.6"},
		},
	}
	for name, tc := range cases {
		h := relay.NewHosts(tc.cfg)
		for _, host := range tc.allow {
			if !h.Allowed(host) {
				t.Errorf("%s: %q refused", name, host)
			}
		}
		for _, host := range tc.deny {
			if h.Allowed(host) {
				t.Errorf("%s: %q allowed", name, host)
			}
		}
	}
}

func TestHostsOriginAllowed(t *testing.T) {
	h := relay.NewHosts(relay.HostsConfig{Listen: "vm:7432", Bound: tcpAddr("127.0.0.1:7432"), AllowedOrigins: []string{"https://app.example.com"}})
	for _, o := range []string{"", "http://vm:7432", "http://localhost:3000", "https://app.example.com"} {
		if !h.OriginAllowed(o) {
			t.Errorf("origin %q refused", o)
		}
	}
	for _, o := range []string{"null", "http://evil.example:7432", "https://app.example.com.evil.example", "file://", "chrome-extension://abc"} {
		if h.OriginAllowed(o) {
			t.Errorf("origin %q allowed", o)
		}
	}
}

// The MCP endpoint on a listener named by a name that resolves to
// loopback: a rebinding page's requests carry its own name in Host, with
// or without an Origin, and are refused.
func TestHTTPRefusesRebindingThroughLoopbackName(t *testing.T) {
	srv := relaytest.NewServer()
	b := relaytest.NewRelay(t, relay.Options{}, srv.Upstream("test"))
	hosts := relay.NewHosts(relay.HostsConfig{Listen: "vm:7432", Bound: tcpAddr("127.0.0.1:7432")})
	mcp := b.HTTPHandler(relay.HTTPOptions{Hosts: hosts})
	t.Cleanup(mcp.Close)
	send := func(host, origin string) int {
		req := httptest.NewRequest(http.MethodPost, "/mcp/test", strings.NewReader(initBody))
		req.SetPathValue("server", "test")
		req.Host = host
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		rec := httptest.NewRecorder()
		mcp.ServeHTTP(rec, req)
		return rec.Code
	}
	for _, tc := range [][2]string{
		{"evil.example:7432", "http://evil.example:7432"},
		{"evil.example:7432", ""},
		{"vm:7432", "http://evil.example:7432"},
	} {
		if code := send(tc[0], tc[1]); code != http.StatusForbidden {
			t.Errorf("Host %q Origin %q: %d, want 403", tc[0], tc[1], code)
		}
	}
	if code := send("vm:7432", "http://vm:7432"); code != http.StatusOK {
		t.Errorf("the listener's own name: %d", code)
	}
}

func TestHostsGuard(t *testing.T) {
	h := relay.NewHosts(relay.HostsConfig{Listen: "127.0.0.1:7420", Bound: tcpAddr("127.0.0.1:7420")})
	reached := false
	g := h.Guard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { reached = true }))
	req := httptest.NewRequest(http.MethodGet, "/healthz", nil)
	req.Host = "evil.example:7420"
	rec := httptest.NewRecorder()
	g.ServeHTTP(rec, req)
	if reached || rec.Code != http.StatusMisdirectedRequest || !strings.Contains(rec.Body.String(), "allowed_hosts") {
		t.Errorf("foreign host: reached %v, %d %q", reached, rec.Code, rec.Body)
	}
	req.Host = "127.0.0.1:7420"
	g.ServeHTTP(httptest.NewRecorder(), req)
	if !reached {
		t.Error("own host refused")
	}
}
