package auth

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strings"
)

// metadataPrefix is where RFC 9728 puts a resource's metadata: the
// well-known path inserted before the resource's own path.
const metadataPrefix = "/.well-known/oauth-protected-resource"

// metadataURL is the RFC 9728 metadata URL of a resource URL:
// https://h/mcp/x has https://h/.well-known/oauth-protected-resource/mcp/x.
func metadataURL(resource string) string {
	u, err := url.Parse(resource)
	if err != nil {
		return resource
	}
	u.Path = metadataPrefix + strings.TrimSuffix(u.Path, "/")
	u.RawPath, u.RawQuery, u.Fragment = "", "", ""
	return u.String()
}

// Metadata serves the Protected Resource Metadata (RFC 9728) of every MCP
// endpoint at /.well-known/oauth-protected-resource/mcp/{name}: the URL
// each 401 names in resource_metadata, and the first one an MCP client
// tries on its own (the TypeScript SDK, then, the root form, which Airlock
// does not serve: it has one resource per server, so a document at the
// root could only name one of them). The door does not know which servers
// exist: whoever mounts it routes only the names of real ones, or accepts
// that a made-up name gets a document for an endpoint that answers 404.
//
// Its resource is the audience tokens must carry: the endpoint's URL, or
// the configured audience, which an MCP client then asks its token for
// (RFC 8707), and which it accepts when it is a prefix of the endpoint's
// URL (as https://h/mcp is of https://h/mcp/x).
//
// Without OAuth there is no authorization server to point to: every path
// is 404, and 401s carry no resource_metadata.
func (d *Door) Metadata() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name, ok := strings.CutPrefix(r.URL.Path, metadataPrefix+"/mcp/")
		if d.oauth == nil || !ok || name == "" || strings.Contains(name, "/") {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		doc := struct {
			Resource               string   `json:"resource"`
			AuthorizationServers   []string `json:"authorization_servers"`
			ScopesSupported        []string `json:"scopes_supported,omitempty"`
			BearerMethodsSupported []string `json:"bearer_methods_supported"`
			ResourceName           string   `json:"resource_name"`
		}{
			Resource:               d.audience(r, name),
			AuthorizationServers:   []string{d.oauth.cfg.Issuer},
			ScopesSupported:        d.oauth.cfg.Scopes,
			BearerMethodsSupported: []string{"header"},
			ResourceName:           "Airlock: " + name,
		}
		b, err := json.Marshal(doc)
		if err != nil {
			http.Error(w, "internal error", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		// Public by design, and read by browser-based clients of other origins.
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Write(append(b, '\n'))
	})
}
