package brokertest

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// RequireToolsEnv, when set to 1, turns a missing test tool from a skip into
// a failure. CI sets it so that integration tests cannot quietly vanish.
const RequireToolsEnv = "AIRLOCK_REQUIRE_TOOLS"

// Missing skips the test because a tool is absent, saying how to get it, or
// fails it when tools are required. Main reports the skips of a package.
func Missing(t testing.TB, what, how string) {
	t.Helper()
	msg := fmt.Sprintf("%s is not available; %s", what, how)
	if os.Getenv(RequireToolsEnv) == "1" {
		t.Fatalf("%s (%s=1 requires it)", msg, RequireToolsEnv)
	}
	missing.add(msg)
	t.Skip(msg)
}

// missing counts the tests Missing skipped, by reason.
var missing = &skips{}

type skips struct {
	mu    sync.Mutex
	order []string
	count map[string]int
}

func (s *skips) add(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.count == nil {
		s.count = map[string]int{}
	}
	if s.count[msg] == 0 {
		s.order = append(s.order, msg)
	}
	s.count[msg]++
}

// report writes one line per reason, or nothing when no test was skipped.
func (s *skips) report(w io.Writer, pkg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, msg := range s.order {
		fmt.Fprintf(w, "%s: skipped %d test(s): %s\n", pkg, s.count[msg], msg)
	}
}

// Main runs a package's tests (call it from TestMain) and then says which
// were skipped for a missing tool and how to install it. go test shows
// nothing of a passing package but its "ok" line, so the summary goes to
// the terminal when there is one, and to stderr otherwise (shown when the
// package fails, or with -v).
func Main(m interface{ Run() int }) int {
	code := m.Run()
	var w io.Writer = os.Stderr
	if tty, err := os.OpenFile("/dev/tty", os.O_WRONLY, 0); err == nil {
		defer tty.Close()
		w = tty
	}
	missing.report(w, packageName())
	return code
}

// packageName is the test binary's package, from its name (pkg.test).
func packageName() string {
	return strings.TrimSuffix(filepath.Base(os.Args[0]), ".test")
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
