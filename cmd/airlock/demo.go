package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
	airlockrego "github.com/airlock-mcp/airlock/rego"
	"github.com/airlock-mcp/airlock/relay"
)

func newDemoCmd() *cobra.Command {
	var o demoOptions
	cmd := &cobra.Command{
		Use:   "demo [--listen ADDR]",
		Short: "See Airlock at work: a sample server, a scripted agent and the approvals page",
		Long: `demo runs a real broker on the built-in defaults with two guests: a sample
MCP server built into Airlock (file tools on a temporary sandbox directory),
and a scripted agent, a real MCP client, that makes three calls through
Airlock. The policy allows the first, denies the second, and holds the third
until you approve or deny it in the approvals page or with airlock approve.

The policy is the filesystem example (rego/examples/filesystem.rego) set to
the sandbox: reads inside it pass, writes in its scratch directory pass,
other writes wait for a person, and a path that leaves it is refused.

Everything lives in a temporary directory, removed when you press Ctrl-C.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDemo(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), o)
		},
	}
	cmd.Flags().StringVar(&o.listen, "listen", DefaultListen, "address of the approvals page, the API and the sample server's MCP endpoint")
	cmd.Flags().StringVar(&o.stateDir, "state-dir", "", "state directory (default: in the demo's temporary directory)")
	cmd.Flags().StringVar(&o.logLevel, "log-level", "warn", "broker log level on stderr: debug, info, warn or error")
	return cmd
}

type demoOptions struct {
	listen, stateDir, logLevel string
}

// demoServer is the sample server's name, which the filesystem example
// policy applies to.
const demoServer = "filesystem"

// demoNotes is the file the agent's held call writes.
const demoNotes = "Meeting notes\n- ship the approvals page\n"

func runDemo(ctx context.Context, out, stderr io.Writer, o demoOptions) error {
	if !loopbackListen(o.listen) {
		// Every caller is taken for the user who runs it (below).
		return fmt.Errorf("demo: --listen %s: the demo takes every caller for you, so it listens on a loopback address only, such as 127.0.0.1:0", o.listen)
	}
	dir, err := os.MkdirTemp("", "airlock-demo-")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	defer os.RemoveAll(dir)
	sandboxDir, policyDir := filepath.Join(dir, "sandbox"), filepath.Join(dir, "policy")
	if err := seedSandbox(sandboxDir); err != nil {
		return err
	}
	if err := writeDemoPolicy(policyDir, sandboxDir); err != nil {
		return err
	}
	stateDir := o.stateDir
	if stateDir == "" {
		stateDir = filepath.Join(dir, "state")
	}
	cfg, err := loadConfig("")
	if err != nil {
		return err
	}
	cfg.Listen, cfg.LogLevel, cfg.Policy.Dir = o.listen, o.logLevel, policyDir
	log := newLogger(stderr, cfg.LogLevel)

	srv, err := newSandboxServer(sandboxDir)
	if err != nil {
		return err
	}
	rt, err := startRuntime(ctx, cfg, log, stateDir, []*relay.Upstream{relay.InProcessUpstream(demoServer, srv)}, runtimeOptions{})
	if err != nil {
		return err
	}
	defer rt.close()
	// The demo trusts every local caller as the user who runs it, as wrap
	// trusts whoever can write to its stdin.
	me := osPrincipal()
	if err := rt.listen(cfg.Listen, ""); err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			return fmt.Errorf("demo: %w; is another Airlock running there? Pass --listen 127.0.0.1:0 for any free port", err)
		}
		return err
	}
	mcpHandler := rt.relay.HTTPHandler(relay.HTTPOptions{
		IdleTimeout:  cfg.SessionIdle,
		Hosts:        rt.hosts,
		Authenticate: func(http.ResponseWriter, *http.Request, string) (broker.Principal, bool) { return me, true },
	})
	rt.mux.Handle("/mcp/{server}", mcpHandler)
	errc := make(chan error, 1)
	go func() { errc <- rt.serve() }()

	base := rt.uiURL()
	link, err := rt.ui.NewLoginLink(base, "")
	if err != nil {
		return err
	}
	fmt.Fprintf(out, `Airlock demo: a real broker, a sample file server built into Airlock, and a
scripted agent. Everything lives in %s and goes when you press Ctrl-C.

  sandbox  %s  (the sample server's files)
  policy   %s  (the filesystem example, set to the sandbox; Airlock reloads it when you edit it)
  MCP      %s/mcp/%s  (connect your own client here too)

Open the approvals page (this link signs you in as %s, once):

  %s

The agent makes three calls through Airlock.
`, dir, sandboxDir, policyDir, base, demoServer, link.Approver, link.URL)

	agentErr := runDemoAgent(ctx, out, rt, base, stateDir, sandboxDir)
	if agentErr == nil {
		fmt.Fprintf(out, "\nDone. Look around the approvals page: History has all three calls, Policy the example\n"+
			"in force. Press Ctrl-C to stop.\n")
	} else if ctx.Err() == nil {
		fmt.Fprintf(out, "\nThe agent stopped: %v\nPress Ctrl-C to stop.\n", agentErr)
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		mcpHandler.Close()
		return err
	}
	fmt.Fprintln(out, "\nStopping; removing", dir)
	// Held calls are answered first, then the sessions end, which lets the
	// HTTP server's shutdown finish.
	rt.broker.Close()
	mcpHandler.Close()
	return nil
}

// runDemoAgent is the scripted agent: an MCP client over streamable HTTP,
// as any agent would connect to `airlock serve`.
func runDemoAgent(ctx context.Context, out io.Writer, rt *runtime, base, stateDir, sandboxDir string) error {
	c := mcp.NewClient(&mcp.Implementation{Name: "airlock-demo-agent", Version: version()}, nil)
	cs, err := c.Connect(ctx, &mcp.StreamableClientTransport{Endpoint: base + "/mcp/" + demoServer}, nil)
	if err != nil {
		return fmt.Errorf("connecting to %s: %w", base, err)
	}
	defer cs.Close()

	// 1. A read inside the sandbox: allowed.
	args := any(pathArgs{Path: sandboxDir})
	step(out, 1, "list_directory", args)
	res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "list_directory", Arguments: args})
	if err != nil {
		return err
	}
	why := ""
	if recs, err := rt.broker.Audit(ctx, broker.AuditQuery{Event: string(broker.EventAllowed), Tool: "list_directory", Limit: 1}); err == nil && len(recs) == 1 {
		why = " by the policy: " + recs[0].Reason
	}
	if res.IsError {
		fmt.Fprintf(out, "   Unexpected: the server said %s\n", resultText(res))
	} else {
		fmt.Fprintf(out, "   ALLOWED%s\n   The server answered: %s\n", why, strings.ReplaceAll(resultText(res), "\n", ", "))
	}

	// 2. A path that climbs out of the sandbox: denied before it reaches
	// the server.
	args = pathArgs{Path: sandboxDir + "/../../../etc/passwd"}
	step(out, 2, "read_text_file", args)
	res, err = cs.CallTool(ctx, &mcp.CallToolParams{Name: "read_text_file", Arguments: args})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "   DENIED. The agent reads: %s\n", resultText(res))

	// 3. A write outside the scratch directory: held for a person. The
	// progress token lets Airlock keep the call waiting as long as it takes.
	events, stop := rt.broker.Subscribe()
	defer stop()
	args = writeArgs{Path: filepath.Join(sandboxDir, "notes.txt"), Content: demoNotes + "- try airlock demo\n"}
	step(out, 3, "write_file", args)
	type callResult struct {
		res *mcp.CallToolResult
		err error
	}
	done := make(chan callResult, 1)
	go func() {
		p := &mcp.CallToolParams{Name: "write_file", Arguments: args}
		p.SetProgressToken("demo-write")
		res, err := cs.CallTool(ctx, p)
		done <- callResult{res, err}
	}()
	var held *broker.Approval
	for held == nil {
		select {
		case ev, ok := <-events:
			if !ok {
				return errors.New("lost the broker's events")
			}
			if ev.Type == "held" && ev.Approval.Server == demoServer && ev.Approval.Tool == "write_file" {
				held = ev.Approval
			}
		case r := <-done:
			if r.err != nil {
				return r.err
			}
			return fmt.Errorf("the write was not held: %s", resultText(r.res))
		}
	}
	fmt.Fprintf(out, `   HELD for approval (ref %s): %s
   Approve or deny it in the approvals page:
     %s/approvals/%s
   or from another terminal:
     %s approve %s --state-dir %s
   The agent waits...
`, held.ID, held.Decision.Reason, base, url.PathEscape(held.ID), commandName(), held.ID, stateDir)
	r := <-done
	if r.err != nil {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return r.err
	}
	if r.res.IsError {
		fmt.Fprintf(out, "   NOT RUN. The agent reads: %s\n", resultText(r.res))
		return nil
	}
	by := "someone"
	if a, err := rt.broker.Approval(ctx, held.ID); err == nil {
		by = a.DecidedBy
	}
	fmt.Fprintf(out, "   APPROVED by %s. The server answered: %s\n", by, resultText(r.res))
	return nil
}

func step(out io.Writer, n int, tool string, args any) {
	data, _ := json.Marshal(args)
	fmt.Fprintf(out, "\n%d. %s %s\n", n, tool, data)
}

func resultText(res *mcp.CallToolResult) string {
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

// commandName is how the person ran Airlock, to print commands they can
// paste: "go run ./cmd/airlock" for a binary `go run` built.
func commandName() string {
	if exe, err := os.Executable(); err == nil && strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/airlock"
	}
	return os.Args[0]
}

func seedSandbox(dir string) error {
	files := map[string]string{
		"notes.txt": demoNotes,
		"report.md": "# Q3 report\n\nRevenue grew 12% on the quarter.\n",
	}
	if err := os.MkdirAll(filepath.Join(dir, "scratch"), 0o755); err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}

// demoEntryPoint is the demo policy's airlock.rego.
const demoEntryPoint = `# The demo's entry point: the filesystem example decides calls to the sample
# server, and hands every other call to the baseline. Its settings (roots and
# scratch) are in settings.json beside this file, pointing at the sandbox.
package airlock

decision := data.airlock.examples.filesystem.decision
`

// writeDemoPolicy writes the demo's policy: the baseline and the
// filesystem example from the built-in library, an entry point that
// adopts the example, and the example's settings for the sandbox.
func writeDemoPolicy(dir, sandboxDir string) error {
	settings, err := json.MarshalIndent(map[string]any{"settings": map[string]any{demoServer: map[string]any{
		"server":  demoServer,
		"roots":   []string{sandboxDir},
		"scratch": filepath.Join(sandboxDir, "scratch"),
	}}}, "", "  ")
	if err != nil {
		return err
	}
	files := map[string][]byte{"airlock.rego": []byte(demoEntryPoint), "settings.json": append(settings, '\n')}
	for _, name := range []string{"baseline.rego", "examples/filesystem.rego"} {
		if files[name], err = fs.ReadFile(airlockrego.FS, name); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
		if err := os.WriteFile(path, data, 0o644); err != nil {
			return fmt.Errorf("demo: %w", err)
		}
	}
	return nil
}
