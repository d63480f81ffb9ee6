package ui_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/ui"
)

// fakeIdP is an OpenID Connect provider in an httptest server: discovery,
// JWKS, an authorization endpoint that signs the user in at once, and a
// token endpoint that checks the code, the PKCE verifier and the client's
// secret, as a real provider does.
type fakeIdP struct {
	t        *testing.T
	srv      *httptest.Server
	key      *rsa.PrivateKey
	clientID string
	secret   string
	redirect string // the only redirect URI registered

	mu     sync.Mutex
	claims map[string]any // the next ID token's claims, besides the standard ones
	codes  map[string]authRequest
	// tamper changes an ID token's claims before signing, to test
	// verification.
	tamper func(map[string]any)
}

type authRequest struct{ nonce, challenge, redirect string }

func newFakeIdP(t *testing.T) *fakeIdP {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &fakeIdP{t: t, key: key, clientID: "airlock-test", secret: "client-secret", codes: map[string]authRequest{},
		claims: map[string]any{"email": "alice@example.com", "email_verified": true}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer":                                p.srv.URL,
			"authorization_endpoint":                p.srv.URL + "/authorize",
			"token_endpoint":                        p.srv.URL + "/token",
			"jwks_uri":                              p.srv.URL + "/jwks",
			"response_types_supported":              []string{"code"},
			"subject_types_supported":               []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
			"code_challenge_methods_supported":      []string{"S256"},
		})
	})
	mux.HandleFunc("GET /jwks", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	})
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *fakeIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if q.Get("client_id") != p.clientID || q.Get("response_type") != "code" || q.Get("redirect_uri") != p.redirect ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "" || q.Get("nonce") == "" ||
		!strings.Contains(q.Get("scope"), "openid") {
		p.t.Errorf("bad authorization request: %s", r.URL.RawQuery)
		http.Error(w, "bad request", http.StatusBadRequest)
		return
	}
	code := rand.Text()
	p.mu.Lock()
	p.codes[code] = authRequest{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
	p.mu.Unlock()
	http.Redirect(w, r, p.redirect+"?"+url.Values{"code": {code}, "state": {q.Get("state")}}.Encode(), http.StatusFound)
}

func (p *fakeIdP) token(w http.ResponseWriter, r *http.Request) {
	r.ParseForm()
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	p.mu.Lock()
	req, found := p.codes[r.PostForm.Get("code")]
	delete(p.codes, r.PostForm.Get("code"))
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(r.PostForm.Get("code_verifier")))
	switch {
	case id != p.clientID || secret != p.secret:
		http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
		return
	case !found || req.redirect != r.PostForm.Get("redirect_uri") || base64.RawURLEncoding.EncodeToString(sum[:]) != req.challenge:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":"invalid_grant"}`))
		return
	}
	now := time.Now()
	claims := map[string]any{"iss": p.srv.URL, "sub": "user-1", "aud": p.clientID, "iat": now.Unix(),
		"exp": now.Add(time.Hour).Unix(), "nonce": req.nonce}
	p.mu.Lock()
	for k, v := range p.claims {
		claims[k] = v
	}
	if p.tamper != nil {
		p.tamper(claims)
	}
	p.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: p.key, KeyID: "k1"}},
		(&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		p.t.Fatal(err)
	}
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		p.t.Fatal(err)
	}
	idToken, _ := jws.CompactSerialize()
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": idToken})
}

func (p *fakeIdP) set(claims map[string]any, tamper func(map[string]any)) {
	p.mu.Lock()
	p.claims, p.tamper = claims, tamper
	p.mu.Unlock()
}

// oidcHarness is the UI with sign-in through p.
func oidcHarness(t *testing.T, p *fakeIdP, configure func(*ui.OIDC)) *harness {
	h := newHarness(t, func(o *ui.Options) {
		o.OIDC = &ui.OIDC{Issuer: p.srv.URL, ClientID: p.clientID, ClientSecret: p.secret}
		if configure != nil {
			configure(o.OIDC)
		}
	})
	p.redirect = h.url("/oidc/callback")
	return h
}

// browser follows redirects, as a browser does, across the UI and the
// provider.
func (h *harness) browser() *client {
	jar, _ := cookiejar.New(nil)
	return &client{h: h, c: &http.Client{Jar: jar, Timeout: 20 * time.Second}}
}

func TestOIDCSignIn(t *testing.T) {
	p := newFakeIdP(t)
	h := oidcHarness(t, p, nil)
	a := h.addApproval(nil)
	c := h.browser()

	// Unauthenticated, a page leads to the login page, which offers the
	// provider and remembers where the person was going.
	resp, doc := c.get("/approvals/" + a.ID)
	wantStatus(t, resp, http.StatusOK)
	button := doc.Find("a.button")
	host := strings.TrimPrefix(p.srv.URL, "http://")
	if text(button) != "Sign in with "+host || button.AttrOr("href", "") != "/oidc/login?next="+url.QueryEscape("/approvals/"+a.ID) {
		t.Fatalf("login page offers %q at %q", text(button), button.AttrOr("href", ""))
	}

	resp, doc = c.get(button.AttrOr("href", ""))
	wantStatus(t, resp, http.StatusOK)
	if got := text(doc.Find("h1")); got != "Signed in as alice@example.com" {
		t.Fatalf("after the provider: %q", got)
	}
	if got := doc.Find("meta[http-equiv=refresh]").AttrOr("content", ""); got != "0;url=/approvals/"+a.ID {
		t.Errorf("moves on with %q", got)
	}
	var session *http.Cookie
	for _, ck := range resp.Cookies() {
		if strings.HasPrefix(ck.Name, "airlock_session_") && ck.Value != "" {
			session = ck
		}
	}
	if session == nil || !session.HttpOnly || session.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie = %+v", session)
	}
	_, doc = c.get("/approvals/" + a.ID)
	if got := text(doc.Find(".who strong")); got != "alice@example.com" {
		t.Errorf("signed in as %q", got)
	}
	// Decisions record the provider's identity.
	resp, _ = c.post("/approvals/"+a.ID+"/decision", url.Values{"verdict": {"approve"}})
	if stored, _ := h.Broker.Approval(t.Context(), a.ID); stored.DecidedBy != "alice@example.com" || stored.Votes[0].Channel != "web" {
		t.Errorf("decided by %q", stored.DecidedBy)
	}
}

func TestOIDCRefusals(t *testing.T) {
	tests := map[string]struct {
		configure func(*ui.OIDC)
		claims    map[string]any
		tamper    func(map[string]any)
		status    int
		says      string
	}{
		"not an allowed user": {
			configure: func(o *ui.OIDC) { o.AllowedUsers = []string{"bob@example.com"} },
			status:    http.StatusForbidden, says: "alice@example.com is not among the approvers allowed here",
		},
		"not an allowed domain": {
			configure: func(o *ui.OIDC) { o.AllowedDomains = []string{"example.org"} },
			status:    http.StatusForbidden, says: "not among the approvers allowed here",
		},
		"an unverified email": {
			claims: map[string]any{"email": "alice@example.com", "email_verified": false},
			status: http.StatusForbidden, says: "has not verified the email address",
		},
		"no identity claim": {
			claims: map[string]any{"name": "Alice"},
			status: http.StatusForbidden, says: `has no "email" claim`,
		},
		"a replayed nonce": {
			tamper: func(c map[string]any) { c["nonce"] = "another" },
			status: http.StatusBadGateway, says: "Signing in failed while verifying the ID token (ref ",
		},
		"a token for another client": {
			tamper: func(c map[string]any) { c["aud"] = "someone-else" },
			status: http.StatusBadGateway, says: "Signing in failed while verifying the ID token (ref ",
		},
		"an expired token": {
			tamper: func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() },
			status: http.StatusBadGateway, says: "verifying the ID token",
		},
		"a wrong client secret": {
			configure: func(o *ui.OIDC) { o.ClientSecret = "wrong" },
			status:    http.StatusBadGateway, says: "Signing in failed while exchanging the sign-in code (ref ",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			p := newFakeIdP(t)
			if tt.claims != nil || tt.tamper != nil {
				claims := tt.claims
				if claims == nil {
					claims = p.claims
				}
				p.set(claims, tt.tamper)
			}
			h := oidcHarness(t, p, tt.configure)
			c := h.browser()
			resp, doc := c.get("/oidc/login")
			wantStatus(t, resp, tt.status)
			if got := text(doc.Find(".alert")); !strings.Contains(got, tt.says) {
				t.Errorf("page says %q, want %q", got, tt.says)
			}
			resp, _ = c.get("/")
			if resp.Request.URL.Path != "/login" {
				t.Errorf("signed in after a refusal: at %s", resp.Request.URL)
			}
		})
	}
}

func TestOIDCClaimAndAllowList(t *testing.T) {
	p := newFakeIdP(t)
	p.set(map[string]any{"preferred_username": "Alice", "email": "mallory@example.com", "email_verified": false}, nil)
	h := oidcHarness(t, p, func(o *ui.OIDC) { o.Claim = "preferred_username"; o.AllowedUsers = []string{"alice"} })
	c := h.browser()
	_, doc := c.get("/oidc/login")
	if got := text(doc.Find("h1")); got != "Signed in as Alice" {
		t.Errorf("with claim preferred_username: %q", got)
	}
}

// The state binds a sign-in to the browser that started it, once.
func TestOIDCState(t *testing.T) {
	p := newFakeIdP(t)
	h := oidcHarness(t, p, nil)

	// Start in one browser, and stop at the provider's redirect back.
	start := h.anonymous()
	resp, _ := start.get("/oidc/login")
	wantStatus(t, resp, http.StatusFound)
	authorize := resp.Header.Get("Location")
	resp, err := start.c.Get(authorize)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	callback := resp.Header.Get("Location")
	if !strings.HasPrefix(callback, h.url("/oidc/callback?")) {
		t.Fatalf("the provider sent the browser to %q", callback)
	}

	// Another browser cannot finish it (a login CSRF)...
	resp, doc := h.anonymous().get(callback)
	wantStatus(t, resp, http.StatusForbidden)
	if got := text(doc.Find(".alert")); !strings.Contains(got, "did not start in this browser") {
		t.Errorf("another browser: %q", got)
	}
	// ...the one that started it can...
	resp, _ = start.get(callback)
	wantStatus(t, resp, http.StatusOK)
	// ...and only once.
	again := h.anonymous()
	u, _ := url.Parse(callback)
	again.c.Jar.SetCookies(u, []*http.Cookie{{Name: resp.Cookies()[0].Name, Value: u.Query().Get("state")}})
	resp, _ = again.get(callback)
	wantStatus(t, resp, http.StatusForbidden)

	resp, doc = h.anonymous().get("/oidc/callback?error=access_denied&state=x")
	wantStatus(t, resp, http.StatusForbidden)
	if got := text(doc.Find(".alert")); !strings.Contains(got, "The sign-in provider refused: access_denied") {
		t.Errorf("provider error: %q", got)
	}
}

func TestOIDCProviderDown(t *testing.T) {
	p := newFakeIdP(t)
	h := oidcHarness(t, p, nil)
	p.srv.Close() // the broker started; the provider is gone
	resp, doc := h.browser().get("/oidc/login")
	wantStatus(t, resp, http.StatusBadGateway)
	if got := text(doc.Find(".alert")); !strings.Contains(got, "reaching the sign-in provider (ref ") {
		t.Errorf("page says %q", got)
	}
	// Login links still work.
	h.signIn("")
}

func TestWithoutOIDCItsPagesAreNotThere(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/oidc/login", "/oidc/callback?code=x&state=y"} {
		resp, _ := h.anonymous().get(path)
		wantStatus(t, resp, http.StatusNotFound)
	}
}

// A sign-in that config maps to a person decides as that person: alice,
// signed in with her email, may not approve the call of her agent, which
// authenticated with its own OAuth subject. Without the mapping the two
// are different identities, and the same approval counts.
func TestOIDCSignInIsThePerson(t *testing.T) {
	for name, people := range map[string]broker.People{
		"mapped":   {broker.PersonKey("oauth", "00u1alice"): "alice", broker.PersonKey("web", "alice@example.com"): "alice"},
		"unmapped": nil,
	} {
		t.Run(name, func(t *testing.T) {
			p := newFakeIdP(t)
			h := newHarnessWith(t, broker.Options{People: people}, func(o *ui.Options) {
				o.OIDC = &ui.OIDC{Issuer: p.srv.URL, ClientID: p.clientID, ClientSecret: p.secret}
			})
			p.redirect = h.url("/oidc/callback")
			h.Principal = broker.Principal{Source: "oauth", ID: "00u1alice"}
			done := h.Call(t.Context(), "write", map[string]any{"path": "/srv/x"})
			a := h.Held()

			c := h.browser()
			_, doc := c.get("/oidc/login")
			want := "alice@example.com"
			if people != nil {
				want = "alice"
			}
			if got := text(doc.Find("h1")); got != "Signed in as "+want {
				t.Fatalf("after the provider: %q", got)
			}
			c.post("/approvals/"+a.ID+"/decision", url.Values{"verdict": {"approve"}})
			stored, err := h.Broker.Approval(t.Context(), a.ID)
			if err != nil {
				t.Fatal(err)
			}
			if people == nil {
				if stored.Status != broker.StatusApproved || stored.DecidedBy != "alice@example.com" || !released(outcome(t, done)) {
					t.Fatalf("unmapped: %s by %q", stored.Status, stored.DecidedBy)
				}
				return
			}
			if stored.Status != broker.StatusPending || len(stored.Votes) != 0 {
				t.Fatalf("alice approved her own agent's call from the web: %s, votes %+v", stored.Status, stored.Votes)
			}
		})
	}
}
