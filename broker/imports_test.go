package broker_test

import (
	"go/build"
	"strings"
	"testing"
)

const module = "github.com/airlock-mcp/airlock"

// The approval core knows nothing of MCP's framing and never imports its
// plugins: no package the core's packages depend on, through any chain of
// Airlock's own packages, is the relay, a plugin, or the go-sdk.
func TestCoreImportsNoRelayNorPlugins(t *testing.T) {
	forbidden := []string{
		module + "/relay", module + "/ui", module + "/notifiers", module + "/cmd",
		"github.com/modelcontextprotocol/go-sdk",
	}
	seen := map[string]bool{}
	var walk func(path, from string)
	walk = func(path, from string) {
		if seen[path] {
			return
		}
		seen[path] = true
		for _, f := range forbidden {
			if path == f || strings.HasPrefix(path, f+"/") {
				t.Errorf("%s imports %s", from, path)
				return
			}
		}
		if !strings.HasPrefix(path, module) {
			return // another module: it cannot import Airlock's packages
		}
		pkg, err := build.Import(path, "", 0)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		for _, imp := range pkg.Imports {
			walk(imp, path)
		}
	}
	for _, p := range []string{"broker", "broker/boltstore", "broker/pgstore", "broker/pool", "broker/remote"} {
		walk(module+"/"+p, "")
	}
}
