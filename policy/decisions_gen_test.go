package policy

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
)

// A policyGen writes small random policies: a few helper rules and
// functions reading input paths (constant, dynamic and iterated), compared
// to constants or put through pure built-ins, and an else chain of
// decisions built from them. With impure set, one condition calls
// something the memo must refuse.
type policyGen struct {
	r      *rand.Rand
	helper int // helper rules c0..c<helper-1>
	vars   int // numbers local variables apart
}

// v names a fresh local variable.
func (g *policyGen) v(name string) string {
	g.vars++
	return fmt.Sprintf("%s%d", name, g.vars)
}

func (g *policyGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

// cond is one condition of helper rule i; it may use helpers below i.
func (g *policyGen) cond(i int) string {
	conds := []func() string{
		func() string { return `input.tool.name == ` + g.pick(`"read"`, `"write"`, `"Read"`) },
		func() string { return `lower(input.tool.name) == "read"` },
		func() string { return `startswith(input.arguments.path, ` + g.pick(`"/tmp"`, `"/etc"`) + `)` },
		func() string { return `endswith(input.arguments.path, "a")` },
		func() string { return `regex.match("^/(etc|TMP)", input.arguments.path)` },
		func() string { return `count(input.arguments.tags) ` + g.pick(">", "==", "<") + ` 1` },
		func() string { return `input.arguments.n == ` + g.pick("1", "2", `"1"`) },
		func() string { return `object.get(input.arguments, "n", 0) == 0` },
		func() string { return `input.arguments[input.arguments.k] == 1` },
		func() string { return `input.tool.annotations.readOnlyHint` },
		func() string { return `not input.tool.annotations.readOnlyHint` },
		func() string { return `input.principal.id in {"alice"}` },
		func() string { return `contains(input.server.name, "g")` },
		func() string { v := g.v("gr"); return `some ` + v + ` in input.grants; ` + v + `.id == "g1"` },
		func() string { v := g.v("t"); return `every ` + v + ` in input.arguments.tags { ` + v + ` != "y" }` },
		func() string {
			v := g.v("t")
			return `count([` + v + ` | some ` + v + ` in input.arguments.tags; startswith(` + v + `, "x")]) == 1`
		},
		func() string { return `short(input.tool.name)` },
		func() string { return `input.time == "2026-11-20T10:00:00Z"` },
	}
	if i > 0 {
		j := g.r.IntN(i)
		conds = append(conds,
			func() string { return fmt.Sprintf("c%d", j) },
			func() string { return fmt.Sprintf("not c%d", j) })
	}
	return conds[g.r.IntN(len(conds))]()
}

// decision is the value of one branch of the decision chain.
func (g *policyGen) decision() string {
	return g.pick(
		`{"action": "allow"}`,
		`{"action": "deny", "reason": "no"}`,
		`{"action": "deny", "reason": sprintf("n is %s", [json.marshal(input.arguments.n)])}`,
		`{"action": "hold", "reason": concat(",", input.arguments.tags)}`,
		`{"action": "hold", "approvers": {"users": [input.principal.id]}, "quorum": 1}`,
		`{"action": "allow", "grant": "g1"}`,
		`{"action": "allow", "grant": gid}`,
		`{"action": "hold", "reason": concat(",", sort(reasons))}`,
		`{"action": "allow", "reason": label(input.arguments.path)}`,
	)
}

// impureCond is a condition that holds but that the memo must refuse: it
// prints, traces, swaps the input, reads a clock or draws random numbers.
// (time.now_ns and rand.intn do not compile at all; see TestSandbox.)
func (g *policyGen) impureCond() string {
	ok := g.v("ok")
	return g.pick(
		`print(input.tool.name)`,
		`trace("seen")`,
		`tool == "read" with input.tool.name as "read"`,
		`not tool == "x" with input.arguments as {}`,
		`[`+ok+`, _, _] := io.jwt.decode_verify("x", {"secret": "s"}); not `+ok,
		`io.jwt.encode_sign({"alg": "HS256"}, {}, {"kty": "oct", "k": "c2VjcmV0"}) != ""`,
		`[`+ok+`, _] := crypto.x509.parse_and_verify_certificates("x"); not `+ok,
		`count([1 | print("x")]) == 1`,
	)
}

func (g *policyGen) module(impure bool) string {
	var b strings.Builder
	b.WriteString("package airlock\n\n")
	g.helper = 2 + g.r.IntN(3)
	taint := -1
	if impure {
		taint = g.r.IntN(g.helper)
	}
	for i := range g.helper {
		// One to three definitions: the rule index chooses among them.
		for k := range 1 + g.r.IntN(3) {
			conds := []string{g.cond(i)}
			if g.r.IntN(2) == 0 {
				conds = append(conds, g.cond(i))
			}
			if i == taint && k == 0 {
				conds = append(conds, g.impureCond())
			}
			fmt.Fprintf(&b, "c%d if {\n\t%s\n}\n\n", i, strings.Join(conds, "\n\t"))
		}
	}
	fmt.Fprintf(&b, "gid := gr.id if {\n\tsome gr in input.grants\n\tgr.scope == %s\n}\n\n", g.pick(`"tool"`, `"exact"`))
	fmt.Fprintf(&b, "reasons contains \"r1\" if {\n\t%s\n}\n\nreasons contains \"r2\" if {\n\t%s\n}\n\n", g.cond(g.helper), g.cond(g.helper))
	b.WriteString("short(x) if count(x) < 5\n\ntool := input.tool.name\n\n")
	b.WriteString("label(p) := \"tmp\" if startswith(p, \"/tmp\")\nelse := upper(p)\n\n")
	n := 1 + g.r.IntN(3)
	for k := range n {
		if k == 0 {
			b.WriteString("decision := ")
		} else {
			b.WriteString("else := ")
		}
		fmt.Fprintf(&b, "%s if c%d\n", g.decision(), g.r.IntN(g.helper))
	}
	fmt.Fprintf(&b, "else := %s\n", g.decision())
	return b.String()
}

// input draws a call from a world small enough that calls repeat in part
// or in whole.
func (g *policyGen) input() *Input {
	in := call()
	in.Tool.Name = g.pick("read", "write", "Read", "delete")
	in.Server.Name = g.pick("fs", "gh")
	in.Tool.Annotations = json.RawMessage(g.pick(``, `{}`, `{"readOnlyHint":true}`, `{"readOnlyHint":false}`))
	var args []string
	if g.r.IntN(4) > 0 {
		args = append(args, `"path":`+g.pick(`"/tmp/a"`, `"/etc/passwd"`, `"/TMP/b"`, `"/srv/a"`))
	}
	if g.r.IntN(2) == 0 {
		args = append(args, `"n":`+g.pick(`1`, `1.0`, `2`, `"1"`))
	}
	if g.r.IntN(2) == 0 {
		args = append(args, `"tags":`+g.pick(`[]`, `["x"]`, `["x","y"]`, `["xa","xb"]`))
	}
	if g.r.IntN(3) == 0 {
		args = append(args, `"k":`+g.pick(`"n"`, `"path"`))
	}
	in.Arguments = json.RawMessage("{" + strings.Join(args, ",") + "}")
	in.ArgumentsDigest, _ = Digest(in.Arguments)
	in.Principal.ID = g.pick("alice", "bob")
	grant := func(id, scope string) Grant {
		return Grant{ID: id, Scope: scope, CreatedBy: "carol", ExpiresAt: callTime.Add(time.Hour)}
	}
	switch g.r.IntN(5) {
	case 0:
		in.Grants = []Grant{grant("g1", ScopeTool)}
	case 1:
		in.Grants = []Grant{grant("g2", ScopeExact), grant("g1", ScopeTool)}
	case 2:
		in.Grants = []Grant{grant("g2", ScopeTool)}
	}
	if g.r.IntN(8) == 0 {
		in.Time = callTime.Add(time.Hour)
	}
	return in
}

// Random policies and random calls: every decision the memo hands back is
// the one a fresh evaluation of the same policy makes, down to the reason
// and whether it failed closed; a policy that calls something impure is
// never remembered; and a pure one is, so the comparison is not empty.
func TestRandomPoliciesRememberWhatTheyEvaluate(t *testing.T) {
	g := &policyGen{r: rand.New(rand.NewPCG(14, 6))}
	const policies, calls = 100, 100
	var hits, compared, failed uint64
	for p := range policies {
		impure := p%5 == 4
		src := g.module(impure)
		e := engineFor(t, map[string]string{"airlock.rego": src}, Options{})
		rev := e.cur.Load()
		ds := rev.decisions
		if impure {
			if ds != nil {
				t.Fatalf("policy %d would be remembered:\n%s", p, src)
			}
			e.Close()
			continue
		}
		if ds == nil {
			t.Fatalf("policy %d, pure, is not remembered:\n%s", p, src)
		}
		pool := make([]*Input, 12)
		for i := range pool {
			pool[i] = g.input()
		}
		for i := range calls {
			in := pool[g.r.IntN(len(pool))]
			if g.r.IntN(4) == 0 {
				in = g.input()
			}
			got := e.Decide(t.Context(), in)
			// The same engine and revision, the memo set aside.
			rev.decisions = nil
			want := e.Decide(t.Context(), in)
			rev.decisions = ds
			if !sameDecision(got, want) {
				args, _ := json.Marshal(in)
				t.Fatalf("policy %d, call %d: remembered %+v\nevaluated %+v\ninput %s\npolicy:\n%s", p, i, got, want, args, src)
			}
			compared++
			if want.Ref != "" {
				failed++
			}
		}
		hits += ds.hits.Load()
		e.Close()
	}
	// Without hits the comparisons would prove nothing.
	if hits < compared/4 {
		t.Errorf("%d of %d decisions were remembered ones, want at least a quarter", hits, compared)
	}
	// Nor would they if most calls failed closed (a generator gone wrong).
	if failed > compared/4 {
		t.Errorf("%d of %d decisions failed closed, want at most a quarter", failed, compared)
	}
	t.Logf("%d decisions compared, %d remembered, %d failed closed", compared, hits, failed)
}

// sameDecision compares two decisions but for their ids; two that failed
// closed are alike whatever their reference.
func sameDecision(a, b Decision) bool {
	if a.Ref != "" || b.Ref != "" {
		return a.Ref != "" && b.Ref != ""
	}
	a.ID, b.ID = "", ""
	return reflect.DeepEqual(a, b)
}
