package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/airlock-mcp/airlock/policy"
)

// run executes the CLI in-process, as main does, and returns what it wrote.
func run(t *testing.T, stdin string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errOut bytes.Buffer
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(strings.NewReader(stdin))
	root.SetOut(&out)
	root.SetErr(&errOut)
	err = root.ExecuteContext(t.Context())
	return out.String(), errOut.String(), err
}

func cliExitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	default:
		return 1 // main's default
	}
}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

const allowReads = `package airlock

decision := {"action": "allow", "reason": "reads pass"} if {
	input.tool.name == "read_file"
} else := {"action": "hold", "reason": "ask a person"}
`

func TestPolicyTest(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{
		"airlock.rego": allowReads,
		"airlock_test.rego": `package airlock_test

test_read if data.airlock.decision.action == "allow" with input as {"tool": {"name": "read_file"}}

test_write if data.airlock.decision.action == "allow" with input as {"tool": {"name": "write_file"}}
`,
	})
	tests := map[string]struct {
		args     []string
		code     int
		stdout   []string
		notInOut []string
	}{
		"built-in library passes": {
			args:   []string{"policy", "test"},
			stdout: []string{"PASS: "},
		},
		"built-in library coverage": {
			args:   []string{"policy", "test", "--coverage"},
			stdout: []string{"coverage: 100.0% of policy lines"},
		},
		"a failing test exits 2": {
			args:     []string{"policy", "test", dir},
			code:     2,
			stdout:   []string{"data.airlock_test.test_write: FAIL", "PASS: 1/2", "FAIL: 1/2"},
			notInOut: []string{"test_read: PASS"},
		},
		"verbose lists passing tests": {
			args:   []string{"policy", "test", "-v", dir},
			code:   2,
			stdout: []string{"data.airlock_test.test_read: PASS", "FAILURES"},
		},
		"run filters tests": {
			args:   []string{"policy", "test", "--run", "test_read", dir},
			stdout: []string{"PASS: 1/1"},
		},
		"no tests is a failure": {
			args: []string{"policy", "test", "--run", "nothing", dir},
			code: 2,
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			stdout, _, err := run(t, "", tt.args...)
			if got := cliExitCode(err); got != tt.code {
				t.Fatalf("exit code %d (%v), want %d\n%s", got, err, tt.code, stdout)
			}
			for _, s := range tt.stdout {
				if !strings.Contains(stdout, s) {
					t.Errorf("output lacks %q:\n%s", s, stdout)
				}
			}
			for _, s := range tt.notInOut {
				if strings.Contains(stdout, s) {
					t.Errorf("output has %q:\n%s", s, stdout)
				}
			}
		})
	}
}

func TestPolicyCheck(t *testing.T) {
	stdout, _, err := run(t, "", "policy", "check")
	if err != nil || !strings.Contains(stdout, "ok: embedded compiles to revision ") {
		t.Errorf("check of the built-in library: %q, %v", stdout, err)
	}

	dir := t.TempDir()
	write(t, dir, map[string]string{
		"airlock.rego":      "package airlock\n\ndecision := {\"action\": \"allow\"} if {\n\tx := http.send({})\n}\n",
		"airlock_test.rego": "this is not rego, and check ignores tests",
	})
	_, _, err = run(t, "", "policy", "check", dir)
	if cliExitCode(err) != 1 {
		t.Fatalf("check of a broken policy: %v, want exit 1", err)
	}
	if want := filepath.Join(dir, "airlock.rego") + ":4:7: rego_type_error: undefined function http.send"; !strings.Contains(err.Error(), want) {
		t.Errorf("error does not name file:row:col:\n%v\nwant %s", err, want)
	}
}

// A data file defining airlock.decision was loaded without a word, and
// never read: the rule wins.
func TestPolicyCheckReportsDataARuleShadows(t *testing.T) {
	const allow = "package airlock\n\ndecision := {\"action\": \"allow\"}\n"
	tests := map[string]struct{ file, data, want string }{
		"in the package's directory": {"airlock/data.json", `{"decision": {"action": "deny"}}`, "data.airlock.decision"},
		"at the root":                {"data.json", `{"airlock": {"decision": {"action": "deny"}}}`, "data.airlock.decision"},
		"as YAML":                    {"airlock/data.yaml", "decision:\n  action: deny\n", "data.airlock.decision"},
		"above the rule":             {"data.json", `{"airlock": "deny"}`, "data.airlock.decision"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			write(t, dir, map[string]string{"airlock/airlock.rego": allow, tc.file: tc.data, "other/data.json": `{"limits": {"max": 3}}`})
			_, _, err := run(t, "", "policy", "check", dir)
			if cliExitCode(err) != 1 {
				t.Fatalf("check: %v, want exit 1", err)
			}
			want := filepath.Join(dir, tc.file) + " defines " + tc.want + ", which the rule at " + filepath.Join(dir, "airlock/airlock.rego") + ":3 replaces"
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error:\n%v\nwant it to say %s", err, want)
			}
		})
	}
	dir := t.TempDir()
	write(t, dir, map[string]string{"airlock/airlock.rego": allow, "airlock/data.json": `{"limits": {"max": 3}}`})
	if stdout, _, err := run(t, "", "policy", "check", dir); err != nil {
		t.Errorf("data beside the rule, not under it: %q, %v", stdout, err)
	}
}

func TestPolicyEval(t *testing.T) {
	dir := t.TempDir()
	write(t, dir, map[string]string{"airlock.rego": allowReads, "call.json": `{"tool": {"name": "read_file"}}`})
	decode := func(t *testing.T, stdout string) policy.Decision {
		t.Helper()
		var d policy.Decision
		if err := json.Unmarshal([]byte(stdout), &d); err != nil {
			t.Fatalf("output is not a decision: %v\n%s", err, stdout)
		}
		return d
	}

	stdout, _, err := run(t, "", "policy", "eval", "--input", filepath.Join(dir, "call.json"), dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := decode(t, stdout); d.Action != policy.Allow || d.Reason != "reads pass" || d.ID == "" || d.Revision == "" {
		t.Errorf("decision = %+v", d)
	}
	if !strings.Contains(stdout, "\n  \"action\": \"allow\",\n") {
		t.Errorf("output is not indented JSON:\n%s", stdout)
	}

	// Standard input, and the built-in library.
	stdout, _, err = run(t, `{"server": {"name": "fs"}, "tool": {"name": "write_file", "annotations": {"destructiveHint": true}}}`, "policy", "eval", "-i", "-")
	if err != nil {
		t.Fatal(err)
	}
	if d := decode(t, stdout); d.Action != policy.Hold || d.Risk != policy.RiskHigh || d.Quorum != 1 {
		t.Errorf("built-in library decision = %+v", d)
	}

	// A failing policy: the decision is a deny, the detail on stderr.
	write(t, dir, map[string]string{"airlock.rego": "package airlock\n\ndecision := {\"action\": \"alow\"}\n"})
	stdout, stderr, err := run(t, "{}", "policy", "eval", "-i", "-", dir)
	if err != nil {
		t.Fatal(err)
	}
	d := decode(t, stdout)
	if d.Action != policy.Deny || d.Ref == "" || !strings.Contains(stderr, "ref="+d.Ref) || !strings.Contains(stderr, `unknown action \"alow\"`) {
		t.Errorf("failing policy: decision %+v, stderr:\n%s", d, stderr)
	}

	// print() output with -v.
	write(t, dir, map[string]string{"airlock.rego": "package airlock\n\ndecision := {\"action\": \"deny\"} if print(\"hello from rego\")\n"})
	_, stderr, err = run(t, "{}", "policy", "eval", "-v", "-i", "-", dir)
	if err != nil || !strings.Contains(stderr, "hello from rego") {
		t.Errorf("-v did not show print output: %v\n%s", err, stderr)
	}

	for name, args := range map[string][]string{
		"no input flag":   {"policy", "eval", dir},
		"missing file":    {"policy", "eval", "-i", filepath.Join(dir, "nope.json"), dir},
		"invalid input":   {"policy", "eval", "-i", filepath.Join(dir, "airlock.rego"), dir},
		"missing policy":  {"policy", "eval", "-i", filepath.Join(dir, "call.json"), filepath.Join(dir, "nope")},
		"too many args":   {"policy", "eval", "-i", "-", dir, dir},
		"unknown command": {"policy", "frobnicate"},
	} {
		if _, _, err := run(t, "", args...); err == nil {
			t.Errorf("%s: succeeded, want an error", name)
		}
	}
}

func TestPolicyInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "policy")
	stdout, _, err := run(t, "", "policy", "init", dir)
	if err != nil || !strings.Contains(stdout, "wrote 12 files to "+dir) {
		t.Fatalf("init: %q, %v", stdout, err)
	}
	for _, f := range []string{"airlock.rego", "baseline_test.rego", "examples/filesystem.rego", "examples/routing_test.rego"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("init did not write %s: %v", f, err)
		}
	}
	if stdout, _, err := run(t, "", "policy", "test", dir); err != nil || !strings.Contains(stdout, "PASS: ") {
		t.Errorf("the copied library does not pass its tests: %v\n%s", err, stdout)
	}

	// Adopting an example is one line, and the tests still pass.
	entry := filepath.Join(dir, "airlock.rego")
	b, _ := os.ReadFile(entry)
	adopted := strings.Replace(string(b), "decision := data.airlock.baseline.decision", "decision := data.airlock.examples.filesystem.decision", 1)
	write(t, dir, map[string]string{"airlock.rego": adopted})
	stdout, _, err = run(t, `{"server": {"name": "filesystem"}, "tool": {"name": "read_file"}, "arguments": {"path": "/etc/passwd"}}`, "policy", "eval", "-i", "-", dir)
	if err != nil || !strings.Contains(stdout, `"action": "deny"`) {
		t.Errorf("the adopted example does not decide: %v\n%s", err, stdout)
	}
	if stdout, _, err := run(t, "", "policy", "test", dir); err != nil {
		t.Errorf("after adopting the filesystem example: %v\n%s", err, stdout)
	}

	if _, _, err := run(t, "", "policy", "init", dir); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Errorf("second init: %v, want a refusal to overwrite", err)
	}
}

func TestPolicyHelp(t *testing.T) {
	stdout, _, err := run(t, "", "policy", "--help")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"init", "test", "check", "eval", "data.airlock.decision", "docs/policy.md"} {
		if !strings.Contains(stdout, s) {
			t.Errorf("help lacks %q:\n%s", s, stdout)
		}
	}
}
