package policy

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestOptions configure RunTests.
type TestOptions struct {
	Dir     string    // policy directory; "" = the embedded library
	Output  io.Writer // receives the report, in `opa test`'s format; nil = discard
	Verbose bool      // list every test, and print trace notes of failures
	Run     string    // only tests whose name matches this regular expression
	// Coverage measures which lines of the policy (not of the tests) ran.
	Coverage bool
}

// TestResult counts test outcomes.
type TestResult struct {
	Passed, Failed, Errored, Skipped int
	// Coverage is the percentage of policy lines (outside *_test.rego) that
	// the tests evaluated; set only when TestOptions.Coverage is.
	Coverage float64
	// NotCovered lists uncovered ranges as file:row-row, for the same case.
	NotCovered []string
}

// OK reports whether every test passed and at least one ran.
func (r TestResult) OK() bool { return r.Failed == 0 && r.Errored == 0 && r.Passed > 0 }

// RunTests runs the Rego tests (rules named test_*) in the policy and its
// *_test.rego files with OPA's tester, compiled exactly as the engine
// compiles policies: strict, with the same restricted built-ins. The error
// is for a policy that does not load or compile, with file:row:col.
func RunTests(ctx context.Context, opts TestOptions) (TestResult, error) {
	out := opts.Output
	if out == nil {
		out = io.Discard
	}
	src := sourceFor(opts.Dir)
	l, err := load(src, true)
	if err != nil {
		return TestResult{}, err
	}
	compiler := ast.NewCompiler().
		WithStrict(true).
		WithCapabilities(capabilities()).
		WithEnablePrintStatements(true).
		WithDefaultRegoVersion(ast.RegoV1)

	store := l.store()
	var cov *cover.Cover
	runner := tester.NewRunner().
		SetCompiler(compiler).
		SetStore(store).
		SetModules(l.modules).
		CapturePrintOutput(true).
		EnableTracing(opts.Verbose).
		RaiseBuiltinErrors(true). // as the engine does: a built-in error is a failure, not "undefined"
		SetTimeout(10 * time.Second).
		Filter(opts.Run)
	if opts.Coverage {
		cov = cover.New()
		runner = runner.SetCoverageQueryTracer(cov)
	}

	var res TestResult
	err = storage.Txn(ctx, store, storage.TransactionParams{}, func(txn storage.Transaction) error {
		ch, err := runner.RunTests(ctx, txn)
		if err != nil {
			return fmt.Errorf("policy: compile %s:\n%s", src, describe(err))
		}
		counted := make(chan *tester.Result)
		go func() {
			defer close(counted)
			for r := range ch {
				switch {
				case r.Skip:
					res.Skipped++
				case r.Error != nil:
					res.Errored++
				case r.Fail:
					res.Failed++
				default:
					res.Passed++
				}
				counted <- r
			}
		}()
		return tester.PrettyReporter{Output: out, Verbose: opts.Verbose, FailureLine: opts.Verbose}.Report(counted)
	})
	if err != nil {
		return res, err
	}
	if cov != nil {
		policyOnly := make(map[string]*ast.Module)
		for name, m := range l.modules {
			if !strings.HasSuffix(name, "_test.rego") {
				policyOnly[name] = m
			}
		}
		report := cov.Report(policyOnly)
		res.Coverage = report.Coverage
		for file, fr := range report.Files {
			for _, r := range fr.NotCovered {
				res.NotCovered = append(res.NotCovered, fmt.Sprintf("%s:%d-%d", file, r.Start.Row, r.End.Row))
			}
		}
	}
	return res, nil
}
