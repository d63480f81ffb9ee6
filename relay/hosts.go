package relay

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Hosts is the set of names a listener answers to. It stops DNS rebinding:
// a web page whose name its owner points at Airlock's address makes the
// browser send requests that carry the page's own name in Host (and
// Origin), so whatever Host does not name this listener is refused, on
// every route.
//
// A listener answers to the host of its listen address as configured, the
// IP it is bound to, localhost and loopback literals when it is bound to
// loopback (or to every address), and the extra names it is given (the
// hosts of ui.url and slack.ui_url, allowed_hosts). A request's port is
// not compared: a proxy in front may change it, and a rebinding page cannot
// change the name. An IP literal in Host is accepted when the listener is
// bound to every address, since no one can rebind a literal.
type Hosts struct {
	names    map[string]bool
	anyIP    bool
	loopback bool
	origins  []string
}

// HostsConfig describes a listener for NewHosts.
type HostsConfig struct {
	// Listen is the listen address as configured ("vm:7432", ":7420").
	Listen string
	// Bound is the address the listener is bound to; nil when unknown.
	Bound net.Addr
	// Allowed are further host names (or IP literals) the listener answers
	// to: the hosts of the public URLs a proxy forwards from, and the
	// allowed_hosts config.
	Allowed []string
	// AllowedOrigins are further browser origins ("https://app.example")
	// allowed to call the MCP endpoints.
	AllowedOrigins []string
}

// NewHosts returns the names a listener answers to.
func NewHosts(cfg HostsConfig) *Hosts {
	h := &Hosts{names: map[string]bool{}, origins: cfg.AllowedOrigins}
	if host, _, err := net.SplitHostPort(cfg.Listen); err == nil && host != "" {
		h.add(host)
	}
	if tcp, ok := cfg.Bound.(*net.TCPAddr); ok && tcp.IP != nil {
		h.add(tcp.IP.String())
		h.loopback = tcp.IP.IsLoopback()
		h.anyIP = tcp.IP.IsUnspecified()
	} else if host, _, err := net.SplitHostPort(cfg.Listen); err == nil {
		ip := net.ParseIP(host)
		h.loopback = host == "localhost" || ip != nil && ip.IsLoopback()
		h.anyIP = host == "" || ip != nil && ip.IsUnspecified()
	}
	if h.loopback || h.anyIP {
		h.add("localhost")
	}
	for _, n := range cfg.Allowed {
		h.add(n)
	}
	return h
}

func (h *Hosts) add(name string) {
	if n := normalHost(name); n != "" {
		h.names[n] = true
	}
}

// normalHost is a host (with or without a port) as compared: lower case,
// without brackets, a trailing dot or a port.
func normalHost(hostport string) string {
	host := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		host = hh
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	return strings.ToLower(host)
}

// Allowed reports whether a request naming host (a Host header, with or
// without a port) is for this listener.
func (h *Hosts) Allowed(host string) bool {
	n := normalHost(host)
	if n == "" {
		return false
	}
	if h.names[n] {
		return true
	}
	ip := net.ParseIP(n)
	if ip == nil {
		return false
	}
	return h.anyIP || h.loopback && ip.IsLoopback()
}

// OriginAllowed reports whether a browser origin may call the MCP
// endpoints: no Origin (not a browser, or a same-origin GET), one of
// AllowedOrigins, or an http(s) origin whose host this listener answers to.
func (h *Hosts) OriginAllowed(origin string) bool {
	if origin == "" || slices.Contains(h.origins, origin) {
		return true
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	return h.Allowed(u.Host)
}

// Guard refuses, with 421 Misdirected Request, every request whose Host
// this listener does not answer to, before next sees it.
func (h *Hosts) Guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.Allowed(r.Host) {
			http.Error(w, fmt.Sprintf("Airlock does not answer to host %q; if that is a name it is reached by (behind a proxy, say), add it to allowed_hosts", r.Host), http.StatusMisdirectedRequest)
			return
		}
		next.ServeHTTP(w, r)
	})
}
