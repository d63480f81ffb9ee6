package brokertest

import (
	"bytes"
	"testing"
)

// A package's skips for missing tools are counted by reason, and reported
// one line each, so that go test ./... can say what it did not run.
func TestMissingIsReported(t *testing.T) {
	t.Setenv(RequireToolsEnv, "") // as on a machine without the tools
	saved := missing
	missing = &skips{}
	t.Cleanup(func() { missing = saved })
	for range 2 {
		t.Run("chromium", func(t *testing.T) { Missing(t, "Chromium", "apt-get install chromium") })
	}
	t.Run("node", func(t *testing.T) { Missing(t, "Node 22", "npm ci --prefix testdata/node") })
	var out bytes.Buffer
	missing.report(&out, "ui")
	want := "ui: skipped 2 test(s): Chromium is not available; apt-get install chromium\n" +
		"ui: skipped 1 test(s): Node 22 is not available; npm ci --prefix testdata/node\n"
	if out.String() != want {
		t.Errorf("report =\n%s\nwant\n%s", out.String(), want)
	}
	var none bytes.Buffer
	(&skips{}).report(&none, "ui")
	if none.Len() != 0 {
		t.Errorf("a package without skips reported %q", none.String())
	}
}
