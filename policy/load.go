package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"

	airlockrego "github.com/airlock-mcp/airlock/rego"
)

// source is where policy files come from: a directory or the embedded library.
type source struct {
	fsys fs.FS  // nil for a directory on disk
	root string // the directory, or "." inside fsys
}

func sourceFor(dir string) source {
	if dir == "" {
		return source{fsys: airlockrego.FS, root: "."}
	}
	return source{root: dir}
}

func (s source) String() string {
	if s.fsys != nil {
		return "embedded"
	}
	return s.root
}

// loaded is a set of policy files, parsed but not compiled.
type loaded struct {
	modules  map[string]*ast.Module // by path as shown to the user
	names    []string               // sorted paths of the non-test modules
	data     map[string]any
	revision string
}

// load reads every *.rego, *.json, *.yaml and *.yml file under the source,
// skipping hidden files and directories (editor and VCS litter) and, unless
// withTests, *_test.rego. Data files are mounted at their directory's path,
// as `opa run` and `opa test` do.
func load(src source, withTests bool) (*loaded, error) {
	if src.fsys == nil {
		if _, err := os.Stat(src.root); err != nil {
			return nil, fmt.Errorf("policy: %w", err)
		}
	}
	fl := loader.NewFileLoader().
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).
		WithCapabilities(capabilities())
	if src.fsys != nil {
		fl = fl.WithFS(src.fsys)
	}
	var dataFiles []string
	res, err := fl.Filtered([]string{src.root}, func(path string, info fs.FileInfo, depth int) bool {
		name := info.Name()
		if depth > 0 && strings.HasPrefix(name, ".") {
			return true
		}
		if info.IsDir() {
			return false
		}
		switch filepath.Ext(name) {
		case ".rego":
			return !withTests && strings.HasSuffix(name, "_test.rego")
		case ".json", ".yaml", ".yml":
			dataFiles = append(dataFiles, path)
			return false
		}
		return true
	})
	if err != nil {
		return nil, fmt.Errorf("policy: load %s:\n%s", src, describe(err))
	}
	if err := shadowedData(src, fl, res, dataFiles); err != nil {
		return nil, fmt.Errorf("policy: load %s: %w", src, err)
	}

	l := &loaded{modules: make(map[string]*ast.Module, len(res.Modules)), data: res.Documents}
	raw := make(map[string][]byte, len(res.Modules))
	for _, f := range res.Modules {
		// f.Name is the path as given; the map key has lost a leading "/".
		l.modules[f.Name] = f.Parsed
		if !strings.HasSuffix(f.Name, "_test.rego") {
			l.names = append(l.names, f.Name)
		}
		raw[f.Name] = f.Raw
	}
	if len(l.names) == 0 {
		return nil, fmt.Errorf("policy: load %s: no .rego files", src)
	}
	slices.Sort(l.names)
	// The revision covers paths relative to the root, so moving a directory
	// keeps its revision, and the data, so a data change is a new revision.
	var raws [][]byte
	for _, path := range l.names {
		rel, err := filepath.Rel(src.root, path)
		if err != nil {
			rel = path
		}
		raws = append(raws, []byte(filepath.ToSlash(rel)), raw[path])
	}
	data, err := json.Marshal(res.Documents) // map keys are sorted
	if err != nil {
		return nil, fmt.Errorf("policy: load %s: data: %w", src, err)
	}
	raws = append(raws, data)
	h := sha256.New()
	for _, b := range raws {
		h.Write([]byte(strconv.Itoa(len(b)) + ":"))
		h.Write(b)
	}
	l.revision = hex.EncodeToString(h.Sum(nil))
	return l, nil
}

// shadowedData refuses data that a rule replaces: a data file defining
// airlock.decision (or anything a rule defines, or a path above one)
// is never read, since the rule wins, so whoever wrote it believes the
// policy does something it does not. The error names the data file and
// the rule.
func shadowedData(src source, fl loader.FileLoader, res *loader.Result, dataFiles []string) error {
	if len(res.Documents) == 0 {
		return nil
	}
	var names []string
	for name, f := range res.Modules {
		if !strings.HasSuffix(f.Name, "_test.rego") {
			names = append(names, name)
		}
	}
	slices.Sort(names)
	for _, name := range names {
		f := res.Modules[name]
		for _, r := range f.Parsed.Rules {
			ref := r.Ref().GroundPrefix()
			if !ref.HasPrefix(ast.DefaultRootRef) { // relative to the package
				ref = f.Parsed.Package.Path.Extend(ref)
			}
			path, ok := rulePath(ref)
			if !ok || !definesPath(res.Documents, path) {
				continue
			}
			where := "the data files"
			for _, df := range dataFiles {
				one, err := fl.All([]string{df})
				if err != nil {
					continue
				}
				rel, err := filepath.Rel(src.root, filepath.Dir(df))
				if err != nil || rel == "." {
					rel = ""
				}
				var mount []string
				if rel != "" {
					mount = strings.Split(filepath.ToSlash(rel), "/")
				}
				if len(mount) <= len(path) && slices.Equal(mount, path[:len(mount)]) && definesPath(one.Documents, path[len(mount):]) {
					where = df
					break
				}
			}
			return fmt.Errorf("%s defines data.%s, which the rule at %s:%d replaces, so the data is never read; rename the key or the rule",
				where, strings.Join(path, "."), f.Name, r.Location.Row)
		}
	}
	return nil
}

// rulePath turns a rule's ground reference (data.airlock.decision) into
// its keys below data.
func rulePath(ref ast.Ref) ([]string, bool) {
	if len(ref) < 2 {
		return nil, false
	}
	path := make([]string, 0, len(ref)-1)
	for _, t := range ref[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			return nil, false
		}
		path = append(path, string(s))
	}
	return path, true
}

// definesPath reports whether doc has a value at path, or a value that is
// not an object somewhere above it (which the rule would replace too).
func definesPath(doc map[string]any, path []string) bool {
	if len(path) == 0 {
		return len(doc) > 0
	}
	cur := doc
	for i, k := range path {
		v, ok := cur[k]
		if !ok {
			return false
		}
		m, isObject := v.(map[string]any)
		if !isObject || i == len(path)-1 {
			return true
		}
		cur = m
	}
	return false
}

// compile compiles l in strict mode with Airlock's capabilities.
func (l *loaded) compile() (*ast.Compiler, error) {
	c := ast.NewCompiler().
		WithStrict(true).
		WithCapabilities(capabilities()).
		WithEnablePrintStatements(true).
		WithDefaultRegoVersion(ast.RegoV1)
	c.Compile(l.modules)
	if c.Failed() {
		return nil, fmt.Errorf("policy: compile:\n%s", describe(c.Errors))
	}
	return c, nil
}

func (l *loaded) store() storage.Store {
	return inmem.NewFromObjectWithOpts(l.data, inmem.OptRoundTripOnWrite(false))
}

// describe lists errors one per line as file:row:col: message, the form
// editors and terminals turn into links.
func describe(err error) string {
	var lines []string
	var walk func(error)
	walk = func(err error) {
		switch e := err.(type) {
		case ast.Errors:
			for _, x := range e {
				walk(x)
			}
		case loader.Errors:
			for _, x := range e {
				walk(x)
			}
		case *ast.Error:
			var b strings.Builder
			if e.Location != nil {
				fmt.Fprintf(&b, "%s:%d:%d: ", e.Location.File, e.Location.Row, e.Location.Col)
			}
			b.WriteString(e.Code + ": " + e.Message)
			lines = append(lines, b.String())
		default:
			if u, ok := err.(interface{ Unwrap() []error }); ok {
				for _, x := range u.Unwrap() {
					walk(x)
				}
				return
			}
			if x := errors.Unwrap(err); x != nil {
				if _, ok := x.(*ast.Error); ok {
					walk(x)
					return
				}
			}
			lines = append(lines, err.Error())
		}
	}
	walk(err)
	return "  " + strings.Join(slices.Compact(lines), "\n  ")
}
