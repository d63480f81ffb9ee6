package policy

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/types"
)

var update = flag.Bool("update", false, "rewrite golden files")

// Every built-in a policy may call is classified for the memo, from OPA's
// metadata or the lists in builtins.go. An OPA upgrade that brings a
// built-in needing the evaluation's context without saying why fails here:
// until someone reads what it does with it, the memo would refuse every
// policy that calls it.
func TestBuiltinsAreClassified(t *testing.T) {
	for _, b := range capabilities().Builtins {
		if purityOf(b) == unclassified {
			t.Errorf("built-in %s (OPA: nondeterministic=%v, needs the evaluation's context) is not classified: read its implementation in "+
				"opa/v1/topdown; if it uses the context only to stop when cancelled or to cache, add it to contextForSpeed in builtins.go; "+
				"if it reads a clock, randomness, the network, files or the environment, or does something besides answering, "+
				"add it to wallClock or effects, or to reachingOut to take it away from policies", b.Name, b.Nondeterministic)
		}
	}
	for name, list := range map[string]map[string]bool{"contextForSpeed": contextForSpeed, "effects": effects, "wallClock": wallClock, "keptNondeterministic": keptNondeterministic} {
		for n := range list {
			if ast.BuiltinMap[n] == nil {
				t.Errorf("%s names %s, which OPA no longer has", name, n)
			}
		}
	}
}

// testdata/builtins.txt lists every built-in of this OPA with what a policy
// may do with it: removed, or callable and pure or impure for the memo. A
// new OPA that adds a built-in, or changes the metadata of one, fails here
// until the list is rewritten with -update, which is the moment to read what
// the built-in reads: OPA's metadata missed that the x509 verifiers read
// the wall clock, and a new built-in could do the same (add it to
// wallClock). The diff also shows any change in what policies may call.
func TestBuiltinsGolden(t *testing.T) {
	var lines []string
	for _, b := range ast.Builtins {
		class := "removed"
		if !removedBuiltin(b) {
			switch purityOf(b) {
			case pure:
				class = "pure"
			case impure:
				class = "impure"
			default:
				class = "unclassified"
			}
		}
		lines = append(lines, b.Name+" "+class)
	}
	slices.Sort(lines)
	got := strings.Join(slices.Compact(lines), "\n") + "\n"
	path := filepath.Join("testdata", "builtins.txt")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		gotLines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		wantLines := strings.Split(strings.TrimSuffix(string(want), "\n"), "\n")
		var diff []string
		for _, l := range gotLines {
			if !slices.Contains(wantLines, l) {
				diff = append(diff, "+ "+l)
			}
		}
		for _, l := range wantLines {
			if !slices.Contains(gotLines, l) {
				diff = append(diff, "- "+l)
			}
		}
		t.Errorf("OPA's built-ins differ from %s:\n%s\nread what each new or changed built-in reads (see TestBuiltinsAreClassified), then run go test ./policy -run TestBuiltinsGolden -update",
			path, strings.Join(diff, "\n"))
	}
}

// The sandbox follows OPA's metadata: a built-in a later OPA marks
// nondeterministic is taken away from policies without a change here, and
// what builtins.go names stays away whatever the metadata says.
func TestRemovedBuiltinsFollowTheMetadata(t *testing.T) {
	for name, c := range map[string]struct {
		b    *ast.Builtin
		want bool
	}{
		"a new nondeterministic built-in": {&ast.Builtin{Name: "time.now_ms", Nondeterministic: true}, true},
		"a kept one":                      {&ast.Builtin{Name: "io.jwt.decode_verify", Nondeterministic: true}, false},
		"a new net built-in":              {&ast.Builtin{Name: "net.cidr_new", CanSkipBctx: true}, true},
		"http.send unflagged":             {&ast.Builtin{Name: "http.send", CanSkipBctx: true}, true},
		"a pure one":                      {&ast.Builtin{Name: "strings.new", CanSkipBctx: true}, false},
	} {
		if got := removedBuiltin(c.b); got != c.want {
			t.Errorf("%s: removed = %v, want %v", name, got, c.want)
		}
	}
	for _, name := range []string{"http.send", "net.lookup_ip_addr", "net.cidr_contains", "opa.runtime", "time.now_ns", "rand.intn", "uuid.rfc4122", "json.match_schema", "json.verify_schema"} {
		if callable()[name] != nil {
			t.Errorf("a policy may call %s", name)
		}
	}
	for name := range keptNondeterministic {
		if callable()[name] == nil {
			t.Errorf("a policy may no longer call %s", name)
		}
	}
}

// A call the memo cannot prove pure — a function the engine's capabilities
// do not have, however OPA describes it — makes a policy unmemoable.
func TestUnknownFunctionsAreNotRemembered(t *testing.T) {
	for name, b := range map[string]*ast.Builtin{
		"custom.pure":    {Name: "custom.pure", CanSkipBctx: true, Decl: types.NewFunction(types.Args(types.S), types.B)},
		"custom.unknown": {Name: "custom.unknown", Decl: types.NewFunction(types.Args(types.S), types.B)},
	} {
		t.Run(name, func(t *testing.T) {
			c := ast.NewCompiler().WithBuiltins(map[string]*ast.Builtin{b.Name: b}).WithDefaultRegoVersion(ast.RegoV1)
			c.Compile(map[string]*ast.Module{"p.rego": ast.MustParseModuleWithOpts(fmt.Sprintf(`package airlock

decision := {"action": "allow"} if %s(input.tool.name)
`, b.Name), ast.ParserOptions{RegoVersion: ast.RegoV1})})
			if c.Failed() {
				t.Fatal(c.Errors)
			}
			if memoable(c) {
				t.Error("a policy calling an unknown function is memoable")
			}
		})
	}
}
