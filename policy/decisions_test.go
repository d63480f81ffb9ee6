package policy

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	airlockrego "github.com/airlock-mcp/airlock/rego"
)

// libraryWith copies the embedded library to a directory whose airlock.rego
// decides with entry (a rule such as data.airlock.examples.sql.decision).
func libraryWith(t *testing.T, entry string) string {
	t.Helper()
	dir := t.TempDir()
	err := fs.WalkDir(airlockrego.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".rego") || strings.HasSuffix(path, "_test.rego") {
			return err
		}
		data, err := airlockrego.FS.ReadFile(path)
		if err != nil {
			return err
		}
		if path == "airlock.rego" {
			data = []byte("package airlock\n\ndecision := " + entry + "\n")
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

// randomCall draws a call from a small world of servers, tools,
// annotations, arguments, people, grants and times, small enough that
// calls repeat in part or in whole, as they do in life.
func randomCall(r *rand.Rand) *Input {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	in := call()
	in.Server.Name = pick("filesystem", "github", "postgres", "prod-db", "other")
	in.Server.TrustAnnotations = r.IntN(4) > 0
	in.Tool.Name = pick("read_file", "write_file", "move_file", "list_directory", "merge_pull_request",
		"push_files", "delete_repository", "query", "execute", "get-env")
	in.Tool.Annotations = json.RawMessage(pick(``, `{"readOnlyHint":true}`, `{"destructiveHint":true}`, `{"readOnlyHint":false}`))
	in.Tool.Changed = r.IntN(8) == 0
	in.Arguments = json.RawMessage(pick(
		`{}`,
		`{"path":"/srv/data/report.txt"}`,
		`{"path":"/srv/data/tmp/scratch.txt","content":"x"}`,
		`{"path":"/srv/data/../etc/passwd"}`,
		`{"paths":["/srv/data/a","/etc/shadow"]}`,
		`{"source":"/srv/data/a","destination":"/srv/data/tmp/b"}`,
		`{"owner":"acme","repo":"api","pullNumber":1}`,
		`{"owner":"acme","repo":"api","pullNumber":1.0}`,
		`{"owner":"acme","repo":"api","branch":"release/1.2"}`,
		`{"owner":1,"repo":"api"}`,
		`{"owner":1.0,"repo":"api"}`,
		`{"sql":"SELECT * FROM users"}`,
		`{"sql":"select 1; drop table users"}`,
		`{"query":"DELETE FROM users"}`,
	))
	in.ArgumentsDigest, _ = Digest(in.Arguments)
	in.Principal.ID = pick("alice", "bob")
	in.Session.ID = pick("s1", "s2")
	in.Time = callTime.Add(time.Duration(r.IntN(3)) * time.Hour)
	switch r.IntN(4) {
	case 0:
		in.Grants = []Grant{{ID: "g1", Scope: ScopeTool, CreatedBy: "carol", ExpiresAt: callTime.Add(90 * time.Minute)}}
	case 1:
		in.Grants = []Grant{{ID: "g2", Scope: ScopeExact, CreatedBy: "dave", ExpiresAt: callTime.Add(-time.Minute)}}
	}
	return in
}

// Remembered decisions are the decisions: for the library and every
// example, thousands of calls decided with the memo agree field by field
// with a fresh evaluation of each.
func TestRememberedDecisionsAgreeWithEvaluation(t *testing.T) {
	for _, entry := range []string{
		"data.airlock.baseline.decision",
		"data.airlock.examples.filesystem.decision",
		"data.airlock.examples.github.decision",
		"data.airlock.examples.sql.decision",
		"data.airlock.examples.routing.decision",
	} {
		t.Run(entry, func(t *testing.T) {
			dir := libraryWith(t, entry)
			memo := newEngine(t, Options{Dir: dir})
			fresh := newEngine(t, Options{Dir: dir})
			ds := memo.cur.Load().decisions
			if ds == nil {
				t.Fatal("the library's decisions are not remembered")
			}
			fresh.cur.Load().decisions = nil
			// Most calls come back (an agent works with a few tools on a
			// few things); some are new.
			r := rand.New(rand.NewPCG(1, uint64(len(entry))))
			seen := make([]*Input, 300)
			for i := range seen {
				seen[i] = randomCall(r)
			}
			for i := range 3000 {
				in := seen[r.IntN(len(seen))]
				if r.IntN(10) < 3 {
					in = randomCall(r)
				}
				got, want := memo.Decide(t.Context(), in), fresh.Decide(t.Context(), in)
				if want.Ref != "" {
					t.Fatalf("call %d failed closed: %s", i, want.Reason)
				}
				got.ID, want.ID = "", ""
				if !reflect.DeepEqual(got, want) {
					args, _ := json.Marshal(in)
					t.Fatalf("call %d: remembered %+v\nevaluated %+v\ninput %s", i, got, want, args)
				}
			}
			// Without hits the comparison above would prove nothing.
			if hits := ds.hits.Load(); hits < 1000 {
				t.Errorf("%d of 3000 decisions were remembered ones, want at least 1000", hits)
			}
			t.Logf("%d hits, %d misses, %d shapes, %d entries", ds.hits.Load(), ds.misses.Load(), len(ds.shapes), ds.entries)
		})
	}
}

// A policy that could decide the same input two ways, or must run every
// time, is never remembered.
func TestImpurePoliciesAreNotRemembered(t *testing.T) {
	for name, body := range map[string]string{
		"print":              `decision := {"action": "allow"} if { print(input.tool.name) }`,
		"with":               `decision := d if { d := inner with input.tool.name as "x" }` + "\ninner := {\"action\": \"allow\"}",
		"clock":              `decision := {"action": "allow"} if { [ok, _, _] := io.jwt.decode_verify("x", {"secret": "s"}); not ok }`,
		"random bytes":       `decision := {"action": "allow", "reason": io.jwt.encode_sign({"alg": "ES256"}, {}, {})}`,
		"trace":              `decision := {"action": "allow"} if { trace(input.tool.name) }`,
		"wall clock":         `decision := {"action": "allow"} if { [ok, _] := crypto.x509.parse_and_verify_certificates("x"); not ok }`,
		"in a comprehension": `decision := {"action": "allow", "reason": sprintf("%v", [[ok | some t in input.arguments; [ok, _, _] := io.jwt.decode_verify(t, {"secret": "s"})]])}`,
		"in a function":      `decision := {"action": "allow"} if f(input.tool.name)` + "\nf(x) if { print(x) }",
	} {
		t.Run(name, func(t *testing.T) {
			e := engineFor(t, map[string]string{"airlock.rego": "package airlock\n\n" + body + "\n"}, Options{})
			if e.cur.Load().decisions != nil {
				t.Error("the policy's decisions would be remembered")
			}
		})
	}
}

// A policy calling only pure built-ins, its own functions, and built-ins
// that need the evaluation only to stop or cache, is remembered.
func TestPurePoliciesAreRemembered(t *testing.T) {
	e := engineFor(t, map[string]string{"airlock.rego": `package airlock

decision := {"action": "allow", "reason": concat(",", [lower(input.tool.name), f(input.arguments.path)])} if {
	regex.match("^/srv", input.arguments.path)
	glob.match("/srv/**", ["/"], input.arguments.path)
	count([x | some x in numbers.range(1, 3)]) == 3
}

f(p) := replace(p, "/srv", "")
`}, Options{})
	if e.cur.Load().decisions == nil {
		t.Fatal("the policy's decisions are not remembered")
	}
	for range 2 {
		if d := e.Decide(t.Context(), call()); d.Action != Allow || d.Reason != "write_file,/data/report.txt" {
			t.Fatalf("decision %+v", d)
		}
	}
	if hits := e.cur.Load().decisions.hits.Load(); hits != 1 {
		t.Errorf("%d hits, want 1", hits)
	}
}

// Decisions that depend on the clock or the whole input are not kept, and
// a policy with too many ways to decide stops learning new ones.
func TestRememberedDecisionsStayBounded(t *testing.T) {
	e := engineFor(t, map[string]string{"airlock.rego": `package airlock

decision := {"action": "allow", "reason": input.time} if input.tool.name == "clock"
else := {"action": "allow", "reason": sprintf("%v", [input])} if input.tool.name == "everything"
else := {"action": "deny", "reason": sprintf("%v", [input.arguments[input.tool.name]])}
`}, Options{})
	ds := e.cur.Load().decisions
	for _, tool := range []string{"clock", "everything"} {
		for range 3 {
			in := call()
			in.Tool.Name = tool
			e.Decide(t.Context(), in)
		}
	}
	if ds.entries != 0 || ds.hits.Load() != 0 {
		t.Errorf("%d entries, %d hits: decisions on the clock or the whole input were kept", ds.entries, ds.hits.Load())
	}
	// input.arguments[input.tool.name] depends on all of input.arguments
	// and on input.tool.name.
	for i := range 2 * maxEntries {
		in := call()
		in.Tool.Name = "t"
		in.Arguments = json.RawMessage(fmt.Sprintf(`{"t":%d}`, i%(maxEntries+10)))
		if d := e.Decide(t.Context(), in); d.Reason != fmt.Sprint(i%(maxEntries+10)) {
			t.Fatalf("call %d: reason %q", i, d.Reason)
		}
	}
	if ds.entries > maxEntries || len(ds.shapes) > maxShapes {
		t.Errorf("%d entries in %d shapes, want at most %d and %d", ds.entries, len(ds.shapes), maxEntries, maxShapes)
	}
}

// Rego compares 1 and 1.0 as equal, but a policy may spell them out: the
// two calls below get different reasons, and neither is taken for the other.
func TestRememberedDecisionsKeepNumbersExact(t *testing.T) {
	e := engineFor(t, map[string]string{"airlock.rego": `package airlock

decision := {"action": "allow", "reason": json.marshal(input.arguments.n)}
`}, Options{})
	for range 2 {
		for _, n := range []string{"7", "7.0", "7"} {
			in := call()
			in.Arguments = json.RawMessage(`{"n":` + n + `}`)
			if d := e.Decide(t.Context(), in); d.Reason != n {
				t.Fatalf("n = %s: reason %q", n, d.Reason)
			}
		}
	}
	if hits := e.cur.Load().decisions.hits.Load(); hits < 4 {
		t.Errorf("%d hits, want the repeated calls remembered", hits)
	}
}

// The rule index reads the input to pass over rules it never enters: what
// those rules look at counts too. Here "write" finds no rule for allowed,
// yet "read" must not be given write's decision.
func TestRememberedDecisionsSeeWhatTheIndexRead(t *testing.T) {
	e := engineFor(t, map[string]string{"airlock.rego": `package airlock

decision := {"action": "allow"} if allowed
else := {"action": "deny", "reason": "not allowed"}

allowed if input.tool.name == "read"
`}, Options{})
	for _, c := range []struct {
		tool string
		want Action
	}{{"write", Deny}, {"read", Allow}, {"write", Deny}, {"read", Allow}} {
		in := call()
		in.Tool.Name = c.tool
		if d := e.Decide(t.Context(), in); d.Action != c.want {
			t.Fatalf("%s: %s, want %s", c.tool, d.Action, c.want)
		}
	}
	if hits := e.cur.Load().decisions.hits.Load(); hits != 2 {
		t.Errorf("%d hits, want 2", hits)
	}
}

// Two sets of paths that would join to the same text (a key holding the
// joiner's separator) are kept apart: q's decision for a.b = 2 must not be
// taken from its decision for a.b = 1 filed under p's paths.
func TestRememberedDecisionsKeepLookalikePathsApart(t *testing.T) {
	e := engineFor(t, map[string]string{"airlock.rego": `package airlock

decision := data.airlock.sub[input.tool.name].decision
`, "p.rego": `package airlock.sub.p

decision := {"action": "hold", "reason": "p"} if input.arguments["a\u0000b"] == 1
`, "q.rego": `package airlock.sub.q

decision := {"action": "allow"} if input.arguments.a.b == 1
else := {"action": "deny", "reason": "q"}
`}, Options{})
	for _, c := range []struct {
		tool, args string
		want       Action
	}{{"p", `{"a\u0000b":1}`, Hold}, {"q", `{"a":{"b":1}}`, Allow}, {"q", `{"a":{"b":2}}`, Deny}} {
		in := call()
		in.Tool.Name, in.Arguments = c.tool, json.RawMessage(c.args)
		if d := e.Decide(t.Context(), in); d.Action != c.want {
			t.Fatalf("%s %s: %s, want %s", c.tool, c.args, d.Action, c.want)
		}
	}
}

// A decision that relies on a grant is remembered only with the grants it
// was offered: the engine refuses a grant the input does not hold, whether
// or not the policy read input.grants.
func TestRememberedGrantDecisionsNeedTheGrant(t *testing.T) {
	e := engineFor(t, map[string]string{"airlock.rego": `package airlock

decision := {"action": "allow", "grant": "g1"}
`}, Options{})
	in := call()
	in.Grants = []Grant{{ID: "g1", Scope: ScopeTool, CreatedBy: "bob", ExpiresAt: callTime.Add(time.Hour)}}
	if d := e.Decide(t.Context(), in); d.Action != Allow || d.Grant != "g1" {
		t.Fatalf("with the grant: %+v", d)
	}
	in.Grants = nil
	if d := e.Decide(t.Context(), in); d.Action != Deny {
		t.Errorf("without the grant: %+v, want the malformed decision denied", d)
	}
}

// The memo checks the grant a remembered decision names, as the engine
// does, instead of depending on all of input.grants: a call that holds the
// grant among others gets the remembered decision; one without it does not.
func TestRememberedGrantDecisionsCheckTheGrant(t *testing.T) {
	e := engineFor(t, map[string]string{"airlock.rego": `package airlock

decision := {"action": "allow", "grant": "g1"} if input.tool.name == "write_file"
else := {"action": "allow", "grant": ""}
`}, Options{})
	g := func(id string) Grant {
		return Grant{ID: id, Scope: ScopeTool, CreatedBy: "bob", ExpiresAt: callTime.Add(time.Hour)}
	}
	for i, c := range []struct {
		tool   string
		grants []Grant
		want   Action
	}{
		{"write_file", []Grant{g("g1")}, Allow},
		{"write_file", []Grant{g("g2"), g("g1")}, Allow}, // remembered
		{"write_file", []Grant{g("g2")}, Deny},
		{"write_file", nil, Deny},
		// A grant named "" passes only for an input holding one with that id.
		{"read_file", []Grant{g("")}, Allow},
		{"read_file", []Grant{g("g1")}, Deny},
	} {
		in := call()
		in.Tool.Name, in.Grants = c.tool, c.grants
		if d := e.Decide(t.Context(), in); d.Action != c.want {
			t.Errorf("call %d: %+v, want %s", i, d, c.want)
		}
	}
	if hits := e.cur.Load().decisions.hits.Load(); hits != 1 {
		t.Errorf("%d hits, want 1", hits)
	}
}
