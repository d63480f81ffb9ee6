package policy

import (
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// TestLibrary runs the shipped library's Rego tests the way Airlock compiles
// policies, and keeps their coverage of the policy at 90% or more.
func TestLibrary(t *testing.T) {
	var out bytes.Buffer
	res, err := RunTests(t.Context(), TestOptions{Output: &out, Coverage: true})
	if err != nil {
		t.Fatal(err)
	}
	if !res.OK() {
		t.Fatalf("library tests failed: %+v\n%s", res, out.String())
	}
	if res.Coverage < 90 {
		t.Errorf("library test coverage %.1f%% is below 90%%; not covered:\n%s", res.Coverage, strings.Join(res.NotCovered, "\n"))
	}
	t.Logf("%d tests passed, coverage %.1f%%", res.Passed, res.Coverage)
	if !strings.Contains(out.String(), "PASS: ") {
		t.Errorf("report lacks the summary:\n%s", out.String())
	}
}

func TestRunTests(t *testing.T) {
	policy := "package airlock\n\ndecision := {\"action\": \"allow\"} if input.tool.name == \"read_file\"\n"
	tests := map[string]struct {
		test    string
		opts    TestOptions
		want    TestResult
		output  []string
		wantErr string
	}{
		"passing": {
			test:   "package airlock_test\n\ntest_read if data.airlock.decision.action == \"allow\" with input as {\"tool\": {\"name\": \"read_file\"}}\n",
			want:   TestResult{Passed: 1},
			output: []string{"PASS: 1/1"},
		},
		"verbose lists every test": {
			test:   "package airlock_test\n\ntest_read if data.airlock.decision.action == \"allow\" with input as {\"tool\": {\"name\": \"read_file\"}}\n",
			opts:   TestOptions{Verbose: true},
			want:   TestResult{Passed: 1},
			output: []string{"data.airlock_test.test_read: PASS"},
		},
		"failing": {
			test:   "package airlock_test\n\ntest_write if data.airlock.decision.action == \"allow\" with input as {\"tool\": {\"name\": \"write_file\"}}\n",
			want:   TestResult{Failed: 1},
			output: []string{"data.airlock_test.test_write: FAIL", "FAIL: 1/1"},
		},
		"filtered": {
			test: "package airlock_test\n\ntest_a if true\n\ntest_b if false\n",
			opts: TestOptions{Run: "test_a"},
			want: TestResult{Passed: 1},
		},
		"built-in errors fail the test as they fail a decision": {
			test:   "package airlock_test\n\ntest_number if to_number(\"x\") == 1\n",
			want:   TestResult{Errored: 1},
			output: []string{"ERROR: 1/1"},
		},
		"sandboxed like the engine": {
			test:    "package airlock_test\n\ntest_time if time.now_ns() > 0\n",
			wantErr: "airlock_test.rego:3:",
		},
		"strict like the engine": {
			test:    "package airlock_test\n\nimport data.unused\n\ntest_a if true\n",
			wantErr: "airlock_test.rego:3:1: rego_compile_error: import data.unused unused",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			writeFiles(t, dir, map[string]string{"airlock.rego": policy, "airlock_test.rego": tt.test})
			var out bytes.Buffer
			tt.opts.Dir, tt.opts.Output = dir, &out
			res, err := RunTests(t.Context(), tt.opts)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want it to mention %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if res.Passed != tt.want.Passed || res.Failed != tt.want.Failed || res.Errored != tt.want.Errored {
				t.Errorf("result = %+v, want %+v\n%s", res, tt.want, out.String())
			}
			for _, o := range tt.output {
				if !strings.Contains(out.String(), o) {
					t.Errorf("output lacks %q:\n%s", o, out.String())
				}
			}
		})
	}
	if _, err := RunTests(t.Context(), TestOptions{Dir: filepath.Join(t.TempDir(), "missing")}); err == nil {
		t.Error("RunTests on a missing directory succeeded")
	}
}
