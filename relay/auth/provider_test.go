package auth_test

import (
	"encoding/json"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/relay/auth"
	"github.com/airlock-mcp/airlock/relay/auth/authtest"
)

// TestRealAuthorizationServer: tokens a real authorization server issues
// by client credentials for Airlock's resource are accepted, as the client
// they were issued to; what it issues for another resource or scope is not.
func TestRealAuthorizationServer(t *testing.T) {
	p := authtest.StartProvider(t)
	d := newDoor(t, auth.Options{OAuth: &auth.OAuth{Issuer: p.Issuer, Scopes: []string{"mcp"}, Claims: []string{"email"}}}, nil)
	res := "https://airlock.test/mcp/github"
	a, b := p.Clients[0], p.Clients[1]

	got := call(d, "github", bearer(p.Token(t, a, res, "mcp")))
	want := broker.Principal{ID: a.ID, Source: "oauth", Groups: a.Groups, ClientID: a.ID, Claims: json.RawMessage(`{"email":"a@example.com"}`)}
	if !got.ok || got.p.ID != want.ID || got.p.Source != want.Source || !slices.Equal(got.p.Groups, want.Groups) || got.p.ClientID != want.ClientID || string(got.p.Claims) != string(want.Claims) {
		t.Errorf("client a: %+v (ok %v, %d %v), want %+v", got.p, got.ok, got.status, got.body, want)
	}
	if got := call(d, "github", bearer(p.Token(t, b, res, "mcp"))); !got.ok || got.p.ID != b.ID || got.p.ClientID != b.ID {
		t.Errorf("client b: %+v (ok %v, %d %v)", got.p, got.ok, got.status, got.body)
	}
	if got := call(d, "github", bearer(p.Token(t, a, "https://airlock.test/mcp/gitlab", "mcp"))); got.ok || got.status != 401 {
		t.Errorf("token for another resource: ok %v, %d %v", got.ok, got.status, got.body)
	}
	if got := call(d, "github", bearer(p.Token(t, a, res, "other"))); got.ok || got.status != 403 || !strings.Contains(got.header, `error="insufficient_scope", error_description="the access token lacks the scope mcp", scope="mcp"`) {
		t.Errorf("token without the scope: ok %v, %d %q", got.ok, got.status, got.header)
	}
	if _, err := p.TryToken(authtest.Client{ID: a.ID, Secret: "wrong"}, res, "mcp"); err == nil {
		t.Error("the provider gave a token for a wrong secret")
	}
}

// TestKeyRotation: a token signed with a key the door has not seen makes
// it refetch the issuer's keys.
func TestKeyRotation(t *testing.T) {
	p := authtest.StartProvider(t, authtest.Alg("ES256"))
	c := &clock{t: time.Now()}
	d := newDoor(t, auth.Options{OAuth: &auth.OAuth{Issuer: p.Issuer}}, c)
	res := "https://airlock.test/mcp/github"
	before := p.Token(t, p.Clients[0], res, "mcp")
	if got := call(d, "github", bearer(before)); !got.ok {
		t.Fatalf("before rotation: %d %v", got.status, got.body)
	}
	p.Rotate(t)
	c.add(11 * time.Second) // past the refetch limit
	if got := call(d, "github", bearer(p.Token(t, p.Clients[1], res, "mcp"))); !got.ok || got.p.ID != p.Clients[1].ID {
		t.Errorf("after rotation: %+v %d %v", got.p, got.status, got.body)
	}
}

// TestIntrospection: an opaque token is checked with the authorization
// server's introspection endpoint, on every request.
func TestIntrospection(t *testing.T) {
	p := authtest.StartProvider(t, authtest.Opaque())
	res := "https://airlock.test/mcp/github"
	// oidc-provider names no sub for a client credentials token it introspects.
	o := &auth.OAuth{Issuer: p.Issuer, PrincipalClaim: "client_id", Scopes: []string{"mcp"}, IntrospectionURL: p.IntrospectionURL(), ClientID: p.Clients[1].ID, ClientSecret: p.Clients[1].Secret}
	d := newDoor(t, auth.Options{OAuth: o}, nil)
	tok := p.Token(t, p.Clients[0], res, "mcp")
	if strings.Count(tok, ".") == 2 {
		t.Fatalf("the provider issued a JWT: %s", tok)
	}
	if got := call(d, "github", bearer(tok)); !got.ok || got.p.ID != p.Clients[0].ID || got.p.ClientID != p.Clients[0].ID || got.p.Source != "oauth" {
		t.Fatalf("opaque token: %+v (ok %v, %d %v)", got.p, got.ok, got.status, got.body)
	}
	if got := call(d, "gitlab", bearer(tok)); got.ok || got.status != 401 {
		t.Errorf("opaque token for another resource: ok %v, %d %v", got.ok, got.status, got.body)
	}
	if got := call(d, "github", bearer("made-up-opaque-token")); got.ok || got.status != 401 || got.body["error_description"] != "the access token is not active" {
		t.Errorf("unknown opaque token: ok %v, %d %v", got.ok, got.status, got.body)
	}
	o.ClientSecret = "wrong"
	bad := newDoor(t, auth.Options{OAuth: o}, nil)
	if got := call(bad, "github", bearer(tok)); got.ok || got.status != 503 {
		t.Errorf("introspection refused to Airlock: ok %v, %d %v", got.ok, got.status, got.body)
	}
	p.Stop()
	if got := call(d, "github", bearer(tok)); got.ok || got.status != 503 {
		t.Errorf("introspection endpoint down: ok %v, %d %v", got.ok, got.status, got.body)
	}
}

// TestSDKReadsTheChallenge: the TypeScript SDK's own parser of
// WWW-Authenticate finds the metadata URL, error and scope in what the
// door sends, for every kind of refusal.
func TestSDKReadsTheChallenge(t *testing.T) {
	node := brokertest.Node(t)
	idp := newKeyIdP(t)
	d := newDoor(t, auth.Options{Tokens: fakeTokens{}, OAuth: &auth.OAuth{Issuer: idp.issuer(), Scopes: []string{"mcp", "tools"}}}, nil)
	var headers []string
	for _, setup := range []func(*http.Request){nil, bearer("airlock_at_nope"), bearer("eyJ.eyJ.sig"), bearer("airlock_at_good")} {
		server := "github"
		if len(headers) == 3 {
			server = "other" // the agent token is for github only: 403
		}
		headers = append(headers, call(d, server, setup).header)
	}
	script := `
import { extractWWWAuthenticateParams } from "@modelcontextprotocol/sdk/client/auth.js";
const out = JSON.parse(process.argv[1]).map((h) => {
  const p = extractWWWAuthenticateParams(new Response(null, { status: 401, headers: { "WWW-Authenticate": h } }));
  return { resourceMetadataUrl: p.resourceMetadataUrl?.href, scope: p.scope, error: p.error };
});
console.log(JSON.stringify(out));`
	in, _ := json.Marshal(headers)
	cmd := exec.Command(node, "--input-type=module", "-e", script, string(in))
	cmd.Dir = filepath.Join(brokertest.RepoRoot(t), "testdata", "node")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var got []struct{ ResourceMetadataURL, Scope, Error string }
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	want := []struct{ ResourceMetadataURL, Scope, Error string }{
		{"https://airlock.test/.well-known/oauth-protected-resource/mcp/github", "mcp tools", ""},
		{"https://airlock.test/.well-known/oauth-protected-resource/mcp/github", "mcp tools", "invalid_token"},
		{"https://airlock.test/.well-known/oauth-protected-resource/mcp/github", "mcp tools", "invalid_token"},
		{"https://airlock.test/.well-known/oauth-protected-resource/mcp/other", "", "insufficient_scope"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("the SDK read\n%+v\nfrom\n%q\nwant\n%+v", got, headers, want)
	}
}
