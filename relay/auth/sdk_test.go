package auth_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/relay/auth"
	"github.com/airlock-mcp/airlock/relay/auth/authtest"
)

// TestSDKClientCredentials: the TypeScript SDK's ClientCredentialsProvider,
// told only the endpoint's URL and its client's credentials, finds its
// way in from the door's 401: the metadata it names, the authorization
// server's metadata, a token for the endpoint's resource, and the retry.
// Behind the door is a minimal MCP endpoint that says who called.
func TestSDKClientCredentials(t *testing.T) {
	node := brokertest.Node(t)
	p := authtest.StartProvider(t)
	// Made before the server starts: its handlers read it.
	door := newDoor(t, auth.Options{
		ResourceURL: func(r *http.Request, server string) string { return "http://" + r.Host + "/mcp/" + server },
		OAuth:       &auth.OAuth{Issuer: p.Issuer, Scopes: []string{"mcp"}},
	}, nil)
	mux := http.NewServeMux()
	mux.Handle("GET /.well-known/oauth-protected-resource/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { door.Metadata().ServeHTTP(w, r) }))
	mux.HandleFunc("/mcp/{name}", func(w http.ResponseWriter, r *http.Request) {
		who, ok := door.Authenticate(w, r, r.PathValue("name"))
		if !ok {
			return
		}
		if r.Method != http.MethodPost {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		b, _ := io.ReadAll(r.Body)
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		json.Unmarshal(b, &req)
		var result any
		switch req.Method {
		case "initialize":
			result = map[string]any{"protocolVersion": "2025-06-18", "capabilities": map[string]any{"tools": map[string]any{}}, "serverInfo": map[string]any{"name": "door", "version": "1"}}
		case "tools/call":
			result = map[string]any{"content": []any{map[string]any{"type": "text", "text": who.Source + ":" + who.ID + ":" + who.ClientID}}}
		default: // notifications
			w.WriteHeader(http.StatusAccepted)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Mcp-Session-Id", "s1")
		json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": req.ID, "result": result})
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	script := `
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { ClientCredentialsProvider } from "@modelcontextprotocol/sdk/client/auth-extensions.js";
const [url, clientId, clientSecret, expectedIssuer] = process.argv.slice(1);
const authProvider = new ClientCredentialsProvider({ clientId, clientSecret, expectedIssuer, scope: "mcp" });
const client = new Client({ name: "door-test", version: "1.0.0" });
try {
  await client.connect(new StreamableHTTPClientTransport(new URL(url), { authProvider }));
  const res = await client.callTool({ name: "whoami", arguments: {} });
  console.log(JSON.stringify({ text: res.content[0].text }));
} catch (e) {
  console.log(JSON.stringify({ error: String(e) }));
}`
	for _, c := range p.Clients {
		cmd := exec.Command(node, "--input-type=module", "-e", script, srv.URL+"/mcp/github", c.ID, c.Secret, p.Issuer)
		cmd.Dir = filepath.Join(brokertest.RepoRoot(t), "testdata", "node")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("node: %v\n%s", err, out)
		}
		if want := `{"text":"oauth:` + c.ID + `:` + c.ID + `"}`; strings.TrimSpace(string(out)) != want {
			t.Errorf("client %s: %s, want %s", c.ID, out, want)
		}
	}
}
