// Package authtest runs a real OAuth 2.1 authorization server for tests:
// npm's oidc-provider (testdata/node/oidc-provider.mjs) on a loopback
// port, with Node 22 from testdata/node, issuing access tokens by client
// credentials for the resource a client names (RFC 8707).
package authtest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// Client is one OAuth client of the provider, allowed the client
// credentials grant and the scopes "mcp" and "other". Its tokens carry
// Groups as groups and Email as email when set.
type Client struct {
	ID     string   `json:"id"`
	Secret string   `json:"secret"`
	Groups []string `json:"groups,omitempty"`
	Email  string   `json:"email,omitempty"`
}

// Provider is a running authorization server.
type Provider struct {
	// Issuer is its issuer URL, http://127.0.0.1:PORT (no trailing slash).
	Issuer string
	// Clients are its two clients: "agent-a" (groups [agents, team-a])
	// and "agent-b" (groups [agents]), so that a test can allow one client
	// id and deny the other.
	Clients []Client

	cfg  config
	stop func()
}

type config struct {
	Port    int      `json:"port"`
	Format  string   `json:"format"`
	Alg     string   `json:"alg"`
	Clients []Client `json:"clients"`
}

// Option changes what the provider issues.
type Option func(*config)

// Opaque makes it issue opaque access tokens, to be checked with RFC
// 7662 introspection at Issuer+"/token/introspection", instead of JWTs.
func Opaque() Option { return func(c *config) { c.Format = "opaque" } }

// Alg picks the access tokens' signature algorithm: RS256 (the default),
// PS256, ES256 or EdDSA.
func Alg(alg string) Option { return func(c *config) { c.Alg = alg } }

// StartProvider starts an authorization server for the test, stopped at
// its end. Without Node 22 under testdata/node the test is skipped (or
// failed, when the tools are required: brokertest.RequireToolsEnv).
func StartProvider(t testing.TB, opts ...Option) *Provider {
	t.Helper()
	p := &Provider{cfg: config{Format: "jwt", Alg: "RS256", Clients: []Client{
		{ID: "agent-a", Secret: "secret-a-" + fmt.Sprint(time.Now().UnixNano()), Groups: []string{"agents", "team-a"}, Email: "a@example.com"},
		{ID: "agent-b", Secret: "secret-b-" + fmt.Sprint(time.Now().UnixNano()), Groups: []string{"agents"}},
	}}}
	for _, o := range opts {
		o(&p.cfg)
	}
	p.Clients = p.cfg.Clients
	p.start(t)
	return p
}

// Rotate restarts the provider on the same port with new signing keys:
// tokens issued before are signed with a key its JWKS no longer has.
func (p *Provider) Rotate(t testing.TB) {
	t.Helper()
	p.stop()
	p.start(t)
}

// Stop stops the provider now (its JWKS and token endpoint are gone);
// the test's end stops it anyway.
func (p *Provider) Stop() { p.stop() }

func (p *Provider) start(t testing.TB) {
	t.Helper()
	node := brokertest.Node(t)
	script := filepath.Join(brokertest.RepoRoot(t), "testdata", "node", "oidc-provider.mjs")
	// resolved from the script's directory, as the script will
	check := exec.Command(node, "--input-type=module", "-e", `await import("oidc-provider")`)
	check.Dir = filepath.Dir(script)
	if out, err := check.CombinedOutput(); err != nil {
		brokertest.Missing(t, "npm's oidc-provider", "run `npm ci --prefix testdata/node` ("+firstLine(string(out))+")")
	}
	cfg, err := json.Marshal(p.cfg)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(node, script, string(cfg))
	cmd.Dir = filepath.Dir(script)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		stdin.Close() // the script exits when its stdin closes
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		io.Copy(io.Discard, stdout)
		cmd.Wait()
		close(exited)
	}()
	t.Cleanup(p.stop)
	var line string
	select {
	case line = <-first:
	case <-time.After(60 * time.Second):
		t.Fatalf("oidc-provider did not start in 60 s: %s", stderr.String())
	}
	var ready struct {
		Issuer string `json:"issuer"`
	}
	if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.Issuer == "" {
		<-exited
		t.Fatalf("oidc-provider did not start: %q: %s", line, stderr.String())
	}
	if p.Issuer != "" && p.Issuer != ready.Issuer {
		t.Fatalf("oidc-provider restarted as %s, not %s", ready.Issuer, p.Issuer)
	}
	p.Issuer = ready.Issuer
	u, _ := url.Parse(p.Issuer)
	fmt.Sscan(u.Port(), &p.cfg.Port)
}

func firstLine(s string) string {
	l, _, _ := strings.Cut(s, "\n")
	return l
}

// Token gets an access token for resource (RFC 8707) by client
// credentials, asking for scope ("" asks for none).
func (p *Provider) Token(t testing.TB, c Client, resource, scope string) string {
	t.Helper()
	tok, err := p.TryToken(c, resource, scope)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TryToken is Token, returning the provider's refusal as an error.
func (p *Provider) TryToken(c Client, resource, scope string) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}, "resource": {resource}}
	if scope != "" {
		form.Set("scope", scope)
	}
	req, err := http.NewRequest(http.MethodPost, p.Issuer+"/token", strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(c.ID), url.QueryEscape(c.Secret))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var out struct {
		AccessToken string `json:"access_token"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &out) != nil || out.AccessToken == "" {
		return "", fmt.Errorf("token for %s: %s: %s", c.ID, resp.Status, b)
	}
	return out.AccessToken, nil
}

// IntrospectionURL is the provider's RFC 7662 endpoint.
func (p *Provider) IntrospectionURL() string { return p.Issuer + "/token/introspection" }
