package relay_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// seam is all the relay may use of the approval core: the one value it
// hands over per call, the interface the core calls back, the Outcome, and
// the plain types a Call carries. No approval, vote, grant or hold type.
var seam = []string{
	"Call", "Caller", "Outcome", "ToolDefinition", "ParseDefinition", "Principal", "ClientInfo",
	"ErrClientCancelled", "ErrClientTimedOut", "ErrClientGone", "ErrSessionClosed", "LimitError", "NewRef",
	"HeldCaller", "Pending", // a call answered through a task is told when it is held
}

func TestRelayUsesOnlyTheSeam(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			if x, ok := sel.X.(*ast.Ident); ok && x.Name == "broker" && !slices.Contains(seam, sel.Sel.Name) {
				t.Errorf("%s: the relay uses broker.%s, which is not part of the seam", fset.Position(sel.Pos()), sel.Sel.Name)
			}
			return true
		})
	}
}
