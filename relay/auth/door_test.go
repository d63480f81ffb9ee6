package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/relay/auth"
)

func TestMain(m *testing.M) { os.Exit(brokertest.Main(m)) }

// resourceURL is the public URL of /mcp/{server} in these tests.
func resourceURL(r *http.Request, server string) string { return "https://airlock.test/mcp/" + server }

// fakeTokens is the core's token check: one agent token, good for server
// "github" only; "airlock_at_down" is a store that fails.
type fakeTokens struct{}

func (fakeTokens) TokenPrincipal(ctx context.Context, token, server string) (broker.Principal, error) {
	switch {
	case token == "airlock_at_down":
		return broker.Principal{}, errors.New("store: disk on fire")
	case token != "airlock_at_good":
		return broker.Principal{}, fmt.Errorf("token: %w", broker.ErrBadToken)
	case server != "github":
		return broker.Principal{}, fmt.Errorf("token: %w", broker.ErrTokenScope)
	}
	return broker.Principal{ID: "builder", Source: "token", Groups: []string{"ci"}}, nil
}

// refusals records what the door audits.
type refusals struct {
	mu  sync.Mutex
	got []broker.AuthRefusal
}

func (rs *refusals) add(_ context.Context, r broker.AuthRefusal) {
	rs.mu.Lock()
	rs.got = append(rs.got, r)
	rs.mu.Unlock()
}

func (rs *refusals) all() []broker.AuthRefusal {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return slices.Clone(rs.got)
}

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newDoor(t testing.TB, o auth.Options, c *clock) *auth.Door {
	t.Helper()
	if o.ResourceURL == nil {
		o.ResourceURL = resourceURL
	}
	d, err := auth.New(t.Context(), o)
	if err != nil {
		t.Fatal(err)
	}
	if c != nil {
		auth.SetNow(d, c.now)
	}
	return d
}

// answer is what the door made of one request.
type answer struct {
	p      broker.Principal
	ok     bool
	status int
	header string // WWW-Authenticate
	body   map[string]string
}

func call(d *auth.Door, server string, setup func(*http.Request)) answer {
	r := httptest.NewRequest(http.MethodPost, "https://airlock.test/mcp/"+server, nil)
	if setup != nil {
		setup(r)
	}
	w := httptest.NewRecorder()
	p, ok := d.Authenticate(w, r, server)
	a := answer{p: p, ok: ok, status: w.Code, header: w.Header().Get("WWW-Authenticate")}
	if !ok {
		json.Unmarshal(w.Body.Bytes(), &a.body)
	}
	return a
}

func bearer(tok string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+tok) }
}

func TestBadCredentials(t *testing.T) {
	idp := newKeyIdP(t)
	c := &clock{t: time.Now()}
	aud := "https://airlock.test/mcp/github"
	good := idp.claims(aud, c.now())
	with := func(k string, v any) map[string]any {
		m := map[string]any{}
		for k, v := range good {
			m[k] = v
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return m
	}
	other, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	rs256 := func(claims map[string]any) string { return idp.mint(t, claims, jose.RS256, nil, idp.kid) }
	prm := `resource_metadata="https://airlock.test/.well-known/oauth-protected-resource/mcp/github"`

	cases := map[string]struct {
		setup  func(*http.Request)
		status int
		code   string // the error of WWW-Authenticate and of the body
		desc   string // part of error_description
		source string // of the audit record
	}{
		"no credentials":             {nil, 401, "", "credentials are required", ""},
		"expired":                    {bearer(rs256(with("exp", c.now().Add(-2*time.Minute).Unix()))), 401, "invalid_token", "expired", "oauth"},
		"not yet valid":              {bearer(rs256(with("nbf", c.now().Add(10*time.Minute).Unix()))), 401, "invalid_token", "not valid yet", "oauth"},
		"no exp":                     {bearer(rs256(with("exp", nil))), 401, "invalid_token", "no valid exp", "oauth"},
		"wrong audience":             {bearer(rs256(with("aud", "https://airlock.test/mcp/other"))), 401, "invalid_token", "not for this resource", "oauth"},
		"audience of another server": {bearer(rs256(with("aud", []string{"https://elsewhere.test/mcp/github", "x"}))), 401, "invalid_token", "not for this resource", "oauth"},
		"wrong issuer":               {bearer(rs256(with("iss", "https://evil.test"))), 401, "invalid_token", "not from the issuer", "oauth"},
		"unsigned, alg none":         {bearer(unsigned(good)), 401, "invalid_token", "algorithm is not accepted", "oauth"},
		"HS256 with the public key":  {bearer(idp.mint(t, good, jose.HS256, idp.publicPEM(t), idp.kid)), 401, "invalid_token", "algorithm is not accepted", "oauth"},
		"unknown kid":                {bearer(idp.mint(t, good, jose.ES256, other, "k-unknown")), 401, "invalid_token", "not one of the issuer's", "oauth"},
		"another key, the right kid": {bearer(idp.mint(t, good, jose.ES256, other, idp.kid)), 401, "invalid_token", "does not verify", "oauth"},
		"malformed":                  {bearer("eyJhbGciOi.eyJzdWIi.c2ln"), 401, "invalid_token", "not a well-formed JWT", "oauth"},
		"not a JWT":                  {bearer("opaque-token"), 401, "invalid_token", "not a JWT", "oauth"},
		"oversized":                  {bearer(big()), 401, "invalid_token", "longer than", ""},
		"missing scope":              {bearer(rs256(with("scope", "other"))), 403, "insufficient_scope", "lacks the scope mcp", "oauth"},
		"no principal claim":         {bearer(rs256(with("sub", nil))), 401, "invalid_token", "no sub claim", "oauth"},
		"groups not a list":          {bearer(rs256(with("groups", "g1"))), 401, "invalid_token", "not a list of strings", "oauth"},
		"an id token's typ": {bearer(func() string {
			s, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: idp.key}, (&jose.SignerOptions{}).WithType("logout+jwt").WithHeader("kid", idp.kid))
			b, _ := json.Marshal(good)
			jws, _ := s.Sign(b)
			tok, _ := jws.CompactSerialize()
			return tok
		}()), 401, "invalid_token", "typ", "oauth"},
		"bad agent token":    {bearer("airlock_at_nope"), 401, "invalid_token", "unknown, expired or revoked", "token"},
		"agent token, scope": {bearer("airlock_at_good"), 0, "", "", ""}, // server "other" below
		"agent store down":   {bearer("airlock_at_down"), 503, "", "cannot be checked", "token"},
		"basic auth":         {func(r *http.Request) { r.SetBasicAuth("u", "p") }, 400, "invalid_request", "Bearer TOKEN", ""},
		"two headers": {func(r *http.Request) {
			r.Header.Add("Authorization", "Bearer a")
			r.Header.Add("Authorization", "Bearer b")
		}, 400, "invalid_request", "more than one", ""},
		"token in the URL":      {func(r *http.Request) { r.URL.RawQuery = "access_token=" + rs256(good) }, 400, "invalid_request", "in the URL", ""},
		"empty bearer":          {func(r *http.Request) { r.Header.Set("Authorization", "Bearer ") }, 400, "invalid_request", "characters", ""},
		"bearer with a space":   {bearer("a b"), 400, "invalid_request", "characters", ""},
		"bearer with a quote":   {bearer(`a"b`), 400, "invalid_request", "characters", ""},
		"duplicate claim names": {bearer(dupClaims(t, idp, good)), 401, "invalid_token", "not one JSON object", "oauth"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var rec refusals
			d := newDoor(t, auth.Options{
				Tokens: fakeTokens{}, Refused: rec.add, Anonymous: false,
				OAuth: &auth.OAuth{Issuer: idp.issuer(), Scopes: []string{"mcp"}},
			}, c)
			server := "github"
			if name == "agent token, scope" {
				server, tc.status, tc.code, tc.desc, tc.source = "other", 403, "insufficient_scope", "not valid for server other", "token"
				prm = strings.Replace(prm, "mcp/github", "mcp/other", 1)
				defer func() { prm = strings.Replace(prm, "mcp/other", "mcp/github", 1) }()
			}
			a := call(d, server, tc.setup)
			if a.ok || a.status != tc.status {
				t.Fatalf("got ok=%v status %d %v, want a refusal with %d", a.ok, a.status, a.body, tc.status)
			}
			if a.body["error_description"] == "" || !strings.Contains(a.body["error_description"], tc.desc) {
				t.Errorf("error_description %q, want it to say %q", a.body["error_description"], tc.desc)
			}
			if tc.status == 503 {
				if a.header != "" {
					t.Errorf("503 with WWW-Authenticate %q", a.header)
				}
			} else {
				if !strings.HasPrefix(a.header, "Bearer ") || !strings.Contains(a.header, prm) {
					t.Errorf("WWW-Authenticate %q lacks %s", a.header, prm)
				}
				if tc.code != "" && (!strings.Contains(a.header, `error="`+tc.code+`"`) || a.body["error"] != tc.code) {
					t.Errorf("WWW-Authenticate %q, body %v: want error %q", a.header, a.body, tc.code)
				}
				if tc.code == "" && strings.Contains(a.header, "error=") {
					t.Errorf("WWW-Authenticate %q has an error without a credential given", a.header)
				}
			}
			got := rec.all()
			if len(got) != 1 || got[0].Status != tc.status || got[0].Server != server || got[0].Source != tc.source || got[0].Reason != a.body["error_description"] {
				t.Errorf("audited %+v, want one refusal of %s with status %d, source %q", got, server, tc.status, tc.source)
			}
		})
	}
}

// dupClaims is a good token whose payload names sub twice.
func dupClaims(t testing.TB, idp *keyIdP, good map[string]any) string {
	b, _ := json.Marshal(good)
	b = append([]byte(`{"sub":"someone-else",`), b[1:]...)
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: idp.key}, (&jose.SignerOptions{}).WithType("at+jwt").WithHeader("kid", idp.kid))
	if err != nil {
		t.Fatal(err)
	}
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, _ := jws.CompactSerialize()
	return tok
}

func TestGoodCredentials(t *testing.T) {
	idp := newKeyIdP(t)
	c := &clock{t: time.Now()}
	d := newDoor(t, auth.Options{
		Tokens: fakeTokens{},
		OAuth:  &auth.OAuth{Issuer: idp.issuer() + "/", Scopes: []string{"mcp"}, Claims: []string{"email", "absent"}},
	}, c)
	tok := idp.mint(t, idp.claims("https://airlock.test/mcp/github", c.now()), jose.RS256, nil, idp.kid)
	want := broker.Principal{ID: "agent-7", Source: "oauth", Groups: []string{"g1"}, ClientID: "client-7", Claims: json.RawMessage(`{"email":"seven@example.com"}`)}
	for i := range 2 { // the second from the cache of verified tokens
		a := call(d, "github", bearer(tok))
		if !a.ok || a.p.ID != want.ID || a.p.Source != want.Source || !slices.Equal(a.p.Groups, want.Groups) || a.p.ClientID != want.ClientID || string(a.p.Claims) != string(want.Claims) {
			t.Fatalf("call %d: got %+v (ok %v, %d %v), want %+v", i, a.p, a.ok, a.status, a.body, want)
		}
	}
	// The cache does not outlive the token, nor carry it to another server.
	if a := call(d, "gitlab", bearer(tok)); a.ok || a.status != 401 {
		t.Errorf("token for github at gitlab: ok %v, status %d", a.ok, a.status)
	}
	c.add(2 * time.Hour)
	if a := call(d, "github", bearer(tok)); a.ok || a.status != 401 || !strings.Contains(a.body["error_description"], "expired") {
		t.Errorf("expired token from the cache: ok %v, status %d %v", a.ok, a.status, a.body)
	}
	c.add(-2 * time.Hour)

	if a := call(d, "github", bearer("airlock_at_good")); !a.ok || a.p.ID != "builder" || a.p.Source != "token" {
		t.Errorf("agent token: %+v ok %v status %d", a.p, a.ok, a.status)
	}
	// Without Anonymous, nobody is nobody.
	if a := call(d, "github", nil); a.ok || a.status != 401 {
		t.Errorf("no credentials: ok %v status %d", a.ok, a.status)
	}
	anon := newDoor(t, auth.Options{Anonymous: true, Tokens: fakeTokens{}}, nil)
	if a := call(anon, "github", nil); !a.ok || a.p.Source != "anonymous" {
		t.Errorf("anonymous: %+v ok %v", a.p, a.ok)
	}
	// A wrong credential is refused, not downgraded to anonymous.
	for _, tok := range []string{"airlock_at_nope", "eyJ.eyJ.sig"} {
		if a := call(anon, "github", bearer(tok)); a.ok || a.status != 401 {
			t.Errorf("%s with anonymous allowed: ok %v status %d", tok, a.ok, a.status)
		}
	}
	// Without OAuth, a 401 has no metadata to point to.
	if a := call(anon, "github", bearer("eyJ.eyJ.sig")); strings.Contains(a.header, "resource_metadata") || !strings.HasPrefix(a.header, "Bearer ") {
		t.Errorf("WWW-Authenticate without OAuth: %q", a.header)
	}
}

func TestNewRefusesBadConfig(t *testing.T) {
	for name, o := range map[string]auth.Options{
		"http issuer not on loopback": {ResourceURL: resourceURL, OAuth: &auth.OAuth{Issuer: "http://idp.example.com/"}},
		"no issuer":                   {ResourceURL: resourceURL, OAuth: &auth.OAuth{}},
		"relative audience":           {ResourceURL: resourceURL, OAuth: &auth.OAuth{Issuer: "https://idp.example.com/", Audience: "mcp"}},
		"no resource URL":             {OAuth: &auth.OAuth{Issuer: "https://idp.example.com/"}},
		"two-word scope":              {ResourceURL: resourceURL, OAuth: &auth.OAuth{Issuer: "https://idp.example.com/", Scopes: []string{"a b"}}},
		"introspection, no secret":    {ResourceURL: resourceURL, OAuth: &auth.OAuth{Issuer: "https://idp.example.com/", IntrospectionURL: "https://idp.example.com/i", ClientID: "x"}},
	} {
		if _, err := auth.New(t.Context(), o); err == nil {
			t.Errorf("%s: New accepted it", name)
		}
	}
	for _, iss := range []string{"http://127.0.0.1:9000/", "http://localhost:9000/realms/x", "http://[::1]:9000", "https://idp.example.com/"} {
		if _, err := auth.New(t.Context(), auth.Options{ResourceURL: resourceURL, OAuth: &auth.OAuth{Issuer: iss}}); err != nil {
			t.Errorf("%s: %v", iss, err)
		}
	}
}

func TestKeysDown(t *testing.T) {
	idp := newKeyIdP(t)
	c := &clock{t: time.Now()}
	aud := "https://airlock.test/mcp/github"
	d := newDoor(t, auth.Options{OAuth: &auth.OAuth{Issuer: idp.issuer()}}, c)
	if a := call(d, "github", bearer(idp.mint(t, idp.claims(aud, c.now()), jose.RS256, nil, idp.kid))); !a.ok {
		t.Fatalf("good token: %d %v", a.status, a.body)
	}
	idp.setDown(true)
	c.add(2 * time.Hour) // the keys are old: refetched, and the fetch fails
	// A token not seen before, signed with a cached key, still works.
	if a := call(d, "github", bearer(idp.mint(t, idp.claims(aud, c.now()), jose.RS256, nil, idp.kid))); !a.ok {
		t.Errorf("cached key, JWKS down: %d %v", a.status, a.body)
	}
	// A key that is not cached cannot be checked: 503, not 401, never allowed.
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.add(time.Minute)
	if a := call(d, "github", bearer(idp.mint(t, idp.claims(aud, c.now()), jose.ES256, other, "k2"))); a.ok || a.status != 503 {
		t.Errorf("uncached key, JWKS down: ok %v status %d %v", a.ok, a.status, a.body)
	}

	// A door that never had keys answers 503 while the IdP is down, and
	// works once it is back, without a restart.
	fresh := newDoor(t, auth.Options{OAuth: &auth.OAuth{Issuer: idp.issuer()}}, c)
	tok := idp.mint(t, idp.claims(aud, c.now()), jose.RS256, nil, idp.kid)
	for range 2 {
		if a := call(fresh, "github", bearer(tok)); a.ok || a.status != 503 || a.header != "" {
			t.Errorf("no keys, IdP down: ok %v status %d %q", a.ok, a.status, a.header)
		}
	}
	idp.setDown(false)
	c.add(11 * time.Second)
	if a := call(fresh, "github", bearer(tok)); !a.ok {
		t.Errorf("IdP back: %d %v", a.status, a.body)
	}
}

func TestUnknownKidRefetchIsRateLimited(t *testing.T) {
	idp := newKeyIdP(t)
	c := &clock{t: time.Now()}
	aud := "https://airlock.test/mcp/github"
	d := newDoor(t, auth.Options{OAuth: &auth.OAuth{Issuer: idp.issuer()}}, c)
	if a := call(d, "github", bearer(idp.mint(t, idp.claims(aud, c.now()), jose.RS256, nil, idp.kid))); !a.ok {
		t.Fatalf("good token: %d %v", a.status, a.body)
	}
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	c.add(time.Minute)
	for i := range 20 {
		claims := idp.claims(aud, c.now())
		claims["jti"] = i
		if a := call(d, "github", bearer(idp.mint(t, claims, jose.ES256, other, fmt.Sprint("made-up-", i)))); a.ok || a.status != 401 {
			t.Fatalf("made-up kid: ok %v status %d", a.ok, a.status)
		}
	}
	if n := idp.jwksCalls.Load(); n != 2 {
		t.Errorf("JWKS fetched %d times for one good token and 20 made-up kids within 10 s; want 2", n)
	}
	// A key the IdP adds later is found at the next refetch.
	idp.mu.Lock()
	idp.extraKeys = []jose.JSONWebKey{{Key: &other.PublicKey, KeyID: "new", Algorithm: "ES256", Use: "sig"}}
	idp.mu.Unlock()
	c.add(11 * time.Second)
	if a := call(d, "github", bearer(idp.mint(t, idp.claims(aud, c.now()), jose.ES256, other, "new"))); !a.ok {
		t.Errorf("new key: %d %v", a.status, a.body)
	}
}

func TestRefusalsAreRateLimited(t *testing.T) {
	var rec refusals
	c := &clock{t: time.Now()}
	d := newDoor(t, auth.Options{Tokens: fakeTokens{}, Refused: rec.add}, c)
	for range 25 {
		call(d, "github", bearer("airlock_at_nope"))
	}
	if got := rec.all(); len(got) != auth.RefusalsPerMinute {
		t.Fatalf("audited %d of 25 refusals in a minute, want %d", len(got), auth.RefusalsPerMinute)
	}
	c.add(time.Minute)
	call(d, "github", nil)
	got := rec.all()
	if len(got) != auth.RefusalsPerMinute+1 || got[len(got)-1].Suppressed != 25-auth.RefusalsPerMinute || got[len(got)-1].Status != 401 {
		t.Fatalf("the next minute's first refusal: %+v, want one that counts %d left out", got[len(got)-1], 25-auth.RefusalsPerMinute)
	}
	if got[0].Suppressed != 0 || got[0].Remote == "" {
		t.Errorf("first refusal: %+v", got[0])
	}
}

func TestMetadata(t *testing.T) {
	d := newDoor(t, auth.Options{OAuth: &auth.OAuth{Issuer: "https://idp.example.com/realms/agents", Scopes: []string{"mcp"}}}, nil)
	get := func(d *auth.Door, method, path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		d.Metadata().ServeHTTP(w, httptest.NewRequest(method, "https://airlock.test"+path, nil))
		return w
	}
	w := get(d, http.MethodGet, "/.well-known/oauth-protected-resource/mcp/github")
	want := `{"resource":"https://airlock.test/mcp/github","authorization_servers":["https://idp.example.com/realms/agents"],"scopes_supported":["mcp"],"bearer_methods_supported":["header"],"resource_name":"Airlock: github"}` + "\n"
	if w.Code != 200 || w.Body.String() != want || w.Header().Get("Content-Type") != "application/json" {
		t.Errorf("metadata: %d %s\n%s\nwant %s", w.Code, w.Header(), w.Body, want)
	}
	// The 401 points to that document.
	a := call(d, "github", nil)
	if want := `Bearer resource_metadata="https://airlock.test/.well-known/oauth-protected-resource/mcp/github", scope="mcp"`; a.header != want {
		t.Errorf("401 without a token:\n%s\nwant\n%s", a.header, want)
	}
	for _, p := range []string{"/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp/", "/.well-known/oauth-protected-resource/mcp/a/b", "/.well-known/oauth-protected-resource/other/x"} {
		if w := get(d, http.MethodGet, p); w.Code != 404 {
			t.Errorf("%s: %d", p, w.Code)
		}
	}
	if w := get(d, http.MethodPost, "/.well-known/oauth-protected-resource/mcp/github"); w.Code != 405 {
		t.Errorf("POST: %d", w.Code)
	}
	// A configured audience is the resource clients ask their token for.
	aud := newDoor(t, auth.Options{OAuth: &auth.OAuth{Issuer: "https://idp.example.com/", Audience: "https://airlock.test/mcp"}}, nil)
	if w := get(aud, http.MethodGet, "/.well-known/oauth-protected-resource/mcp/github"); !strings.Contains(w.Body.String(), `"resource":"https://airlock.test/mcp"`) {
		t.Errorf("with an audience: %s", w.Body)
	}
	// Without OAuth there is no metadata.
	none := newDoor(t, auth.Options{Anonymous: true}, nil)
	if w := get(none, http.MethodGet, "/.well-known/oauth-protected-resource/mcp/github"); w.Code != 404 {
		t.Errorf("without oauth: %d", w.Code)
	}
}
