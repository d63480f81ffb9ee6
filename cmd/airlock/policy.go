package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/policy"
	airlockrego "github.com/airlock-mcp/airlock/rego"
)

func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Write, test and try out the Rego policy that judges tool calls",
		Long: `Every tools/call passes through a Rego policy (OPA v1 syntax). Airlock
evaluates data.airlock.decision, which answers allow, deny or hold (wait
for a person). Without configuration Airlock uses its built-in library;
set policy.dir in the config to use your own directory instead.

These commands work on a policy directory, or on the built-in library
when DIR is left out:

  airlock policy init ./policy      copy the built-in library out to edit it
  airlock policy test ./policy      run its Rego tests (files ending _test.rego)
  airlock policy check ./policy     compile it exactly as the server would
  airlock policy eval --input call.json ./policy
                                    decide one call and print the decision

docs/policy.md describes the input and decision fields, with examples.`,
		// Without Args and RunE, cobra would print help and succeed for a
		// mistyped subcommand.
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
	cmd.AddCommand(newPolicyInitCmd(), newPolicyTestCmd(), newPolicyCheckCmd(), newPolicyEvalCmd())
	return cmd
}

// policyDir is the optional DIR argument; "" means the built-in library.
func policyDir(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[0]
}

func newPolicyInitCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "init DIR",
		Short: "Copy the built-in policy library into DIR, to edit it",
		Long: `Init writes the built-in library into DIR (created if needed): airlock.rego,
the entry point; baseline.rego, the default policy; examples/, policies for
common servers; and a _test.rego file beside each. It never overwrites a
file.

Then edit the files, run 'airlock policy test DIR', and point Airlock at
the directory with policy.dir in its config. To adopt an example, change
the one rule in DIR/airlock.rego, for instance:

  decision := data.airlock.examples.filesystem.decision`,
		Example: `  airlock policy init ./policy
  airlock policy test ./policy`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			dir := args[0]
			var files []string
			err := fs.WalkDir(airlockrego.FS, ".", func(path string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				if _, err := os.Stat(filepath.Join(dir, path)); err == nil {
					return fmt.Errorf("policy init: %s already exists; init never overwrites a file", filepath.Join(dir, path))
				}
				files = append(files, path)
				return nil
			})
			if err != nil {
				return err
			}
			for _, path := range files {
				b, err := fs.ReadFile(airlockrego.FS, path)
				if err != nil {
					return fmt.Errorf("policy init: %w", err)
				}
				dst := filepath.Join(dir, path)
				if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
					return fmt.Errorf("policy init: %w", err)
				}
				if err := os.WriteFile(dst, b, 0o644); err != nil {
					return fmt.Errorf("policy init: %w", err)
				}
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "wrote %d files to %s\nnext: airlock policy test %s\n", len(files), dir, dir)
			return err
		},
	}
}

func newPolicyTestCmd() *cobra.Command {
	var opts policy.TestOptions
	cmd := &cobra.Command{
		Use:   "test [DIR]",
		Short: "Run a policy's Rego tests",
		Long: `Test runs every rule named test_* in DIR (or in the built-in library) and
reports like 'opa test'. Tests usually live in files ending _test.rego and
call the policy with a made-up input:

  package airlock_test

  test_reads_pass if {
      data.airlock.decision.action == "allow" with input as {
          "server": {"name": "filesystem", "trust_annotations": true},
          "tool": {"name": "read_file", "annotations": {"readOnlyHint": true}},
      }
  }

The policy is compiled as the server compiles it (strict, no network or
clock built-ins), and a built-in error fails a test as it would deny a call.
Exit status: 0 when all tests pass, 2 when a test fails, 1 when the policy
does not compile.`,
		Example: `  airlock policy test
  airlock policy test -v ./policy
  airlock policy test --run filesystem --coverage ./policy`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			opts.Dir, opts.Output = policyDir(args), cmd.OutOrStdout()
			res, err := policy.RunTests(cmd.Context(), opts)
			if err != nil {
				return err
			}
			if opts.Coverage {
				fmt.Fprintf(cmd.OutOrStdout(), "coverage: %.1f%% of policy lines\n", res.Coverage)
				for _, r := range res.NotCovered {
					fmt.Fprintf(cmd.OutOrStdout(), "  not covered: %s\n", r)
				}
			}
			switch {
			case res.Failed > 0 || res.Errored > 0:
				return &exitError{code: 2}
			case res.Passed == 0:
				return &exitError{code: 2, msg: "no tests ran; tests are rules named test_*"}
			}
			return nil
		},
	}
	cmd.Flags().BoolVarP(&opts.Verbose, "verbose", "v", false, "list every test, and trace the failing ones")
	cmd.Flags().StringVarP(&opts.Run, "run", "r", "", "run only tests whose name matches this regular expression")
	cmd.Flags().BoolVar(&opts.Coverage, "coverage", false, "report which policy lines the tests evaluated")
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "check [DIR]",
		Short: "Compile a policy exactly as the server would",
		Long: `Check loads DIR (or the built-in library) the way 'airlock serve' does, and
prints the revision it would serve. Every problem is reported as
file:row:col so an editor can jump to it. Test files (*_test.rego) are not
part of what is served; 'airlock policy test' compiles them.

Check is strict: unused variables and imports, shadowed input or data, and
built-ins that reach outside the policy (http.send, net.*, opa.runtime,
time.now_ns, rand.intn, uuid.rfc4122, json.match_schema,
json.verify_schema) are errors. Exit status 1 when the policy does not
compile.`,
		Example: `  airlock policy check ./policy`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			e, err := policy.New(cmd.Context(), policy.Options{Dir: policyDir(args)})
			if err != nil {
				return err
			}
			defer e.Close()
			st := e.Status()
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "ok: %s compiles to revision %s (%d modules)\n", st.Source, st.Revision, len(st.Modules))
			return err
		},
	}
}

func newPolicyEvalCmd() *cobra.Command {
	var input string
	var verbose bool
	cmd := &cobra.Command{
		Use:   "eval --input FILE [DIR]",
		Short: "Decide one call and print the decision as JSON",
		Long: `Eval reads a call's input document from FILE ("-" for standard input),
evaluates data.airlock.decision in DIR (or the built-in library), and
prints the decision as JSON, with its decision_id and revision.

The input has the same shape the server builds; fields you leave out are
empty, except that server.trust_annotations defaults to true,
arguments_digest is computed from arguments, and time defaults to now:

  {
    "server": {"name": "filesystem", "transport": "stdio"},
    "tool": {"name": "write_file", "annotations": {"destructiveHint": true}},
    "arguments": {"path": "/srv/data/report.txt", "content": "hello"},
    "principal": {"id": "alice", "source": "os"}
  }

When the policy fails (undefined, a conflict, a malformed decision), the
decision is a deny with a reference id, and the detail is printed to
standard error under the same id. -v also prints the output of print()
calls in the policy.`,
		Example: `  airlock policy eval --input call.json
  airlock policy eval -v --input call.json ./policy
  echo '{"tool": {"name": "read_file"}}' | airlock policy eval --input -`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readInput(cmd, input)
			if err != nil {
				return err
			}
			level := slog.LevelWarn
			if verbose {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: level}))
			e, err := policy.New(cmd.Context(), policy.Options{Dir: policyDir(args), Logger: log})
			if err != nil {
				return err
			}
			defer e.Close()
			d, err := e.DecideJSON(cmd.Context(), raw)
			if err != nil {
				return fmt.Errorf("policy eval: %s: %w", input, err)
			}
			out := json.NewEncoder(cmd.OutOrStdout())
			out.SetIndent("", "  ")
			out.SetEscapeHTML(false)
			return out.Encode(d)
		},
	}
	cmd.Flags().StringVarP(&input, "input", "i", "", `the call's input document, a JSON file ("-" for standard input)`)
	cmd.Flags().BoolVarP(&verbose, "verbose", "v", false, "print the policy's print() output and debug logs to standard error")
	_ = cmd.MarkFlagRequired("input")
	return cmd
}

func readInput(cmd *cobra.Command, name string) ([]byte, error) {
	if name == "-" {
		b, err := io.ReadAll(cmd.InOrStdin())
		if err != nil {
			return nil, fmt.Errorf("policy eval: read standard input: %w", err)
		}
		return b, nil
	}
	b, err := os.ReadFile(name)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("policy eval: input file %s does not exist", name)
	}
	if err != nil {
		return nil, fmt.Errorf("policy eval: %w", err)
	}
	return b, nil
}
