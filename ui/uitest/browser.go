// Package uitest runs Debian's Chromium, headless, for tests of the
// approvals page: the page is only known to work when a real browser, with
// its Content-Security-Policy, cookies and script, has used it.
package uitest

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// Chromium returns the path of a Chromium (or Chrome) binary, or skips
// the test, failing it instead when AIRLOCK_REQUIRE_TOOLS=1.
func Chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	brokertest.Missing(t, "Chromium", "install it with `apt-get install chromium` (see .ci/run)")
	return ""
}

// AllocatorOptions start the browser at path headless, quiet (no
// background networking, updates or sync) and with a profile of its own
// in userDataDir.
func AllocatorOptions(path, userDataDir string) []chromedp.ExecAllocatorOption {
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path),
		chromedp.UserDataDir(userDataDir),
		chromedp.DisableGPU,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.WindowSize(1280, 860),
	)
	if os.Geteuid() == 0 {
		opts = append(opts, chromedp.NoSandbox) // Chromium refuses to run as root with its sandbox
	}
	return opts
}

// NewBrowser starts a browser for the test, stopped when it ends, and
// returns a context for its tab whose steps must finish within a minute.
func NewBrowser(t testing.TB) context.Context {
	t.Helper()
	path := Chromium(t)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), AllocatorOptions(path, t.TempDir())...)
	ctx, cancel := chromedp.NewContext(actx)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	// The first run starts the browser, and must not have a deadline: the
	// browser lives as long as this context.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("starting Chromium: %v", err)
	}
	return WithTimeout(t, ctx)
}

// WithTimeout bounds the steps run on a tab that has started.
func WithTimeout(t testing.TB, tab context.Context) context.Context {
	ctx, cancel := context.WithTimeout(tab, time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// Do runs steps in the tab, failing the test on an error.
func Do(t testing.TB, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	if err := chromedp.Do(ctx, steps...); err != nil {
		t.Fatalf("in the browser: %v", err)
	}
}

// Run runs a in the tab and returns its value, failing the test on an
// error.
func Run[T any](t testing.TB, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatalf("in the browser: %v", err)
	}
	return v
}
