package ui_test

import (
	"go/parser"
	"go/token"
	"path/filepath"
	"strings"
	"testing"
)

// go doc ./ui printed "templ: version: ..." as the package's synopsis: a
// generated file's header sat right above its package clause. Only doc.go
// may document the package.
func TestOnlyDocGoDocumentsThePackage(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.PackageClauseOnly|parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		switch doc := f.Doc.Text(); {
		case name == "doc.go" && !strings.HasPrefix(doc, "Package ui is "):
			t.Errorf("doc.go's package comment starts %q, want \"Package ui is ...\"", doc[:min(len(doc), 40)])
		case name != "doc.go" && doc != "":
			t.Errorf("%s has a package comment, which go doc shows as the package's: %q (regenerate with go generate ./ui)", name, doc)
		}
	}
}
