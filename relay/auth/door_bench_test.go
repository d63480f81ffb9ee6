package auth_test

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/airlock-mcp/airlock/relay/auth"
)

// BenchmarkAuthenticate is the door's cost per request: anonymous (no
// auth, the baseline), an agent token through a fake Tokens (the door's
// share; the core's lookup has its own benchmark), and an access token
// whose signature was checked before (the cache of verified tokens) or
// not (a new token every time: signature checked with a cached key).
func BenchmarkAuthenticate(b *testing.B) {
	idp := newKeyIdP(b)
	now := time.Now()
	aud := "https://airlock.test/mcp/github"
	oauth := newDoor(b, auth.Options{Tokens: fakeTokens{}, OAuth: &auth.OAuth{Issuer: idp.issuer(), Scopes: []string{"mcp"}, Claims: []string{"email"}}}, nil)
	good := idp.mint(b, idp.claims(aud, now), jose.RS256, nil, idp.kid)
	fresh := make([]string, 512)
	for i := range fresh {
		c := idp.claims(aud, now)
		c["jti"] = i
		fresh[i] = idp.mint(b, c, jose.RS256, nil, idp.kid)
	}
	anon := newDoor(b, auth.Options{Anonymous: true}, nil)
	run := func(b *testing.B, d *auth.Door, tok func(i int) string) {
		r := httptest.NewRequest(http.MethodPost, aud, nil)
		w := httptest.NewRecorder()
		b.ReportAllocs()
		headers := map[string]string{} // built before the loop: the client's cost, not the door's
		for i := range len(fresh) {
			if t := tok(i); t != "" {
				headers[t] = "Bearer " + t
			}
		}
		i := 0
		for b.Loop() {
			if t := tok(i); t != "" {
				r.Header["Authorization"] = []string{headers[t]}
			}
			if _, ok := d.Authenticate(w, r, "github"); !ok {
				b.Fatalf("refused: %d %s", w.Code, w.Body)
			}
			i++
		}
	}
	b.Run("anonymous", func(b *testing.B) { run(b, anon, func(int) string { return "" }) })
	b.Run("agent-token", func(b *testing.B) { run(b, oauth, func(int) string { return "airlock_at_good" }) })
	b.Run("jwt-cached", func(b *testing.B) { run(b, oauth, func(int) string { return good }) })
	b.Run("jwt-cached-key", func(b *testing.B) {
		run(b, oauth, func(i int) string {
			if i%len(fresh) == 0 {
				auth.ForgetVerified(oauth)
			}
			return fresh[i%len(fresh)]
		})
	})
}
