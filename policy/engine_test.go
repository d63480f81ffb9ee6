package policy

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// logs captures the engine's log as JSON lines.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// find returns the first line with msg whose attributes include want.
func (l *logs) find(msg string, want map[string]string) map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, line := range strings.Split(l.buf.String(), "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) != nil || rec["msg"] != msg {
			continue
		}
		match := true
		for k, v := range want {
			if s, _ := rec[k].(string); s != v {
				match = false
			}
		}
		if match {
			return rec
		}
	}
	return nil
}

func (l *logs) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func newEngine(t *testing.T, opts Options) *Engine {
	t.Helper()
	e, err := New(t.Context(), opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(e.Close)
	return e
}

// engineFor serves a policy made of the given files from a temp directory.
func engineFor(t *testing.T, files map[string]string, opts Options) *Engine {
	t.Helper()
	opts.Dir = t.TempDir()
	writeFiles(t, opts.Dir, files)
	return newEngine(t, opts)
}

var callTime = time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)

// call is a typical input; tests change what they need.
func call() *Input {
	args := json.RawMessage(`{"path":"/srv/data/report.txt","content":"hello"}`)
	digest, _ := Digest(args)
	return &Input{
		Server: Server{Name: "filesystem", Transport: "stdio", TrustAnnotations: true},
		Tool: Tool{
			Name:        "write_file",
			Description: "Create a new file or completely overwrite an existing file with new content. Use with caution as it will overwrite existing files without warning. Handles text content with proper encoding. Only works within allowed directories.",
			InputSchema: json.RawMessage(`{"type":"object","properties":{"path":{"type":"string"},"content":{"type":"string"}},"required":["path","content"],"additionalProperties":false,"$schema":"http://json-schema.org/draft-07/schema#"}`),
			Fingerprint: "sha256:00",
			FirstSeen:   callTime.Add(-24 * time.Hour),
		},
		Arguments:       args,
		ArgumentsDigest: digest,
		Principal:       Principal{ID: "alice", Source: "os", Client: Client{Name: "claude-code", Version: "2.1"}},
		Session:         Session{ID: "s1"},
		Time:            callTime,
	}
}

func TestLibraryDecisions(t *testing.T) {
	e := newEngine(t, Options{})
	grant := func(id string, expires time.Time) Grant {
		return Grant{ID: id, Scope: ScopeTool, CreatedBy: "bob", ExpiresAt: expires}
	}
	tests := map[string]struct {
		change func(*Input)
		want   Decision // Action, Risk, Grant, Quorum, Timeout compared
		reason string   // substring
		grants bool     // want Grantable set
	}{
		"read-only tool is allowed": {
			change: func(in *Input) {
				in.Tool.Name, in.Tool.Annotations = "read_file", json.RawMessage(`{"readOnlyHint":true}`)
			},
			want:   Decision{Action: Allow, Risk: RiskLow},
			reason: `"read_file" on server "filesystem" is annotated read-only.`,
		},
		"read-only hint from an untrusted server is held": {
			change: func(in *Input) {
				in.Server.TrustAnnotations = false
				in.Tool.Annotations = json.RawMessage(`{"readOnlyHint":true}`)
			},
			want:   Decision{Action: Hold, Risk: RiskMedium, Quorum: 1, Timeout: Duration(10 * time.Minute)},
			reason: "annotations are not trusted (trust_annotations: false)",
			grants: true,
		},
		"unannotated tool is held at medium risk": {
			change: func(*Input) {},
			want:   Decision{Action: Hold, Risk: RiskMedium, Quorum: 1, Timeout: Duration(10 * time.Minute)},
			reason: `"write_file" on server "filesystem" is not annotated read-only; it waits for a person to approve it.`,
			grants: true,
		},
		"destructive tool is held at high risk": {
			change: func(in *Input) { in.Tool.Annotations = json.RawMessage(`{"destructiveHint":true}`) },
			want:   Decision{Action: Hold, Risk: RiskHigh, Quorum: 1, Timeout: Duration(10 * time.Minute)},
			reason: "annotated destructive",
			grants: true,
		},
		"changed tool is held and not grantable": {
			change: func(in *Input) {
				in.Tool.Changed = true
				in.Tool.Annotations = json.RawMessage(`{"readOnlyHint":true}`)
				in.Grants = []Grant{grant("g1", callTime.Add(time.Hour))}
			},
			want:   Decision{Action: Hold, Risk: RiskHigh, Quorum: 1, Timeout: Duration(10 * time.Minute)},
			reason: "changed its definition since Airlock first saw it",
		},
		"valid grant allows and is named": {
			change: func(in *Input) {
				in.Grants = []Grant{grant("g2", callTime.Add(time.Hour)), grant("g1", callTime.Add(time.Minute))}
			},
			want:   Decision{Action: Allow, Risk: RiskMedium, Grant: "g1"},
			reason: "Allowed by grant g1 from bob.",
		},
		"expired grant is ignored": {
			change: func(in *Input) { in.Grants = []Grant{grant("g1", callTime.Add(-time.Second))} },
			want:   Decision{Action: Hold, Risk: RiskMedium, Quorum: 1, Timeout: Duration(10 * time.Minute)},
			reason: "waits for a person",
			grants: true,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			in := call()
			tt.change(in)
			d := e.Decide(t.Context(), in)
			got := Decision{Action: d.Action, Risk: d.Risk, Grant: d.Grant, Quorum: d.Quorum, Timeout: d.Timeout}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("decision = %+v, want %+v (reason %q)", got, tt.want, d.Reason)
			}
			if !strings.Contains(d.Reason, tt.reason) {
				t.Errorf("reason = %q, want it to contain %q", d.Reason, tt.reason)
			}
			if (d.Grantable != nil) != tt.grants {
				t.Errorf("grantable = %+v, want set: %v", d.Grantable, tt.grants)
			}
			if d.ID == "" || d.Revision != e.Status().Revision || d.Ref != "" {
				t.Errorf("id %q, revision %q, ref %q: want an id, the current revision and no ref", d.ID, d.Revision, d.Ref)
			}
		})
	}
}

func TestDecideFailsClosed(t *testing.T) {
	const header = "package airlock\n\n"
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	tests := map[string]struct {
		policy  string              // body of package airlock
		input   func(*Input) *Input // nil = call()
		ctx     context.Context
		failure string // the failure attribute in the log
		detail  string // substring of the logged error
	}{
		"undefined result": {
			policy:  `decision := {"action": "allow"} if input.tool.name == "never"`,
			failure: "undefined", detail: "undefined",
		},
		"conflicting rules": {
			policy: `decision := {"action": "allow"} if input.tool.name != ""

decision := {"action": "deny"} if input.server.name != ""`,
			failure: "conflict", detail: "produced conflicting values",
		},
		"not an object": {
			policy:  `decision := "allow"`,
			failure: "malformed", detail: "got a string, want an object",
		},
		"missing action": {
			policy:  `decision := {"reason": "no action"}`,
			failure: "malformed", detail: "action is missing",
		},
		"action of the wrong type": {
			policy:  `decision := {"action": true}`,
			failure: "malformed", detail: "action is a boolean, want a string",
		},
		"unknown action": {
			policy:  `decision := {"action": "maybe"}`,
			failure: "malformed", detail: `unknown action "maybe"`,
		},
		"action in the wrong case": {
			policy:  `decision := {"action": "Allow"}`,
			failure: "malformed", detail: `unknown action "Allow"`,
		},
		"unknown risk": {
			policy:  `decision := {"action": "allow", "risk": "severe"}`,
			failure: "malformed", detail: `unknown risk "severe"`,
		},
		"misspelt field": {
			policy:  `decision := {"action": "hold", "quorom": 2}`,
			failure: "malformed", detail: `unknown field "quorom"`,
		},
		"reason of the wrong type": {
			policy:  `decision := {"action": "deny", "reason": ["no"]}`,
			failure: "malformed", detail: "reason is an array, want a string",
		},
		"quorum as a string": {
			policy:  `decision := {"action": "hold", "quorum": "2"}`,
			failure: "malformed", detail: "quorum is a string, want a number",
		},
		"fractional quorum": {
			policy:  `decision := {"action": "hold", "quorum": 1.5}`,
			failure: "malformed", detail: "want a whole number",
		},
		"zero quorum": {
			policy:  `decision := {"action": "hold", "quorum": 0}`,
			failure: "malformed", detail: "quorum must be at least 1",
		},
		"timeout as a number": {
			policy:  `decision := {"action": "hold", "timeout": 600}`,
			failure: "malformed", detail: "timeout is a number, want a duration string",
		},
		"timeout not a duration": {
			policy:  `decision := {"action": "hold", "timeout": "10 minutes"}`,
			failure: "malformed", detail: `duration "10 minutes"`,
		},
		"negative timeout": {
			policy:  `decision := {"action": "hold", "timeout": "-5m"}`,
			failure: "malformed", detail: "negative",
		},
		"approvers of the wrong type": {
			policy:  `decision := {"action": "hold", "approvers": ["alice"]}`,
			failure: "malformed", detail: "approvers is an array, want an object",
		},
		"approver that is not a string": {
			policy:  `decision := {"action": "hold", "approvers": {"users": [1]}}`,
			failure: "malformed", detail: "approvers.users holds 1, want only strings",
		},
		"unknown approver kind": {
			policy:  `decision := {"action": "hold", "approvers": {"email": ["a@b"]}}`,
			failure: "malformed", detail: `unknown field "email" in approvers`,
		},
		"redact outside arguments": {
			policy:  `decision := {"action": "hold", "redact": ["argument.content"]}`,
			failure: "malformed", detail: `redact path "argument.content"`,
		},
		"unknown grant scope": {
			policy:  `decision := {"action": "hold", "grantable": {"scopes": ["forever"]}}`,
			failure: "malformed", detail: `unknown grant scope "forever"`,
		},
		"grantable without scopes": {
			policy:  `decision := {"action": "hold", "grantable": {"max_ttl": "1h"}}`,
			failure: "malformed", detail: "grantable.scopes is empty",
		},
		"grant not in the input": {
			policy:  `decision := {"action": "allow", "grant": "g-made-up"}`,
			failure: "malformed", detail: `grant "g-made-up" is not one of input.grants`,
		},
		"engine field set by the policy": {
			policy:  `decision := {"action": "allow", "decision_id": "x"}`,
			failure: "malformed", detail: "decision_id is set by Airlock",
		},
		"evaluation error": {
			policy:  `decision := {"action": "allow", "reason": sprintf("%d", [to_number(input.tool.name)])}`,
			failure: "error", detail: "to_number",
		},
		"division by zero": {
			policy:  `decision := {"action": "hold", "quorum": count(input.grants) / count(input.grants)}`,
			failure: "error", detail: "divide by zero",
		},
		"evaluation over the time limit": {
			policy: `decision := {"action": "allow"} if {
	count([x | some i in numbers.range(1, 2000); some j in numbers.range(1, 2000); x := i * j]) > 0
}`,
			failure: "timeout", detail: "deadline exceeded",
		},
		"cancelled context": {
			policy:  `decision := {"action": "allow"}`,
			ctx:     cancelled,
			failure: "cancelled", detail: "context canceled",
		},
		"panic": {
			policy:  `decision := {"action": "allow"}`,
			input:   func(*Input) *Input { return nil },
			failure: "panic", detail: "nil pointer",
		},
		"duplicate keys in the arguments": {
			policy: `decision := {"action": "allow"}`,
			input: func(in *Input) *Input {
				in.Arguments = json.RawMessage(`{"path":"/srv/data/tmp/x","path":"/etc/passwd"}`)
				return in
			},
			failure: "input", detail: "duplicate object key",
		},
		"invalid annotations": {
			policy: `decision := {"action": "allow"}`,
			input: func(in *Input) *Input {
				in.Tool.Annotations = json.RawMessage(`{"readOnlyHint":tru}`)
				return in
			},
			failure: "input", detail: "tool.annotations",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			var l logs
			e := engineFor(t, map[string]string{"airlock.rego": header + tt.policy + "\n"}, Options{Logger: l.logger(), Timeout: 50 * time.Millisecond})
			in := call()
			if tt.input != nil {
				in = tt.input(in)
			}
			ctx := tt.ctx
			if ctx == nil {
				ctx = t.Context()
			}
			d := e.Decide(ctx, in)
			if d.Action != Deny {
				t.Fatalf("action = %q, want deny (decision %+v)", d.Action, d)
			}
			if d.Ref == "" || d.Ref != d.ID || d.Reason != "policy error (ref "+d.Ref+")" {
				t.Errorf("ref %q, id %q, reason %q: want the reason to carry the ref, which is the decision id", d.Ref, d.ID, d.Reason)
			}
			if d.Revision != e.Status().Revision {
				t.Errorf("revision = %q, want %q", d.Revision, e.Status().Revision)
			}
			rec := l.find("policy failed closed", map[string]string{"ref": d.Ref})
			if rec == nil {
				t.Fatalf("no log line with ref %s:\n%s", d.Ref, l.String())
			}
			if rec["failure"] != tt.failure {
				t.Errorf("failure = %v, want %s", rec["failure"], tt.failure)
			}
			if msg, _ := rec["err"].(string); !strings.Contains(msg, tt.detail) {
				t.Errorf("logged err = %q, want it to contain %q", msg, tt.detail)
			}
		})
	}
}

func TestNewReportsWhereThePolicyIsWrong(t *testing.T) {
	tests := map[string]struct {
		files map[string]string
		want  []string
	}{
		"parse error": {
			files: map[string]string{"airlock.rego": "package airlock\n\ndecision := {\"action\": \n"},
			want:  []string{"airlock.rego:4:", "rego_parse_error"},
		},
		"strict: unused variable": {
			files: map[string]string{"airlock.rego": "package airlock\n\ndecision := {\"action\": \"allow\"} if {\n\tx := input.tool.name\n}\n"},
			want:  []string{"airlock.rego:4:2:", "assigned var x unused"},
		},
		"type error": {
			files: map[string]string{"airlock.rego": "package airlock\n\ndecision := {\"action\": \"allow\"} if {\n\tcount(7) > 1\n}\n"},
			want:  []string{"airlock.rego:4:2:", "rego_type_error"},
		},
		"error in a subdirectory": {
			files: map[string]string{
				"airlock.rego":     "package airlock\n\ndecision := data.airlock.lib.d\n",
				"lib/helpers.rego": "package airlock.lib\n\nd := {\"action\": \"allow\"} if {\n\tnot_a_function(1)\n}\n",
			},
			want: []string{filepath.Join("lib", "helpers.rego") + ":4:2:", "undefined function not_a_function"},
		},
		"conflicting data files": {
			files: map[string]string{
				"airlock.rego": "package airlock\n\ndecision := {\"action\": \"allow\"}\n",
				"a.json":       `{"x": 1}`,
				"b.yaml":       "x: 2\n",
			},
			want: []string{"merge error", "data.x"},
		},
		"no policy at all": {
			files: map[string]string{"data.json": `{}`},
			want:  []string{"no .rego files"},
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, tt.files)
			_, err := New(t.Context(), Options{Dir: dir})
			if err == nil {
				t.Fatal("New succeeded, want an error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not mention %q:\n%v", w, err)
				}
			}
			if !strings.HasPrefix(err.Error(), "policy: ") {
				t.Errorf("error %q lacks the policy: prefix", err)
			}
		})
	}
	if _, err := New(t.Context(), Options{Dir: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("New on a missing directory succeeded")
	}
}

// TestSandbox checks that no policy can reach the network, the environment,
// the clock or randomness: those built-ins do not compile.
func TestSandbox(t *testing.T) {
	calls := map[string]string{
		"http.send":          `http.send({"method": "GET", "url": "http://example.com"})`,
		"net.lookup_ip_addr": `net.lookup_ip_addr("example.com")`,
		"net.cidr_contains":  `net.cidr_contains("10.0.0.0/8", "10.1.1.1")`,
		"opa.runtime":        `opa.runtime()`,
		"time.now_ns":        `time.now_ns()`,
		"rand.intn":          `rand.intn("seed", 10)`,
		"uuid.rfc4122":       `uuid.rfc4122("seed")`,
		"json.match_schema":  `json.match_schema({}, {"$ref": "http://example.com/s.json"})`,
		"json.verify_schema": `json.verify_schema({"$ref": "file:///etc/passwd"})`,
	}
	for name, expr := range calls {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"airlock.rego": "package airlock\n\ndecision := {\"action\": \"allow\", \"reason\": sprintf(\"%v\", [" + expr + "])}\n"})
			_, err := New(t.Context(), Options{Dir: dir})
			if err == nil || !strings.Contains(err.Error(), "airlock.rego:3:") || !strings.Contains(err.Error(), name) {
				t.Errorf("New = %v, want a compile error naming %s at airlock.rego:3", err, name)
			}
		})
	}
}

func TestDataFilesAreMountedAtTheirDirectory(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"airlock.rego": `package airlock

decision := {"action": "allow", "reason": concat(" ", [data.team, data.config.servers[input.server.name].owner])}
`,
		"team.json":           `{"team": "platform"}`,
		"config/servers.yaml": "servers:\n  filesystem:\n    owner: alice\n",
		"config/ignored.txt":  "not data",
		".git/HEAD.json":      `{"team": "hidden files are skipped"}`,
	})
	e := newEngine(t, Options{Dir: dir})
	if d := e.Decide(t.Context(), call()); d.Reason != "platform alice" {
		t.Fatalf("reason = %q (%+v), want data from both files", d.Reason, d)
	}
	before := e.Status().Revision
	writeFiles(t, dir, map[string]string{"config/servers.yaml": "servers:\n  filesystem:\n    owner: bob\n"})
	if err := e.Reload(t.Context()); err != nil {
		t.Fatal(err)
	}
	if e.Status().Revision == before {
		t.Error("a data change kept the revision")
	}
	if d := e.Decide(t.Context(), call()); d.Reason != "platform bob" {
		t.Errorf("reason after reload = %q", d.Reason)
	}
}

func TestPrintGoesToTheLog(t *testing.T) {
	var l logs
	e := engineFor(t, map[string]string{"airlock.rego": `package airlock

decision := {"action": "allow"} if {
	print("tool is", input.tool.name)
}
`}, Options{Logger: l.logger()})
	e.Decide(t.Context(), call())
	if rec := l.find("policy print", map[string]string{"output": "tool is write_file"}); rec == nil || !strings.Contains(rec["location"].(string), "airlock.rego:4") {
		t.Errorf("print output not logged with its location:\n%s", l.String())
	}
}

// A broken test file must not stop the policy from loading: tests are for
// `airlock policy test`, not for serving.
func TestTestFilesAreNotServed(t *testing.T) {
	var l logs
	e := engineFor(t, map[string]string{
		"airlock.rego":      "package airlock\n\ndecision := {\"action\": \"allow\"}\n",
		"airlock_test.rego": "package airlock_test\n\ntest_broken if {\n\tbroken(\n",
	}, Options{Logger: l.logger()})
	if got := e.Status().Modules; !reflect.DeepEqual(got, []string{filepath.Join(e.Status().Source, "airlock.rego")}) {
		t.Errorf("modules = %v, want only airlock.rego", got)
	}
}

func TestNumbersReachRegoExactly(t *testing.T) {
	e := engineFor(t, map[string]string{"airlock.rego": `package airlock

decision := {"action": "allow"} if {
	input.arguments.n == 9007199254740993
	input.arguments.f == 0.1
} else := {"action": "deny", "reason": sprintf("%v %v", [input.arguments.n, input.arguments.f])}
`}, Options{})
	for args, want := range map[string]Action{
		`{"n": 9007199254740993, "f": 0.1}`:  Allow,
		`{"n": 9007199254740993, "f": 1e-1}`: Allow,
		`{"n": 9007199254740992, "f": 0.1}`:  Deny, // equal as float64
		`{"n": 9007199254740994, "f": 0.1}`:  Deny,
	} {
		in := call()
		in.Arguments = json.RawMessage(args)
		if d := e.Decide(t.Context(), in); d.Action != want {
			t.Errorf("%s: action = %s (%s), want %s", args, d.Action, d.Reason, want)
		}
	}
}

// TestInputValue checks that the hand-built Rego input is exactly what
// encoding/json makes of the struct, so the json tags really are the schema.
func TestInputValue(t *testing.T) {
	in := call()
	in.Tool.Title = "Write file"
	in.Tool.Annotations = json.RawMessage(`{"destructiveHint": true, "n": 12345678901234567890}`)
	in.Tool.OutputSchema = json.RawMessage(`null`)
	in.Grants = []Grant{
		{ID: "g1", Scope: ScopeExact, CreatedBy: "bob", ExpiresAt: callTime.Add(time.Hour), ApprovalID: "a1"},
		{ID: "g2", Scope: ScopeTool, CreatedBy: "carol", ExpiresAt: time.Date(2026, 11, 20, 12, 0, 0, 5, time.FixedZone("", 3600))},
	}
	in.Principal.Groups = []string{"ci", "deploy"}
	in.Principal.ClientID = "claude-code"
	in.Principal.Claims = json.RawMessage(`{"email": "alice@example.com", "acr": 2, "roles": ["dev"]}`)
	zero := &Input{Grants: []Grant{}, Principal: Principal{Groups: []string{}, Claims: json.RawMessage(`{}`)}}
	for name, in := range map[string]*Input{"full": in, "zero": zero} {
		t.Run(name, func(t *testing.T) {
			got, err := in.value(nil)
			if err != nil {
				t.Fatal(err)
			}
			b, err := json.Marshal(in)
			if err != nil {
				t.Fatal(err)
			}
			want, err := ast.ValueFromReader(bytes.NewReader(b))
			if err != nil {
				t.Fatal(err)
			}
			if got.Compare(want) != 0 {
				t.Errorf("value()\n got %v\nwant %v", got, want)
			}
		})
	}
	got, err := (&Input{}).value(nil)
	if err != nil {
		t.Fatal(err)
	}
	if grants, _ := got.(ast.Object).Get(ast.StringTerm("grants")).Value.(*ast.Array); grants == nil || grants.Len() != 0 {
		t.Errorf("nil grants became %v, want []", got.(ast.Object).Get(ast.StringTerm("grants")))
	}
	// A principal without groups or claims: an empty array and an empty
	// object, never null, whether the claims are absent or null.
	for _, claims := range []string{"", "null", " null "} {
		got, err := (&Input{Principal: Principal{Claims: json.RawMessage(claims)}}).value(nil)
		if err != nil {
			t.Fatal(err)
		}
		p := got.(ast.Object).Get(ast.StringTerm("principal")).Value.(ast.Object)
		if g, _ := p.Get(ast.StringTerm("groups")).Value.(*ast.Array); g == nil || g.Len() != 0 {
			t.Errorf("claims %q: groups = %v, want []", claims, p.Get(ast.StringTerm("groups")))
		}
		if c, _ := p.Get(ast.StringTerm("claims")).Value.(ast.Object); c == nil || c.Len() != 0 {
			t.Errorf("claims %q: claims = %v, want {}", claims, p.Get(ast.StringTerm("claims")))
		}
	}
}

// Claims come from a verified token but are still untrusted JSON: the
// engine reads them strictly, and anything but one object fails closed.
func TestPrincipalClaimsFailClosed(t *testing.T) {
	e := newEngine(t, Options{})
	ok := call()
	ok.Tool.Annotations = json.RawMessage(`{"readOnlyHint":true}`)
	ok.Principal.Claims = json.RawMessage(`{"email": "alice@example.com"}`)
	if d := e.Decide(t.Context(), ok); d.Action != Allow {
		t.Fatalf("well-formed claims: %+v, want allow", d)
	}
	for name, claims := range map[string]string{
		"duplicate key": `{"email": "alice@example.com", "email": "root@example.com"}`,
		"array":         `["admin"]`,
		"string":        `"admin"`,
		"not JSON":      `{"email": `,
		"trailing data": `{} {}`,
	} {
		in := call()
		in.Tool.Annotations = json.RawMessage(`{"readOnlyHint":true}`) // the library allows it otherwise
		in.Principal.Claims = json.RawMessage(claims)
		if d := e.Decide(t.Context(), in); d.Action != Deny || !strings.Contains(d.Reason, "policy error") {
			t.Errorf("%s: %+v, want the engine to fail closed", name, d)
		}
		b, _ := json.Marshal(in)
		if d, err := e.DecideJSON(t.Context(), b); err == nil {
			t.Errorf("%s: DecideJSON = %+v, want an error", name, d)
		}
	}
}

// Arguments set already parsed reach Rego as the same value as their bytes
// would; bytes changed afterwards win over the stale parse.
func TestInputSetArguments(t *testing.T) {
	valueOf := func(in *Input) ast.Value {
		t.Helper()
		v, err := in.value(nil)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	raw := call()
	raw.Arguments = json.RawMessage(`{"path": "/srv/x", "n": 1.50}`)
	raw.ArgumentsDigest, _ = Digest(raw.Arguments)
	parsed, err := ParseArguments(raw.Arguments)
	if err != nil {
		t.Fatal(err)
	}
	set := call()
	set.SetArguments(parsed)
	if string(set.Arguments) != string(raw.Arguments) || set.ArgumentsDigest != raw.ArgumentsDigest {
		t.Errorf("SetArguments: %s %s, want %s %s", set.Arguments, set.ArgumentsDigest, raw.Arguments, raw.ArgumentsDigest)
	}
	if got, want := valueOf(set), valueOf(raw); got.Compare(want) != 0 {
		t.Errorf("parsed arguments\n got %v\nwant %v", got, want)
	}
	set.Arguments = json.RawMessage(`{"path": "/etc/passwd"}`)
	path := valueOf(set).(ast.Object).Get(ast.StringTerm("arguments")).Value.(ast.Object).Get(ast.StringTerm("path"))
	if path.Value.Compare(ast.String("/etc/passwd")) != 0 {
		t.Errorf("after the bytes changed, Rego saw path %v", path)
	}
}

func TestDecideJSON(t *testing.T) {
	e := newEngine(t, Options{})
	in := call()
	in.Tool.Annotations = json.RawMessage(`{"readOnlyHint":true}`)
	in.Principal = Principal{ID: "alice", Source: "oauth", Groups: []string{"dev"}, ClientID: "claude-code",
		Claims: json.RawMessage(`{"email": "alice@example.com"}`)}
	b, _ := json.Marshal(in)
	d, err := e.DecideJSON(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	if want := e.Decide(t.Context(), in); d.Action != want.Action || d.Reason != want.Reason {
		t.Errorf("DecideJSON = %+v, Decide = %+v", d, want)
	}

	// A hand-written input: trust_annotations, arguments_digest and time
	// are filled in.
	d, err = e.DecideJSON(t.Context(), []byte(`{
		"server": {"name": "filesystem"},
		"tool": {"name": "read_file", "annotations": {"readOnlyHint": true}},
		"arguments": {"path": "/srv/data/x"}
	}`))
	if err != nil || d.Action != Allow {
		t.Errorf("hand-written input: %+v, %v; want allow (trust_annotations defaults to true)", d, err)
	}

	for name, bad := range map[string]string{
		"not JSON":           `{`,
		"wrong type":         `{"tool": {"changed": "yes"}}`,
		"bad time":           `{"time": "yesterday"}`,
		"duplicate argument": `{"arguments": {"a": 1, "a": 2}}`,
		"bad annotations":    `{"tool": {"annotations": {"a": 1, "a": 2}}}`,
	} {
		if d, err := e.DecideJSON(t.Context(), []byte(bad)); err == nil {
			t.Errorf("%s: DecideJSON = %+v, want an error", name, d)
		}
	}
}

func TestStatusAndRevision(t *testing.T) {
	a := newEngine(t, Options{})
	b := newEngine(t, Options{})
	sa := a.Status()
	if sa.Revision == "" || sa.Revision != b.Status().Revision {
		t.Errorf("revisions %q and %q: the same files must give the same revision", sa.Revision, b.Status().Revision)
	}
	if sa.Source != "embedded" || sa.LoadedAt.IsZero() || sa.LastError != "" {
		t.Errorf("status = %+v", sa)
	}
	if a.timeout != DefaultTimeout {
		t.Errorf("timeout = %v, want the default %v", a.timeout, DefaultTimeout)
	}
	if !reflect.DeepEqual(sa.Modules, []string{"airlock.rego", "baseline.rego", "examples/filesystem.rego", "examples/github.rego", "examples/routing.rego", "examples/sql.rego"}) {
		t.Errorf("modules = %v", sa.Modules)
	}

	// Moving a directory keeps its revision.
	files := map[string]string{"airlock.rego": "package airlock\n\ndecision := {\"action\": \"deny\"}\n"}
	x, y := engineFor(t, files, Options{}), engineFor(t, files, Options{})
	if x.Status().Revision != y.Status().Revision {
		t.Error("the same files in two directories gave two revisions")
	}
}

func TestDecisionJSON(t *testing.T) {
	d := Decision{
		Action:    Hold,
		Risk:      RiskHigh,
		Quorum:    1,
		Timeout:   Duration(90 * time.Minute),
		Grantable: &Grantable{Scopes: []string{ScopeExact}, MaxTTL: Duration(24 * time.Hour)},
		ID:        "id",
		Revision:  "rev",
	}
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"action":"hold","risk":"high","approvers":{"slack_users":[],"slack_groups":[],"users":[]},"quorum":1,"timeout":"1h30m","grantable":{"scopes":["exact"],"max_ttl":"24h"},"decision_id":"id","revision":"rev"}`
	if string(b) != want {
		t.Errorf("json\n got %s\nwant %s", b, want)
	}
	var back Decision
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Timeout != d.Timeout || back.Grantable.MaxTTL != d.Grantable.MaxTTL {
		t.Errorf("round trip = %+v", back)
	}
	for _, bad := range []string{`{"timeout": 600}`, `{"timeout": "10 minutes"}`, `{"timeout": "-1m"}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
	for d, want := range map[Duration]string{0: "0s", Duration(10 * time.Minute): "10m", Duration(24 * time.Hour): "24h", Duration(90 * time.Second): "1m30s", Duration(time.Hour + time.Second): "1h0m1s"} {
		if d.String() != want {
			t.Errorf("Duration(%d).String() = %q, want %q", d, d.String(), want)
		}
	}
}

// Many more decisions at once than there are workers all get their own
// answer: the hand-over neither drops nor mixes them up.
func TestConcurrentDecisions(t *testing.T) {
	e := engineFor(t, map[string]string{"airlock.rego": "package airlock\n\n" + `decision := {"action": "allow", "reason": input.arguments.path}` + "\n"}, Options{})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Go(func() {
			in := call()
			path := fmt.Sprintf("/srv/data/%d", i)
			in.Arguments = json.RawMessage(fmt.Sprintf(`{"path":%q}`, path))
			if d := e.Decide(t.Context(), in); d.Action != Allow || d.Reason != path {
				t.Errorf("call %d: decision %+v, want allow with reason %s", i, d, path)
			}
		})
	}
	wg.Wait()
}

// A closed engine stops its workers; a decision asked of it afterwards
// fails closed instead of waiting for a worker that never comes.
func TestClosedEngineFailsClosed(t *testing.T) {
	var l logs
	e := engineFor(t, map[string]string{"airlock.rego": "package airlock\n\ndecision := {\"action\": \"allow\"}\n"}, Options{Logger: l.logger()})
	if d := e.Decide(t.Context(), call()); d.Action != Allow {
		t.Fatalf("before Close: %+v, want allow", d)
	}
	e.Close()
	e.Close() // twice is fine
	d := e.Decide(t.Context(), call())
	if d.Action != Deny || d.Ref == "" {
		t.Fatalf("after Close: %+v, want a deny with a ref", d)
	}
	if rec := l.find("policy failed closed", map[string]string{"ref": d.Ref}); rec == nil || rec["failure"] != "closed" {
		t.Errorf("log line for ref %s = %v, want failure closed", d.Ref, rec)
	}
}

// The baseline's deny_anonymous setting, given in a data file of the
// policy directory as docs/policy.md says, refuses callers without an
// identity and no one else; without it, they are decided as before.
func TestLibraryDenyAnonymousSetting(t *testing.T) {
	anonymous := Principal{Source: "anonymous"}
	readOnly := func(p Principal) *Input {
		in := call()
		in.Tool.Annotations = json.RawMessage(`{"readOnlyHint":true}`)
		in.Principal = p
		return in
	}
	dir := libraryWith(t, "data.airlock.baseline.decision")
	off := newEngine(t, Options{Dir: dir})
	if d := off.Decide(t.Context(), readOnly(anonymous)); d.Action != Allow {
		t.Errorf("without the setting, an anonymous read: %+v", d)
	}
	writeFiles(t, dir, map[string]string{"settings.json": `{"settings": {"baseline": {"deny_anonymous": true}}}`})
	on := newEngine(t, Options{Dir: dir})
	if d := on.Decide(t.Context(), readOnly(anonymous)); d.Action != Deny || !strings.Contains(d.Reason, "without an identity") {
		t.Errorf("with deny_anonymous, an anonymous read: %+v", d)
	}
	if d := on.Decide(t.Context(), readOnly(Principal{ID: "ci-bot", Source: "token", Groups: []string{"ci"}})); d.Action != Allow {
		t.Errorf("with deny_anonymous, a token's read: %+v", d)
	}
}
