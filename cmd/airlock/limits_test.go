package main

import (
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
)

// serve applies limits: from the config: past children_per_server an
// initialize is refused with 503 naming the key, no child is started for
// it, and /metrics shows the count and the refusal.
func TestServeLimitsChildren(t *testing.T) {
	base, stderr := startServe(t, `limits: {children_per_server: 2}
mcpServers:
  echo:
    command: env
    args: ["AIRLOCK_TEST_ROLE=server", "AIRLOCK_TEST_SERVER=echo", "`+os.Args[0]+`"]
`)
	initialize := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, base+"/mcp/echo", strings.NewReader(
			`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(body)
	}
	for range 2 {
		if status, body := initialize(); status != http.StatusOK {
			t.Fatalf("initialize: %d %s\n%s", status, body, stderr)
		}
	}
	status, body := initialize()
	if status != http.StatusServiceUnavailable || !strings.Contains(body, "limits.children_per_server") {
		t.Fatalf("third initialize: %d %s", status, body)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, want := range []string{
		`airlock_upstream_children{server="echo"} 2`,
		`airlock_sessions 2`,
		`airlock_limit_refusals_total{limit="children_per_server"} 1`,
		`airlock_held_argument_bytes 0`,
	} {
		if !strings.Contains(string(metrics), want+"\n") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
