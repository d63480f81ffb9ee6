package policy

import (
	"slices"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// decisions remembers a revision's decisions, to answer an input that agrees
// with an earlier one on everything the earlier decision depended on
// without evaluating the policy again.
//
// Why that is sound: a decision is a function of the input alone. The
// policy reaches no network, environment, clock or randomness (the
// built-ins removed in builtins.go), and memoable refuses a policy that
// could still tell two evaluations apart: `with` swaps the input out, and
// every call must be to one of the policy's functions or to a built-in
// that OPA's own metadata (Nondeterministic, CanSkipBctx) shows to be a
// function of its arguments; print, the few built-ins that read a clock or
// draw random numbers, and any built-in nothing classifies are refused. So
// when a new input agrees with an earlier one on every input path the
// earlier evaluation could have read, it would go exactly the same way. The
// paths it could have read: every input reference in every rule it
// entered, and in every rule the rule index considered (the index reads
// the input to choose rules it then does not enter). That over-approximates
// what was read, which costs hits, never correctness. What the engine then
// checks in Go against the input (checkGrant) is checked again on every
// replay.
//
// Most calls repeat a decision: the same read-only tool, the same denied
// tool. Finding one costs about a tenth of an evaluation; learning one
// (tracing which rules ran) costs half an evaluation more, so when few
// decisions repeat, only some misses are traced.
type decisions struct {
	compiler *ast.Compiler

	mu      sync.RWMutex
	shapes  []*shape
	entries int
	deps    map[*ast.Rule][]inputPath // each rule's input references

	hits, misses, traced atomic.Uint64
}

const (
	// maxShapes bounds the distinct sets of paths decisions depend on:
	// a policy has a few ways to decide (read-only, held, denied...).
	maxShapes = 16
	// maxEntries bounds the decisions kept; when full they are dropped
	// and learnt again.
	maxEntries = 4096
)

// An inputPath leads from the input's root through object keys. The root
// itself (an empty path) means the whole input.
type inputPath []string

// shape is one set of paths, with the decisions that depended on exactly
// those paths, found by the hash of the values there.
type shape struct {
	paths  []inputPath
	byHash map[uint64][]memoEntry
}

type memoEntry struct {
	values []ast.Value // at the shape's paths; nil where undefined
	d      Decision
	// grant: d may have passed checkGrant, which reads input.grants in Go,
	// not through a rule; a replay must pass it too.
	grant bool
}

// newDecisions returns the memo for a compiled policy, or nil if the
// policy could tell two evaluations of the same input apart.
func newDecisions(c *ast.Compiler) *decisions {
	if !memoable(c) {
		return nil
	}
	return &decisions{compiler: c, deps: make(map[*ast.Rule][]inputPath)}
}

// memoable reports whether every evaluation of the same input goes the same
// way: no expression swaps the input out (with), and every call is to one
// of the policy's functions or to a built-in that OPA's metadata, or the
// lists in builtins.go, show to be pure. Calls nested in terms and in
// comprehensions count as well as whole expressions.
func memoable(c *ast.Compiler) bool {
	ok := true
	vis := ast.NewGenericVisitor(func(x any) bool {
		switch x := x.(type) {
		case *ast.Expr:
			if len(x.With) > 0 || x.IsCall() && !pureCall(x.Operator()) {
				ok = false
			}
		case ast.Call:
			op, isRef := x[0].Value.(ast.Ref)
			if !isRef || !pureCall(op) {
				ok = false
			}
		}
		return !ok
	})
	for _, m := range c.Modules {
		vis.Walk(m)
	}
	return ok
}

// lookup returns the decision remembered for an input v (built from in)
// that agrees with it on everything that decision depended on, and passes
// the engine's own check of a decision against the input.
func (ds *decisions) lookup(v ast.Value, in *Input) (Decision, bool) {
	ds.mu.RLock()
	defer ds.mu.RUnlock()
	for _, sh := range ds.shapes {
		values, h := sh.read(v)
		for _, e := range sh.byHash[h] {
			if sameValues(e.values, values) && (!e.grant || checkGrant(in, e.d.Grant) == nil) {
				ds.hits.Add(1)
				return e.d.clone(), true
			}
		}
	}
	ds.misses.Add(1)
	return Decision{}, false
}

// tracer returns a tracer to learn the next decision with, or nil when
// this miss is better left untraced: once 64 misses were traced, while
// what was learnt brings fewer hits than a quarter of the misses traced to
// learn it, one miss in 16 is traced, enough to learn what does repeat.
func (ds *decisions) tracer() *ruleTracer {
	if traced := ds.traced.Load(); traced >= 64 && ds.hits.Load()*4 < traced && ds.misses.Load()%16 != 0 {
		return nil
	}
	ds.traced.Add(1)
	return &ruleTracer{rules: make(map[*ast.Rule]bool)}
}

// add remembers d, decided for v (built from in) by an evaluation that t
// traced.
func (ds *decisions) add(v ast.Value, in *Input, t *ruleTracer, d Decision) {
	for _, ref := range t.indexed {
		for _, r := range ds.compiler.GetRulesDynamicWithOpts(ref, ast.RulesOptions{}) {
			t.rules[r] = true
		}
	}
	ds.mu.Lock()
	defer ds.mu.Unlock()
	var paths []inputPath
	for r := range t.rules {
		paths = append(paths, ds.ruleDeps(r)...)
	}
	paths = minimalPaths(paths)
	for _, p := range paths {
		// The whole input, or the clock, differs from call to call:
		// such a decision would never be found again.
		if len(p) == 0 || p[0] == "time" {
			return
		}
	}
	sh := ds.shape(paths)
	if sh == nil {
		return
	}
	if ds.entries >= maxEntries {
		for _, s := range ds.shapes {
			clear(s.byHash)
		}
		ds.entries = 0
	}
	values, h := sh.read(v)
	for _, e := range sh.byHash[h] {
		if sameValues(e.values, values) {
			return // learnt meanwhile by another call
		}
	}
	// A decision without a grant passed checkGrant only if it named the
	// grant "" and the input held a grant with that id: check it again
	// then, rather than tell the two apart.
	grant := d.Grant != "" || checkGrant(in, "") == nil
	sh.byHash[h] = append(sh.byHash[h], memoEntry{values: values, d: d.clone(), grant: grant})
	ds.entries++
}

// shape finds or makes the shape for paths; nil when there are too many.
func (ds *decisions) shape(paths []inputPath) *shape {
	for _, sh := range ds.shapes {
		// Compared path by path: a key holding a separator must not make
		// two sets of paths look alike.
		if slices.EqualFunc(sh.paths, paths, slices.Equal[inputPath]) {
			return sh
		}
	}
	if len(ds.shapes) >= maxShapes {
		return nil
	}
	sh := &shape{paths: paths, byHash: make(map[uint64][]memoEntry)}
	ds.shapes = append(ds.shapes, sh)
	return sh
}

// ruleDeps returns the input paths a rule references anywhere: head, body,
// else branches. Called with ds.mu held.
func (ds *decisions) ruleDeps(r *ast.Rule) []inputPath {
	if p, ok := ds.deps[r]; ok {
		return p
	}
	var paths []inputPath
	var visit func(t *ast.Term) bool
	visit = func(t *ast.Term) bool {
		switch v := t.Value.(type) {
		case ast.Ref:
			if !v.HasPrefix(ast.InputRootRef) {
				return false
			}
			paths = append(paths, refPath(v))
			// input.tool[input.key] also depends on input.key.
			for _, part := range v[1:] {
				ast.WalkTerms(part, visit)
			}
			return true
		case ast.Var:
			if v.Equal(ast.InputRootDocument.Value) {
				paths = append(paths, inputPath{})
			}
		}
		return false
	}
	for x := r; x != nil; x = x.Else {
		ast.WalkTerms(x, visit)
	}
	ds.deps[r] = paths
	return paths
}

// refPath is the path of an input reference up to its first part that is
// not a constant key: input.tool.annotations[k] depends on all of
// input.tool.annotations.
func refPath(ref ast.Ref) inputPath {
	var p inputPath
	for _, t := range ref[1:] {
		s, ok := t.Value.(ast.String)
		if !ok {
			break
		}
		p = append(p, string(s))
	}
	return p
}

// minimalPaths sorts paths and drops those under another: depending on
// input.tool covers input.tool.name.
func minimalPaths(paths []inputPath) []inputPath {
	slices.SortFunc(paths, func(a, b inputPath) int { return slices.Compare(a, b) })
	var out []inputPath
	for _, p := range paths {
		if n := len(out); n > 0 && len(out[n-1]) <= len(p) && slices.Equal(out[n-1], p[:len(out[n-1])]) {
			continue
		}
		out = append(out, p)
	}
	return out
}

// read returns the values at the shape's paths in v, and their hash.
func (sh *shape) read(v ast.Value) ([]ast.Value, uint64) {
	values := make([]ast.Value, len(sh.paths))
	h := uint64(14695981039346656037)
	for i, p := range sh.paths {
		values[i] = valueAt(v, p)
		var vh uint64 = 1
		if values[i] != nil {
			vh = uint64(values[i].Hash())
		}
		h = (h ^ vh) * 1099511628211
	}
	return values, h
}

// valueAt follows path through objects; nil when it leads nowhere.
func valueAt(v ast.Value, path inputPath) ast.Value {
	for _, k := range path {
		obj, ok := v.(ast.Object)
		if !ok {
			return nil
		}
		t := obj.Get(ast.InternedTerm(k))
		if t == nil {
			return nil
		}
		v = t.Value
	}
	return v
}

func sameValues(a, b []ast.Value) bool {
	return slices.EqualFunc(a, b, sameValue)
}

// sameValue reports whether two input values are the same JSON, down to
// how numbers are written: 1 and 1.0 compare equal in Rego, but a policy
// may format them, and "1" and "1.0" are different reasons.
func sameValue(a, b ast.Value) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case ast.Number:
		b, ok := b.(ast.Number)
		return ok && a == b
	case *ast.Array:
		b, ok := b.(*ast.Array)
		if !ok || a.Len() != b.Len() {
			return false
		}
		for i := range a.Len() {
			if !sameValue(a.Elem(i).Value, b.Elem(i).Value) {
				return false
			}
		}
		return true
	case ast.Object:
		b, ok := b.(ast.Object)
		if !ok || a.Len() != b.Len() {
			return false
		}
		same := true
		a.Foreach(func(k, av *ast.Term) {
			if bv := b.Get(k); same && (bv == nil || !sameValue(av.Value, bv.Value)) {
				same = false
			}
		})
		return same
	default:
		return b != nil && a.Compare(b) == 0
	}
}

// ruleTracer notes the rules an evaluation entered and the rule refs the
// index looked up.
type ruleTracer struct {
	rules   map[*ast.Rule]bool
	indexed []ast.Ref
}

func (t *ruleTracer) Enabled() bool               { return true }
func (t *ruleTracer) Config() topdown.TraceConfig { return topdown.TraceConfig{} }

func (t *ruleTracer) TraceEvent(ev topdown.Event) {
	switch ev.Op {
	case topdown.EnterOp:
		if r, ok := ev.Node.(*ast.Rule); ok {
			t.rules[r] = true
		}
	case topdown.IndexOp:
		if ev.Ref != nil {
			t.indexed = append(t.indexed, *ev.Ref)
		}
	}
}

// clone copies d's slices, so that no caller can change a remembered
// decision.
func (d Decision) clone() Decision {
	d.Approvers.SlackUsers = slices.Clone(d.Approvers.SlackUsers)
	d.Approvers.SlackGroups = slices.Clone(d.Approvers.SlackGroups)
	d.Approvers.Users = slices.Clone(d.Approvers.Users)
	d.Redact = slices.Clone(d.Redact)
	if d.Grantable != nil {
		g := *d.Grantable
		g.Scopes = slices.Clone(g.Scopes)
		g.KeyArguments = slices.Clone(g.KeyArguments)
		d.Grantable = &g
	}
	return d
}
