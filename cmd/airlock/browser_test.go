package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/ui/uitest"
)

// The whole path, with real processes and a real browser: `airlock serve`
// on the default policy prints a login link; Chromium opens it; a held
// call appears on the open pending page; approving it there releases the
// call, and the waiting MCP client gets the upstream's answer.
func TestBrowserApprovesThroughServe(t *testing.T) {
	tab := uitest.NewBrowser(t)
	args, _ := json.Marshal(testServerArgs("echo")[1:])
	base, stderr := startServe(t, fmt.Sprintf("ui: {login_link: file}\nservers:\n  echo:\n    command: env\n    args: %s\n", args))
	link := linkFromFile(t, stderr)
	uitest.Do(t, tab, chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("#pending .empty")))

	cs := httpSession(t, base+"/mcp/echo")
	done := make(chan *mcp.CallToolResult, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"path": "/srv/x"}})
		if err != nil {
			res = &mcp.CallToolResult{IsError: true, Content: []mcp.Content{&mcp.TextContent{Text: err.Error()}}}
		}
		done <- res
	}()
	uitest.Do(t, tab,
		chromedp.WaitVisible(chromedp.CSS("#pending a.tool")),
		chromedp.Click(chromedp.CSS("#pending a.tool")),
		chromedp.WaitVisible(chromedp.CSS("#actions button.approve")),
		chromedp.Click(chromedp.CSS("#actions button.approve")),
		chromedp.WaitVisible(chromedp.CSS("#outcome")),
	)
	select {
	case res := <-done:
		if got := resultString(res); res.IsError || !strings.HasPrefix(got, "wrote ") {
			t.Errorf("the client got %q", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the approved call did not return")
	}
	out, err := cli(t, "audit", "--event", "approval.approved", "--json")
	if err != nil || !strings.Contains(out, `"actor":"admin"`) || !strings.Contains(out, `"channel":"web"`) {
		t.Errorf("the audit of the approval: %v\n%s", err, out)
	}
}
