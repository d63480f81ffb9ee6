package brokertest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
)

// RequireToolsEnv, when set to 1, turns a missing test tool from a skip into
// a failure. CI sets it so that integration tests cannot quietly vanish.
const RequireToolsEnv = "AIRLOCK_REQUIRE_TOOLS"

// Missing skips the test because a tool is absent, saying how to get it, or
// fails it when tools are required.
func Missing(t testing.TB, what, how string) {
	t.Helper()
	msg := fmt.Sprintf("%s is not available; %s", what, how)
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatalf("%s (%s=1 requires it)", msg, RequireToolsEnv)
	}
	t.Skip(msg)
}

// RepoRoot is the module's root directory.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}

const npmHint = "run `npm ci --prefix testdata/node` (see .ci/run)"

// Node returns the Node 22 binary installed under testdata/node.
func Node(t testing.TB) string {
	t.Helper()
	p := filepath.Join(RepoRoot(t), "testdata", "node", "node_modules", "node", "bin", "node")
	if _, err := os.Stat(p); err != nil {
		Missing(t, "Node 22", npmHint)
	}
	return p
}

// NPMCommand returns a command line that runs the named bin of an npm
// package installed under testdata/node, with Node 22.
func NPMCommand(t testing.TB, bin string) []string {
	t.Helper()
	node := Node(t)
	script := filepath.Join(RepoRoot(t), "testdata", "node", "node_modules", ".bin", bin)
	if _, err := os.Stat(script); err != nil {
		Missing(t, bin, npmHint)
	}
	return []string{node, script}
}

var (
	everythingOnce sync.Once
	everythingPath string
	everythingErr  error
)

// EverythingServer builds the go-sdk's conformance everything-server from
// the module cache, once per test binary, and returns its path.
func EverythingServer(t testing.TB) string {
	t.Helper()
	everythingOnce.Do(func() {
		dir, err := os.MkdirTemp("", "airlock-everything-")
		if err != nil {
			everythingErr = err
			return
		}
		everythingPath = filepath.Join(dir, "everything-server")
		cmd := exec.Command("go", "build", "-o", everythingPath, "github.com/modelcontextprotocol/go-sdk/conformance/everything-server")
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			everythingErr = fmt.Errorf("building the everything-server: %v\n%s", err, out)
		}
	})
	if everythingErr != nil {
		t.Fatal(everythingErr)
	}
	return everythingPath
}
