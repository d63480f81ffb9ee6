package ui_test

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/relay"
)

// The approver's pages name an agent's session by its SessionRef: the
// Mcp-Session-Id itself would let whoever reads the page act in the
// session (withdraw its held calls, say).
func TestPagesShowSessionRefOnly(t *testing.T) {
	h := newHarness(t)
	h.call("write", map[string]any{"path": "/x", "content": "y"})
	a := h.held()
	id := h.cs.ID()
	if id == "" {
		t.Fatal("the MCP client has no session id")
	}
	ref := relay.SessionRef(id)
	c := h.signIn("")
	pages := []string{"/", "/approvals/" + a.ID, "/history", "/history/1"}
	for _, p := range pages {
		req, _ := http.NewRequest(http.MethodGet, h.url(p), nil)
		resp, err := c.c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("%s: %d", p, resp.StatusCode)
		}
		if strings.Contains(string(body), id) {
			t.Errorf("%s shows the session id", p)
		}
	}
	_, doc := c.get("/approvals/" + a.ID)
	if !strings.Contains(doc.Text(), ref) {
		t.Errorf("the approval page does not name the session %s", ref)
	}
}
