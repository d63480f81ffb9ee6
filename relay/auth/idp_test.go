package auth_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// keyIdP is an issuer whose keys the test holds, to mint the bad tokens a
// real authorization server would never issue. It serves OpenID
// discovery and a JWKS, and can be made to fail.
type keyIdP struct {
	srv       *httptest.Server
	key       *rsa.PrivateKey
	kid       string
	jwksCalls atomic.Int32
	mu        sync.Mutex
	down      bool // JWKS and discovery answer 500
	extraKeys []jose.JSONWebKey
}

func newKeyIdP(t testing.TB) *keyIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &keyIdP{key: key, kid: "k1"}
	mux := http.NewServeMux()
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		if p.isDown() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		json.NewEncoder(w).Encode(map[string]string{"issuer": p.issuer(), "jwks_uri": p.issuer() + "/jwks"})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) {
		p.jwksCalls.Add(1)
		if p.isDown() {
			http.Error(w, "down", http.StatusInternalServerError)
			return
		}
		p.mu.Lock()
		keys := append([]jose.JSONWebKey{{Key: &p.key.PublicKey, KeyID: p.kid, Algorithm: "RS256", Use: "sig"}}, p.extraKeys...)
		p.mu.Unlock()
		json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: keys})
	})
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *keyIdP) issuer() string { return p.srv.URL }

func (p *keyIdP) isDown() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.down
}

func (p *keyIdP) setDown(down bool) {
	p.mu.Lock()
	p.down = down
	p.mu.Unlock()
}

// claims are a good token's, for audience aud, at time now.
func (p *keyIdP) claims(aud string, now time.Time) map[string]any {
	return map[string]any{
		"iss": p.issuer(), "aud": aud, "sub": "agent-7", "client_id": "client-7",
		"exp": now.Add(time.Hour).Unix(), "iat": now.Unix(), "scope": "mcp other",
		"groups": []string{"g1"}, "email": "seven@example.com",
	}
}

// mint signs claims with the IdP's key (or key, when given).
func (p *keyIdP) mint(t testing.TB, claims map[string]any, alg jose.SignatureAlgorithm, key any, kid string) string {
	t.Helper()
	if key == nil {
		key = p.key
	}
	opts := (&jose.SignerOptions{}).WithType("at+jwt")
	if kid != "" {
		opts = opts.WithHeader(jose.HeaderKey("kid"), kid)
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// unsigned is a token with alg none.
func unsigned(claims map[string]any) string {
	h := base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"none","typ":"at+jwt","kid":"k1"}`))
	b, _ := json.Marshal(claims)
	return h + "." + base64.RawURLEncoding.EncodeToString(b) + "."
}

// publicPEM is the IdP's public key as PEM: the HMAC secret of the
// classic algorithm-confusion attack.
func (p *keyIdP) publicPEM(t testing.TB) []byte {
	der, err := x509.MarshalPKIXPublicKey(&p.key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

// big is a syntactically fine token longer than the door reads.
func big() string { return strings.Repeat("a", 17<<10) + ".b.c" }
