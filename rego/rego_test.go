package rego_test

import (
	"bytes"
	"io/fs"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/format"

	"github.com/airlock-mcp/airlock/rego"
)

// TestLibraryFiles keeps the library's house rules: every policy file has a
// test file beside it, and every file is formatted as `opa fmt` would.
// policy.TestLibrary runs the tests and checks their coverage.
func TestLibraryFiles(t *testing.T) {
	files, err := fs.Glob(rego.FS, "*.rego")
	if err != nil {
		t.Fatal(err)
	}
	examples, err := fs.Glob(rego.FS, "examples/*.rego")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, examples...)
	if len(files) < 12 {
		t.Fatalf("embedded library has only %v", files)
	}
	has := make(map[string]bool)
	for _, f := range files {
		has[f] = true
	}
	for _, f := range files {
		if test, ok := strings.CutSuffix(f, ".rego"); ok && !strings.HasSuffix(f, "_test.rego") && !has[test+"_test.rego"] {
			t.Errorf("%s has no %s_test.rego", f, test)
		}
		src, err := fs.ReadFile(rego.FS, f)
		if err != nil {
			t.Fatal(err)
		}
		formatted, err := format.Source(f, src)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if !bytes.Equal(formatted, src) {
			t.Errorf("%s is not formatted; run: go tool opa fmt -w rego/", f)
		}
	}
}
