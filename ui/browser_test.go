package ui_test

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/ui/uitest"
)

// The browser tests drive Debian's Chromium, headless, through the real
// pages: one browser for the package, one isolated browser context (its
// own cookies) per test.

var (
	browserOnce sync.Once
	browserCtx  context.Context
	browserErr  error
	stopBrowser = func() {}
)

func TestMain(m *testing.M) {
	code := brokertest.Main(m)
	stopBrowser()
	os.Exit(code)
}

// newTab returns a context for a tab in a fresh browser context (its own
// cookies) of the package's browser.
func newTab(t *testing.T) context.Context {
	t.Helper()
	path := uitest.Chromium(t)
	browserOnce.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-chromium-")
		if err != nil {
			browserErr = err
			return
		}
		actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), uitest.AllocatorOptions(path, dir)...)
		ctx, cancel := chromedp.NewContext(actx)
		stopBrowser = func() { cancel(); cancelAlloc(); os.RemoveAll(dir) }
		// The first run starts the browser, and must not have a deadline:
		// the browser lives as long as this context.
		browserErr = chromedp.Do(ctx)
		browserCtx = ctx
	})
	if browserErr != nil {
		t.Fatalf("starting Chromium: %v", browserErr)
	}
	tab, cancel := chromedp.NewContext(browserCtx, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	if err := chromedp.Do(tab); err != nil {
		t.Fatalf("opening a tab: %v", err)
	}
	return uitest.WithTimeout(t, tab)
}

func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	uitest.Do(t, ctx, steps...)
}

func run[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	return uitest.Run(t, ctx, a)
}

// clickNow clicks the first element sel finds, looked up in the page at
// the moment of the click: the live pending list is redrawn when an event
// arrives (and when its stream opens), and a node found a moment earlier
// may be gone by the time chromedp clicks it.
func clickNow(t *testing.T, tab context.Context, sel string) {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); if (!e) return false; e.click(); return true })()`, sel)
	if !run(t, tab, chromedp.Evaluate[bool](js)) {
		t.Fatalf("nothing in the page matches %s", sel)
	}
}

// textNow reads the text of the first element sel finds, in one step in
// the page: the approval's status is swapped for a fresh copy whenever an
// event about it arrives, so a node chromedp looked up a moment earlier
// may be gone by the time it reads it.
func textNow(t *testing.T, tab context.Context, sel string) string {
	t.Helper()
	js := fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.innerText : null })()`, sel)
	got := run(t, tab, chromedp.Evaluate[*string](js))
	if got == nil {
		t.Fatalf("nothing in the page matches %s", sel)
	}
	return *got
}

// signInBrowser opens a login link, as a person opens the one the broker
// printed, and lands on the pending page.
func signInBrowser(t *testing.T, h *harness, tab context.Context) {
	t.Helper()
	link, err := h.ui.NewLoginLink(h.srv.URL, "")
	if err != nil {
		t.Fatal(err)
	}
	do(t, tab, chromedp.Navigate(link.URL), chromedp.WaitVisible(chromedp.CSS("#pending")))
	if loc := run(t, tab, chromedp.Location()); loc != h.url("/") {
		t.Errorf("after sign-in the address is %q, want the token gone", loc)
	}
}

// A held call appears on the open pending page without a reload; approving
// it in the page releases it, and the waiting client gets the upstream's
// result.
func TestBrowserApproveLive(t *testing.T) {
	h := newHarness(t)
	tab := newTab(t)
	signInBrowser(t, h, tab)
	if got := run(t, tab, chromedp.Title()); got != "Pending · Airlock" {
		t.Errorf("title = %q", got)
	}
	run(t, tab, chromedp.Evaluate[int]("window.notReloaded = 1"))
	// The call must reach the page through the event stream, not through
	// the refresh that follows the stream's start.
	do(t, tab, chromedp.WaitReady(chromedp.CSS(`body[data-stream="open"]`)))

	done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/live.txt", "content": "hello"})
	a := h.Held()
	do(t, tab, chromedp.WaitVisible(chromedp.CSS(`#pending a.tool[href="/approvals/`+a.ID+`"]`)))
	if got := run(t, tab, chromedp.Evaluate[int]("window.notReloaded")); got != 1 {
		t.Error("the page reloaded to show the call")
	}
	if got := run(t, tab, chromedp.Title()); got != "(1) Pending · Airlock" {
		t.Errorf("title with one call waiting = %q", got)
	}

	clickNow(t, tab, "#pending a.tool")
	do(t, tab,
		chromedp.WaitVisible(chromedp.CSS("#actions button.approve")),
		chromedp.Click(chromedp.CSS("#actions button.approve")),
		chromedp.WaitVisible(chromedp.CSS("#outcome")),
	)
	if got := textNow(t, tab, "#outcome"); !strings.HasPrefix(got, "You approved this call") {
		t.Errorf("outcome = %q", got)
	}
	if o := outcome(t, done); !released(o) {
		t.Errorf("the client got %+v, want it released", o)
	}
	do(t, tab, chromedp.Navigate(h.url("/")), chromedp.WaitVisible(chromedp.CSS("#pending .empty")))
}

// Denying with a reason in the page: the waiting client reads the reason.
func TestBrowserDenyWithReason(t *testing.T) {
	h := newHarness(t)
	tab := newTab(t)
	signInBrowser(t, h, tab)
	done := h.Call(context.Background(), "write", map[string]any{"path": "/etc/passwd"})
	a := h.Held()
	do(t, tab,
		chromedp.Navigate(h.url("/approvals/"+a.ID)),
		chromedp.WaitVisible(chromedp.CSS("#reason")),
		chromedp.SendKeys(chromedp.CSS("#reason"), "not outside the project"),
		chromedp.Click(chromedp.CSS("#actions button.deny")),
		chromedp.WaitVisible(chromedp.CSS("#outcome")),
	)
	o := outcome(t, done)
	if o.Forward || !strings.Contains(o.Refusal, "denied by admin: not outside the project") {
		t.Errorf("the client read %+v", o)
	}
}

// An open approval page says who decided when someone else does,
// elsewhere, and stops offering actions.
func TestBrowserSeesAnotherDecision(t *testing.T) {
	h := newHarness(t)
	tab := newTab(t)
	signInBrowser(t, h, tab)
	a := h.addApproval(nil)
	do(t, tab, chromedp.Navigate(h.url("/approvals/"+a.ID)), chromedp.WaitVisible(chromedp.CSS("#actions")),
		chromedp.WaitReady(chromedp.CSS(`body[data-stream="open"]`)))
	if _, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "bob", Channel: "slack", Verdict: broker.Approve}); err != nil {
		t.Fatal(err)
	}
	do(t, tab, chromedp.WaitVisible(chromedp.CSS("#outcome")), chromedp.WaitNotPresent(chromedp.CSS("#actions")))
	if got := textNow(t, tab, "#outcome"); !strings.HasPrefix(got, "Already decided by bob at ") {
		t.Errorf("outcome = %q", got)
	}
}

// Markup in a call's arguments is shown as text and never runs.
func TestBrowserScriptInArgumentsIsInert(t *testing.T) {
	h := newHarness(t)
	tab := newTab(t)
	signInBrowser(t, h, tab)
	payload := `</pre><script>window.pwned = 1</script><img src=x onerror="window.pwned = 2">`
	h.Call(context.Background(), "write", map[string]any{"path": payload, "content": "<svg onload=\"window.pwned = 3\"></svg>"})
	a := h.Held()
	do(t, tab, chromedp.Navigate(h.url("/approvals/"+a.ID)), chromedp.WaitVisible(chromedp.CSS("table.args")))
	do(t, tab, chromedp.Navigate(h.url("/")), chromedp.WaitVisible(chromedp.CSS("#pending a.tool")))
	clickNow(t, tab, "#pending a.tool")
	do(t, tab, chromedp.WaitVisible(chromedp.CSS("table.args")))
	checks := map[string]string{
		"typeof window.pwned":                                  "undefined",
		"String(document.scripts.length)":                      "1",
		"String(document.querySelectorAll('img, svg').length)": "0",
		"[...document.querySelectorAll('table.args tr')].find(r => r.querySelector('th').textContent == 'path').querySelector('pre').textContent": payload,
	}
	for expr, want := range checks {
		if got := run(t, tab, chromedp.Evaluate[string](expr)); got != want {
			t.Errorf("%s = %q, want %q", expr, got, want)
		}
	}
}

// A page on another origin of the same site (another port of 127.0.0.1,
// so the SameSite=Strict cookie goes along) posts a decision: the UI
// refuses it, and the approval stays pending.
func TestBrowserCrossOriginPostIsRefused(t *testing.T) {
	h := newHarness(t)
	tab := newTab(t)
	signInBrowser(t, h, tab)
	a := h.addApproval(nil)
	attacker := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `<!DOCTYPE html><form id="f" method="post" action="%s"><input name="verdict" value="approve"></form>
<script>document.getElementById("f").submit()</script>`, h.url("/approvals/"+a.ID+"/decision"))
	}))
	t.Cleanup(attacker.Close)
	do(t, tab, chromedp.Navigate(attacker.URL), chromedp.WaitVisible(chromedp.CSS("h1")))
	if got := run(t, tab, chromedp.Text(chromedp.CSS("h1"))); got != "Cross-origin request refused" {
		t.Errorf("the forged post got %q", got)
	}
	if stored, _ := h.Broker.Approval(context.Background(), a.ID); stored.Status != broker.StatusPending {
		t.Errorf("the forged post changed the approval: %s by %s", stored.Status, stored.DecidedBy)
	}
}

var screenshots = flag.Bool("screenshots", false, "write the README's screenshots, docs/ui-pending.png and docs/ui-approval.png")

// TestScreenshots takes the README's pictures of the pending page and an
// approval, with calls as a filesystem and a GitHub server would make them.
// It runs only with -screenshots.
func TestScreenshots(t *testing.T) {
	if !*screenshots {
		t.Skip("run with -screenshots to write docs/ui-*.png")
	}
	h := newHarness(t)
	tab := newTab(t)
	signInBrowser(t, h, tab)
	now := time.Now().UTC()
	write := h.addApproval(func(a *broker.Approval) {
		a.Server, a.Tool = "filesystem", "write_file"
		a.Arguments = json.RawMessage(`{"path":"/srv/data/reports/q3.md","content":"# Q3 report\n\nRevenue grew 12% on the quarter.\nSee the attached figures for details.\n"}`)
		a.Definition = &broker.ToolDefinition{Name: "write_file", Title: "Write file",
			Description: "Create a new file or completely overwrite an existing file with new content. Use with caution as it will overwrite existing files without warning.",
			Annotations: json.RawMessage(`{"destructiveHint":true,"idempotentHint":true}`),
			InputSchema: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"]}`)}
		a.Principal = broker.Principal{ID: "alice", Source: "os"}
		a.Client = broker.ClientInfo{Name: "claude-code", Version: "2.1.4"}
		a.Session = "8c1f6a0e2b7d4f1c"
		a.Decision.Reason = "write_file writes outside the scratch directory /srv/data/tmp (/srv/data/reports/q3.md); it waits for a person to approve it."
		a.Decision.Risk = "high"
		a.Decision.ID, a.Decision.Revision = "0193c4f2a6d87e41b5a3c0d9e2f41877", "48e7a1c09b3f5d2e6a7c8b9d0e1f2a3b"
		a.Decision.Grantable = &policy.Grantable{Scopes: []string{policy.ScopeExact, policy.ScopeArguments},
			MaxTTL: policy.Duration(8 * time.Hour), KeyArguments: []string{"path"}}
		a.RequestedAt, a.ExpiresAt = now.Add(-95*time.Second), now.Add(8*time.Minute+25*time.Second)
	})
	h.addApproval(func(a *broker.Approval) {
		a.Server, a.Tool = "github", "merge_pull_request"
		a.Arguments = json.RawMessage(`{"owner":"acme","repo":"billing","pullNumber":482,"merge_method":"squash"}`)
		a.Principal = broker.Principal{ID: "alice", Source: "os"}
		a.Decision.Reason = "Merging into a protected branch (main) waits for a release manager."
		a.Decision.Risk = "critical"
		a.RequestedAt, a.ExpiresAt = now.Add(-40*time.Second), now.Add(4*time.Minute+20*time.Second)
	})
	h.addApproval(func(a *broker.Approval) {
		a.Server, a.Tool = "postgres", "query"
		a.Arguments = json.RawMessage(`{"sql":"UPDATE invoices SET status = 'void' WHERE id = 1042"}`)
		a.Principal = broker.Principal{ID: "ci-agent", Source: "token"}
		a.Decision.Reason = "Only a single SELECT passes; this statement waits for a person."
		a.Decision.Risk = "medium"
		a.RequestedAt, a.ExpiresAt = now.Add(-3*time.Minute), now.Add(57*time.Minute)
	})
	do(t, tab, chromedp.Navigate(h.url("/")), chromedp.WaitVisible(chromedp.CSS("#pending tbody tr")))
	shot(t, tab, "ui-pending.png")
	do(t, tab, chromedp.Navigate(h.url("/approvals/"+write.ID)), chromedp.WaitVisible(chromedp.CSS("#actions")))
	shot(t, tab, "ui-approval.png")
}

func shot(t *testing.T, tab context.Context, name string) {
	t.Helper()
	png := run(t, tab, chromedp.Screenshot(chromedp.CSS("body")))
	path := filepath.Join(brokertest.RepoRoot(t), "docs", name)
	if err := os.WriteFile(path, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", path)
}
