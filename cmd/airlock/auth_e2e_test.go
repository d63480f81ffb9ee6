package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/relay/auth/authtest"
)

// The MCP authorization spec end to end, with real parts only: the
// TypeScript SDK's ClientCredentialsProvider meets Airlock's 401, reads the
// protected resource metadata it names, finds the authorization server
// (oidc-provider), gets an access token for Airlock's resource with client
// credentials, and calls a held tool. The approval says which client
// asked, and a policy that lets one client id in denies the other.
func TestOAuthClientCredentialsEndToEnd(t *testing.T) {
	node := brokertest.Node(t)
	idp := authtest.StartProvider(t)
	policyDir := t.TempDir()
	os.WriteFile(filepath.Join(policyDir, "airlock.rego"), []byte(`package airlock

decision := {"action": "hold", "reason": "agent-a's writes need a person"} if {
	input.principal.source == "oauth"
	input.principal.client_id == "agent-a"
} else := {"action": "deny", "reason": sprintf("only agent-a may call, not %s", [input.principal.client_id])}
`), 0o600)
	up := testServerArgs("echo")
	args, _ := json.Marshal(up[1:])
	base, stderr := startServe(t, fmt.Sprintf(`policy: {dir: %s}
hold_wait: 30s
auth:
  tokens: false
  oauth: {issuer: %q, principal_claim: client_id, scopes: [mcp]}
servers:
  t: {command: %s, args: %s}
`, policyDir, idp.Issuer, up[0], args))

	// The door, as a client without a token meets it.
	resp, err := http.Post(base+"/mcp/t", "application/json", strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{}}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if want := `Bearer resource_metadata="` + base + `/.well-known/oauth-protected-resource/mcp/t"`; resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), want) {
		t.Errorf("without a token: %d %q, want 401 %s", resp.StatusCode, resp.Header.Get("WWW-Authenticate"), want)
	}
	for path, status := range map[string]int{"/mcp/t": http.StatusOK, "/mcp/nosuch": http.StatusNotFound} {
		resp, err := http.Get(base + "/.well-known/oauth-protected-resource" + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("metadata of %s: %d, want %d", path, resp.StatusCode, status)
		}
	}

	call := func(c authtest.Client) <-chan map[string]any {
		script := filepath.Join(brokertest.RepoRoot(t), "testdata", "node", "oauth-client.mjs")
		cmd := airlockCmd(t, script, base+"/mcp/t", c.ID, c.Secret, idp.Issuer, "write", `{"path":"/x"}`)
		cmd.Path, cmd.Args[0] = node, node
		errs := &syncBuffer{}
		cmd.Stderr = errs
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			cmd.Process.Kill()
			cmd.Wait()
			if t.Failed() {
				t.Logf("%s's client said:\n%s", c.ID, errs)
			}
		})
		ch := make(chan map[string]any, 1)
		go func() {
			var m map[string]any
			sc := bufio.NewScanner(out)
			for sc.Scan() {
				if json.Unmarshal(sc.Bytes(), &m) == nil {
					break
				}
			}
			ch <- m
			io.Copy(io.Discard, out)
		}()
		return ch
	}
	wait := func(ch <-chan map[string]any) map[string]any {
		t.Helper()
		select {
		case m := <-ch:
			return m
		case <-time.After(60 * time.Second):
			t.Fatalf("the TypeScript client did not answer\n%s", stderr)
			return nil
		}
	}

	a, b := idp.Clients[0], idp.Clients[1]
	done := call(a)
	select {
	case m := <-done:
		t.Fatalf("%s's call ended before anyone decided: %v\n%s", a.ID, m, stderr)
	case <-time.After(3 * time.Second):
	}
	held := pending(t, 1)[0]
	if held.Requester != a.ID || held.RequesterSource != "oauth" {
		t.Errorf("the approval's requester is %q (%s), want the client %q (oauth)", held.Requester, held.RequesterSource, a.ID)
	}
	if _, err := cli(t, "approve", held.ID); err != nil {
		t.Fatal(err)
	}
	if m := wait(done); m["isError"] != false || !strings.Contains(fmt.Sprint(m["text"]), `wrote {"path":"/x"}`) {
		t.Fatalf("%s's approved call: %v\n%s", a.ID, m, stderr)
	}
	if m := wait(call(b)); m["isError"] != true || !strings.Contains(fmt.Sprint(m["text"]), "only agent-a may call, not agent-b") {
		t.Errorf("%s's call: %v", b.ID, m)
	}
	out, err := cli(t, "audit", "--json", "-n", "50")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, `"principal_source":"oauth"`) {
		t.Errorf("the audit log does not say the callers came through OAuth:\n%s", out)
	}
}

// bearerTransport adds an Authorization header to every request.
type bearerTransport struct{ token string }

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token)
	return http.DefaultTransport.RoundTrip(r)
}

// An agent token through serve, from the CLI that makes it to the policy
// that sees it: the caller is the token's agent, with its groups; a token
// for another server is refused; and once revoked, the session it opened
// is refused at its next request, with the refusal in the audit log.
func TestAgentTokenThroughServe(t *testing.T) {
	policyDir := t.TempDir()
	os.WriteFile(filepath.Join(policyDir, "airlock.rego"), []byte(`package airlock

decision := {"action": "deny", "reason": sprintf("%s via %s in %v", [input.principal.id, input.principal.source, input.principal.groups])}
`), 0o600)
	up := testServerArgs("echo")
	args, _ := json.Marshal(up[1:])
	base, _ := startServe(t, fmt.Sprintf("policy: {dir: %s}\nauth: {tokens: true}\nservers:\n  t: {command: %s, args: %s}\n  u: {command: %s, args: %s}\n",
		policyDir, up[0], args, up[0], args))
	out, err := cli(t, "tokens", "create", "ci-bot", "--server", "t", "--group", "ci")
	if err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(out)
	connect := func(server, token string) (*mcp.ClientSession, error) {
		c := mcp.NewClient(&mcp.Implementation{Name: "token-test", Version: "1"}, nil)
		return c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: base + "/mcp/" + server,
			HTTPClient: &http.Client{Transport: bearerTransport{token}}}, nil)
	}
	if _, err := connect("t", ""); err == nil {
		t.Error("a client without a token got in")
	}
	if _, err := connect("u", token); err == nil {
		t.Error("a token for server t got into server u")
	}
	cs, err := connect("t", token)
	if err != nil {
		t.Fatalf("connect with the agent token: %v", err)
	}
	t.Cleanup(func() { cs.Close() })
	if got := callText(t, cs, "write", map[string]any{}); !strings.Contains(got, `ci-bot via token in ["ci"]`) {
		t.Errorf("the policy saw %q", got)
	}
	if _, err := cli(t, "tokens", "revoke", "ci-bot"); err != nil {
		t.Fatal(err)
	}
	if _, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{}}); err == nil {
		t.Error("the open session's next call went through after its token was revoked")
	}
	audit, err := cli(t, "audit", "--json", "-n", "50")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"token.created"`, `"token.revoked"`, `"request.refused"`} {
		if !strings.Contains(audit, want) {
			t.Errorf("the audit log lacks %s", want)
		}
	}
}
