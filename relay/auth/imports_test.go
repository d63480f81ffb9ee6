package auth_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestDoorImports: of Airlock, the door knows only the core's seam (its
// Principal, its token errors, AuthRefusal); of the rest, JOSE.
func TestDoorImports(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			first, _, _ := strings.Cut(p, "/")
			switch {
			case p == "github.com/airlock-mcp/airlock/broker", strings.HasPrefix(p, "github.com/go-jose/go-jose/v4"):
			case !strings.Contains(first, "."): // the standard library
			default:
				t.Errorf("%s imports %s", name, p)
			}
		}
	}
}
