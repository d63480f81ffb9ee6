package broker_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestEventsDocumented checks that docs/api.md's table of audit events
// names every Event constant of this package, and nothing else.
func TestEventsDocumented(t *testing.T) {
	var consts []string
	fset := token.NewFileSet()
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				if id, ok := vs.Type.(*ast.Ident); !ok || id.Name != "Event" {
					continue
				}
				for _, v := range vs.Values {
					lit, ok := v.(*ast.BasicLit)
					if !ok {
						t.Fatalf("%s: an Event constant that is not a string literal", fset.Position(v.Pos()))
					}
					s, _ := strconv.Unquote(lit.Value)
					consts = append(consts, s)
				}
			}
		}
	}
	if len(consts) < 10 {
		t.Fatalf("found only %d Event constants (%v); the test no longer reads them", len(consts), consts)
	}

	doc, err := os.ReadFile(filepath.Join("..", "docs", "api.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(doc), "\n| event | meaning |\n")
	if !ok {
		t.Fatal("docs/api.md has no table headed | event | meaning |")
	}
	var documented []string
	name := regexp.MustCompile("`([a-z]+\\.[a-z]+)`")
	for line := range strings.SplitSeq(table, "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		first, _, _ := strings.Cut(strings.TrimPrefix(line, "|"), "|")
		for _, m := range name.FindAllStringSubmatch(first, -1) {
			documented = append(documented, m[1])
		}
	}
	slices.Sort(consts)
	slices.Sort(documented)
	if !slices.Equal(consts, documented) {
		t.Errorf("docs/api.md's event table lists %v; the broker records %v", documented, consts)
	}
}
