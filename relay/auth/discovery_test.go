package auth_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/airlock-mcp/airlock/relay/auth"
)

// TestDiscovery: the issuer's metadata is looked for where RFC 8414
// puts it (the well-known path inserted before the issuer's path), then
// where OpenID discovery does, and must name the configured issuer.
func TestDiscovery(t *testing.T) {
	for name, tc := range map[string]struct {
		path   string // where the metadata is served
		issuer string // what it names, relative to the server
		ok     bool
	}{
		"RFC 8414, path inserted":      {"/.well-known/oauth-authorization-server/realms/a", "/realms/a", true},
		"OpenID, path inserted":        {"/.well-known/openid-configuration/realms/a", "/realms/a", true},
		"OpenID, path appended":        {"/realms/a/.well-known/openid-configuration", "/realms/a", true},
		"a trailing slash aside":       {"/realms/a/.well-known/openid-configuration", "/realms/a/", true},
		"RFC 8414 at the root only":    {"/.well-known/oauth-authorization-server", "/realms/a", false},
		"names another issuer":         {"/.well-known/oauth-authorization-server/realms/a", "/realms/b", false},
		"names another issuer, OpenID": {"/realms/a/.well-known/openid-configuration", "/realms/b", false},
	} {
		t.Run(name, func(t *testing.T) {
			idp := newKeyIdP(t)
			mux := http.NewServeMux()
			var srv *httptest.Server
			mux.HandleFunc(tc.path, func(w http.ResponseWriter, r *http.Request) {
				json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL + tc.issuer, "jwks_uri": idp.issuer() + "/jwks"})
			})
			srv = httptest.NewServer(mux)
			defer srv.Close()
			c := &clock{t: time.Now()}
			d := newDoor(t, auth.Options{OAuth: &auth.OAuth{Issuer: srv.URL + "/realms/a"}}, c)
			claims := idp.claims("https://airlock.test/mcp/github", c.now())
			claims["iss"] = srv.URL + tc.issuer
			a := call(d, "github", bearer(idp.mint(t, claims, jose.RS256, nil, idp.kid)))
			if tc.ok && !a.ok {
				t.Errorf("refused: %d %v", a.status, a.body)
			}
			if !tc.ok && (a.ok || a.status != 503) {
				t.Errorf("ok %v, status %d %v; want 503", a.ok, a.status, a.body)
			}
		})
	}
}

// TestRedirectToPlainHTTP: a metadata URL that redirects to plain http
// off loopback is not trusted, though what is served there would do.
func TestRedirectToPlainHTTP(t *testing.T) {
	idp := newKeyIdP(t)
	srv := httptest.NewServer(http.RedirectHandler("http://idp.example.com/.well-known/openid-configuration", http.StatusFound))
	defer srv.Close()
	// idp.example.com answers from here, as a network attacker would.
	client := &http.Client{Transport: roundTripper(func(r *http.Request) (*http.Response, error) {
		if r.URL.Host != "idp.example.com" {
			return http.DefaultTransport.RoundTrip(r)
		}
		w := httptest.NewRecorder()
		json.NewEncoder(w).Encode(map[string]string{"issuer": srv.URL, "jwks_uri": idp.issuer() + "/jwks"})
		resp := w.Result()
		resp.Request = r
		return resp, nil
	})}
	d := newDoor(t, auth.Options{HTTPClient: client, OAuth: &auth.OAuth{Issuer: srv.URL}}, nil)
	claims := idp.claims("https://airlock.test/mcp/github", time.Now())
	claims["iss"] = srv.URL
	if a := call(d, "github", bearer(idp.mint(t, claims, jose.RS256, nil, idp.kid))); a.ok || a.status != 503 {
		t.Errorf("ok %v, status %d", a.ok, a.status)
	}
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestFirstRequestsShareOneFetch: requests that arrive together before
// any key is cached wait for one discovery and one JWKS fetch.
func TestFirstRequestsShareOneFetch(t *testing.T) {
	idp := newKeyIdP(t)
	c := &clock{t: time.Now()}
	d := newDoor(t, auth.Options{OAuth: &auth.OAuth{Issuer: idp.issuer()}}, c)
	var wg sync.WaitGroup
	for i := range 16 {
		claims := idp.claims("https://airlock.test/mcp/github", c.now())
		claims["jti"] = i
		tok := idp.mint(t, claims, jose.RS256, nil, idp.kid)
		wg.Go(func() {
			if a := call(d, "github", bearer(tok)); !a.ok {
				t.Errorf("refused: %d %v", a.status, a.body)
			}
		})
	}
	wg.Wait()
	if n := idp.jwksCalls.Load(); n != 1 {
		t.Errorf("JWKS fetched %d times, want 1", n)
	}
}

// FuzzAuthenticate: no credential that is not a good token gets in, and
// none panics the door.
func FuzzAuthenticate(f *testing.F) {
	idp := newKeyIdP(f)
	now := time.Now()
	good := idp.mint(f, idp.claims("https://airlock.test/mcp/github", now), jose.RS256, nil, idp.kid)
	for _, s := range []string{good, good[:len(good)-2], "airlock_at_x", "eyJhbGciOiJub25lIn0.e30.", unsigned(idp.claims("https://airlock.test/mcp/github", now)), "a.b.c", "...", "x"} {
		f.Add(s)
	}
	d := newDoor(f, auth.Options{Tokens: fakeTokens{}, OAuth: &auth.OAuth{Issuer: idp.issuer()}}, nil)
	f.Fuzz(func(t *testing.T, tok string) {
		r := httptest.NewRequest(http.MethodPost, "https://airlock.test/mcp/github", nil)
		r.Header["Authorization"] = []string{"Bearer " + tok}
		p, ok := d.Authenticate(httptest.NewRecorder(), r, "github")
		if ok && tok != good && tok != "airlock_at_good" {
			t.Fatalf("%q let in as %+v", tok, p)
		}
	})
}
