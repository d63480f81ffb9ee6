package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
	"github.com/spf13/cobra"

	"github.com/airlock-mcp/airlock/broker"
	airlockrego "github.com/airlock-mcp/airlock/rego"
	"github.com/airlock-mcp/airlock/relay"
)

type benchOptions struct {
	duration   time.Duration
	callers    []int
	transports []string
	workloads  []string
	upstream   string
	node       string
	peerURL    string
	held       int
	repeat     int
	jsonOut    bool
}

// The workloads: what one call of each does through Airlock.
var benchWorkloads = []string{
	"allowed",           // a read-only tool: the default policy allows it, the call is audited
	"allowed-unaudited", // the same with audit_allowed_calls off, to price the durable audit
	"denied",            // a tool the bench policy denies: answered without the upstream
	"granted",           // a tool the bench policy holds, released by a grant made first
	"list",              // tools/list, which passes straight through
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	var callers, transports, workloads string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure what Airlock adds to MCP calls, against the same server directly",
		Long: `bench starts an upstream MCP server as a real process and measures each
workload first directly, then through Airlock, back to back in the same run,
at each number of concurrent callers on one session:

  allowed            a read-only tool, allowed by the default policy and audited
  allowed-unaudited  the same with audit_allowed_calls off
  denied             a tool the bench policy denies
  granted            a tool the bench policy holds, released by a grant
  list               tools/list

Over stdio the client starts "airlock wrap -- UPSTREAM"; over HTTP it talks to
"airlock serve", which runs the upstream over stdio, and the direct path is
the upstream's own streamable HTTP endpoint. Upstreams: "echo", a minimal Go
server built into this binary (it shows Airlock's own cost), and
"everything", @modelcontextprotocol/server-everything from npm (it needs Node
and the package: npm ci --prefix testdata/node).

A shared machine is noisy: --repeat N runs every case N times, interleaved,
and reports each figure's median.

--peer-url adds a third path over HTTP: another proxy you started in front
of the same upstream. --held N instead holds N calls at once, reports
Airlock's memory, then approves up to 200 of them one at a time through the
API and reports how long each approval took to become the caller's result.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if o.callers, err = parseInts(callers); err != nil {
				return fmt.Errorf("--callers: %w", err)
			}
			o.transports = strings.Split(transports, ",")
			for _, tr := range o.transports {
				if tr != "stdio" && tr != "http" {
					return fmt.Errorf("--transports: %q is not stdio or http", tr)
				}
			}
			o.workloads = strings.Split(workloads, ",")
			for _, w := range o.workloads {
				if !slices.Contains(benchWorkloads, w) {
					return fmt.Errorf("--workloads: %q is not one of %s", w, strings.Join(benchWorkloads, ", "))
				}
			}
			if o.repeat < 1 {
				return fmt.Errorf("--repeat: %d is not a positive number of runs", o.repeat)
			}
			if o.upstream != "echo" && o.upstream != "everything" {
				return fmt.Errorf("--upstream: %q is not echo or everything", o.upstream)
			}
			return runBench(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	durationVar(cmd, &o.duration, "duration", 3*time.Second, "measuring time for each case")
	cmd.Flags().StringVar(&callers, "callers", "1,8,64", "numbers of concurrent callers, comma-separated")
	cmd.Flags().StringVar(&transports, "transports", "stdio,http", "transports: stdio, http")
	cmd.Flags().StringVar(&workloads, "workloads", strings.Join(benchWorkloads, ","), "workloads, comma-separated")
	cmd.Flags().StringVar(&o.upstream, "upstream", "echo", "the upstream server: echo or everything")
	cmd.Flags().StringVar(&o.node, "node", "", "Node.js for --upstream everything (default: testdata/node's, else node on PATH)")
	cmd.Flags().StringVar(&o.peerURL, "peer-url", "", "also measure another proxy at this streamable HTTP URL (HTTP only)")
	cmd.Flags().IntVar(&o.repeat, "repeat", 1, "run every case this many times, interleaved, and report the medians")
	cmd.Flags().IntVar(&o.held, "held", 0, "hold this many calls at once over stdio and report Airlock's memory and approve-to-result latency, instead of the workloads")
	cmd.Flags().BoolVar(&o.jsonOut, "json", false, "print results as JSON")
	cmd.AddCommand(newEchoServerCmd())
	return cmd
}

// newEchoServerCmd is the Go upstream bench measures: as little server as
// an MCP call can have, so that the cost of what sits in front shows.
func newEchoServerCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:    "echo-server",
		Short:  "Serve a minimal MCP server (the bench upstream)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := mcp.NewServer(&mcp.Implementation{Name: "airlock-bench-echo", Version: "1"}, nil)
			echo := func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(req.Params.Arguments)}}}, nil
			}
			yes := true
			schema := json.RawMessage(`{"type":"object"}`)
			s.AddTool(&mcp.Tool{Name: "echo", Description: "Echo the arguments back.", InputSchema: schema,
				Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}}, echo)
			s.AddTool(&mcp.Tool{Name: "write", Description: "Pretend to write.", InputSchema: schema,
				Annotations: &mcp.ToolAnnotations{DestructiveHint: &yes}}, echo)
			s.AddTool(&mcp.Tool{Name: "blocked", Description: "A tool the bench policy denies.", InputSchema: schema}, echo)
			if addr == "" {
				return s.Run(cmd.Context(), &mcp.StdioTransport{})
			}
			h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, nil)
			srv := &http.Server{Addr: addr, Handler: h}
			go func() { <-cmd.Context().Done(); srv.Close() }()
			if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&addr, "http", "", "serve streamable HTTP at this address instead of stdio")
	return cmd
}

// benchUpstream says how to run an upstream and what each workload calls.
type benchUpstream struct {
	stdio []string
	// http returns the command that serves it over HTTP at addr, and its
	// endpoint.
	http  func(addr string) ([]string, []string, string)
	calls map[string]benchCall
}

type benchCall struct {
	tool string
	args map[string]any
}

func (o benchOptions) upstreamSpec(self string) (*benchUpstream, error) {
	if o.upstream == "echo" {
		return &benchUpstream{
			stdio: []string{self, "bench", "echo-server"},
			http: func(addr string) ([]string, []string, string) {
				return []string{self, "bench", "echo-server", "--http", addr}, nil, "http://" + addr + "/"
			},
			calls: map[string]benchCall{
				"allowed": {"echo", map[string]any{"text": "hello"}},
				"denied":  {"blocked", map[string]any{}},
				"granted": {"write", map[string]any{"path": "/tmp/x"}},
			},
		}, nil
	}
	node, script, err := everythingServer(o.node)
	if err != nil {
		return nil, err
	}
	return &benchUpstream{
		stdio: []string{node, script},
		http: func(addr string) ([]string, []string, string) {
			_, port, _ := net.SplitHostPort(addr)
			return []string{node, script, "streamableHttp"}, []string{"PORT=" + port}, "http://" + addr + "/mcp"
		},
		calls: map[string]benchCall{
			"allowed": {"echo", map[string]any{"message": "hello"}},
			"denied":  {"get-env", map[string]any{}},
			"granted": {"get-sum", map[string]any{"a": 1, "b": 2}},
		},
	}, nil
}

// everythingServer finds Node and the npm server-everything script.
func everythingServer(node string) (string, string, error) {
	root, _ := os.Getwd()
	for dir := root; ; dir = filepath.Dir(dir) {
		base := filepath.Join(dir, "testdata", "node", "node_modules")
		script := filepath.Join(base, ".bin", "mcp-server-everything")
		if _, err := os.Stat(script); err == nil {
			if node == "" {
				if _, err := os.Stat(filepath.Join(base, ".bin", "node")); err == nil {
					node = filepath.Join(base, ".bin", "node")
				}
			}
			if node == "" {
				node = "node"
			}
			return node, script, nil
		}
		if filepath.Dir(dir) == dir {
			return "", "", errors.New("--upstream everything needs @modelcontextprotocol/server-everything: run `npm ci --prefix testdata/node` in the repository")
		}
	}
}

// benchPolicy is the default library with two additions: it denies the
// denied workload's tools, and holds the granted workload's tools unless a
// grant covers them.
const benchPolicy = `package airlock

import data.airlock.baseline

decision := {"action": "deny", "reason": "the bench denies this tool"} if {
	input.tool.name in {"blocked", "get-env"}
} else := {"action": "allow", "reason": "granted", "grant": min({g.id | some g in input.grants})} if {
	count(input.grants) > 0
} else := {"action": "hold", "reason": "the bench holds this tool", "grantable": {"scopes": ["tool"], "max_ttl": "24h"}} if {
	input.tool.name in {"write", "get-sum"}
} else := baseline.decision
`

// writeBenchPolicy copies the built-in library to dir with benchPolicy as
// its entry point.
func writeBenchPolicy(dir string) error {
	err := fs.WalkDir(airlockrego.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == "airlock.rego" || strings.HasSuffix(path, "_test.rego") {
			return err
		}
		data, err := airlockrego.FS.ReadFile(path)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(filepath.Join(dir, filepath.Dir(path)), 0o700); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dir, path), data, 0o600)
	})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "airlock.rego"), []byte(benchPolicy), 0o600)
}

// benchResult is one measured case.
type benchResult struct {
	Workload  string `json:"workload"`
	Transport string `json:"transport"`
	Path      string `json:"path"` // direct, airlock or peer
	Callers   int    `json:"callers"`
	Calls     int    `json:"calls"`
	// Runs is how many runs the figures are the medians of.
	Runs      int     `json:"runs"`
	PerSecond float64 `json:"calls_per_second"`
	P50       float64 `json:"p50_us"`
	P99       float64 `json:"p99_us"`
	// PeakRSS is the Airlock process's peak resident memory, in KiB.
	PeakRSS int64 `json:"peak_rss_kib,omitempty"`
	// CPUPerCall is the CPU time the Airlock process spent per call while
	// measuring, in µs: its own cost, which a busy machine does not
	// inflate the way it inflates latency.
	CPUPerCall float64 `json:"airlock_cpu_us_per_call,omitempty"`
	// PolicyWithin100us is the share of policy evaluations, over the whole
	// case, that took at most 100 µs (the target is a p99 under 100 µs),
	// from Airlock's own histogram.
	PolicyWithin100us float64 `json:"policy_evals_within_100us,omitempty"`
}

func runBench(ctx context.Context, out io.Writer, o benchOptions) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	up, err := o.upstreamSpec(self)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "airlock-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	if err := writeBenchPolicy(filepath.Join(work, "policy")); err != nil {
		return err
	}
	if o.held > 0 {
		return benchHeld(ctx, out, self, up, work, o)
	}
	var results []benchResult
	// Workloads innermost: the audited and unaudited cases of one
	// transport and number of callers run back to back, so that the cost
	// of audit is measured on the same machine too.
	for _, tr := range o.transports {
		for _, n := range o.callers {
			paths := []string{"direct", "airlock"}
			if o.peerURL != "" && tr == "http" {
				paths = append(paths, "peer")
			}
			runs := make([][]benchResult, len(o.workloads)*len(paths))
			// Repeats interleaved, so that a busy moment of a shared
			// machine lands on every case alike.
			for range o.repeat {
				for i, w := range o.workloads {
					// Back to back, so that every path sees the same machine.
					for j, path := range paths {
						r, err := benchCase(ctx, self, up, work, w, tr, path, n, o)
						if err != nil {
							return fmt.Errorf("bench %s over %s, %s, %d callers: %w", w, tr, path, n, err)
						}
						runs[i*len(paths)+j] = append(runs[i*len(paths)+j], r)
					}
				}
			}
			for _, rs := range runs {
				results = append(results, medianResult(rs))
			}
		}
	}
	if o.jsonOut {
		enc := json.NewEncoder(out)
		enc.SetIndent("", "  ")
		return enc.Encode(results)
	}
	printBench(out, results)
	return nil
}

// medianResult folds repeated runs of one case into one: the median of
// each figure, the sum of calls, and the highest peak memory.
func medianResult(rs []benchResult) benchResult {
	m := rs[0]
	med := func(f func(benchResult) float64) float64 {
		vs := make([]float64, len(rs))
		for i, r := range rs {
			vs[i] = f(r)
		}
		slices.Sort(vs)
		if n := len(vs); n%2 == 0 {
			return (vs[n/2-1] + vs[n/2]) / 2
		}
		return vs[len(vs)/2]
	}
	m.PerSecond = med(func(r benchResult) float64 { return r.PerSecond })
	m.P50 = med(func(r benchResult) float64 { return r.P50 })
	m.P99 = med(func(r benchResult) float64 { return r.P99 })
	m.CPUPerCall = med(func(r benchResult) float64 { return r.CPUPerCall })
	m.PolicyWithin100us = med(func(r benchResult) float64 { return r.PolicyWithin100us })
	m.Calls, m.Runs = 0, len(rs)
	for _, r := range rs {
		m.Calls += r.Calls
		m.PeakRSS = max(m.PeakRSS, r.PeakRSS)
	}
	return m
}

// benchProcs starts and stops the processes of one case.
type benchProcs struct {
	ctx   context.Context
	self  string
	procs []*exec.Cmd
}

func (p *benchProcs) start(argv, env []string, stdio bool) (*exec.Cmd, io.WriteCloser, io.ReadCloser, error) {
	c := exec.CommandContext(p.ctx, argv[0], argv[1:]...)
	c.Env = append(os.Environ(), env...)
	c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
	c.WaitDelay = 5 * time.Second
	var in io.WriteCloser
	var out io.ReadCloser
	var err error
	if stdio {
		if in, err = c.StdinPipe(); err != nil {
			return nil, nil, nil, err
		}
		if out, err = c.StdoutPipe(); err != nil {
			return nil, nil, nil, err
		}
	}
	if err := c.Start(); err != nil {
		return nil, nil, nil, err
	}
	p.procs = append(p.procs, c)
	return c, in, out, nil
}

func (p *benchProcs) stop() {
	for _, c := range slices.Backward(p.procs) {
		c.Process.Signal(os.Interrupt)
		c.Wait()
	}
}

// benchCase starts what one case needs, connects a client and measures.
func benchCase(ctx context.Context, self string, up *benchUpstream, work, workload, transport, path string, callers int, o benchOptions) (benchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &benchProcs{ctx: ctx, self: self}
	defer p.stop()
	stateDir, err := os.MkdirTemp(work, "state-")
	if err != nil {
		return benchResult{}, err
	}
	cfg := filepath.Join(stateDir, "airlock.yaml")
	cfgText := fmt.Sprintf("state_dir: %s\nlog_level: error\nhold_wait: 10m\npolicy: {dir: %s}\n", stateDir, filepath.Join(work, "policy"))
	if workload == "allowed-unaudited" {
		cfgText += "audit_allowed_calls: false\n"
	}

	var t mcp.Transport
	var airlock *exec.Cmd
	var metricsURL string // Airlock's, when this case runs one
	switch {
	case transport == "stdio":
		argv := up.stdio
		if path == "airlock" {
			if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
				return benchResult{}, err
			}
			argv = append([]string{self, "wrap", "--name", "up", "-c", cfg, "--"}, up.stdio...)
		}
		c, in, out, err := p.start(argv, nil, true)
		if err != nil {
			return benchResult{}, err
		}
		if path == "airlock" {
			airlock = c
		}
		t = &mcp.IOTransport{Reader: out, Writer: in}
	case path == "direct":
		addr, err := freeAddr()
		if err != nil {
			return benchResult{}, err
		}
		argv, env, url := up.http(addr)
		if _, _, _, err := p.start(argv, env, false); err != nil {
			return benchResult{}, err
		}
		if err := waitTCP(ctx, addr); err != nil {
			return benchResult{}, err
		}
		t = &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true}
	case path == "peer":
		t = &mcp.StreamableClientTransport{Endpoint: o.peerURL, DisableStandaloneSSE: true}
	default:
		addr, err := freeAddr()
		if err != nil {
			return benchResult{}, err
		}
		cfgText += fmt.Sprintf("listen: %s\nservers:\n  up:\n    command: %q\n    args: %s\n", addr, up.stdio[0], jsonList(up.stdio[1:]))
		if err := os.WriteFile(cfg, []byte(cfgText), 0o600); err != nil {
			return benchResult{}, err
		}
		if airlock, _, _, err = p.start([]string{self, "serve", "-c", cfg}, nil, false); err != nil {
			return benchResult{}, err
		}
		if err := waitTCP(ctx, addr); err != nil {
			return benchResult{}, err
		}
		metricsURL = "http://" + addr + "/metrics"
		t = &mcp.StreamableClientTransport{Endpoint: "http://" + addr + "/mcp/up", DisableStandaloneSSE: true}
	}

	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-bench", Version: "1"}, nil)
	cs, err := client.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: relay.LatestProtocolVersion})
	if err != nil {
		return benchResult{}, err
	}
	defer cs.Close()
	call := up.calls[strings.TrimSuffix(workload, "-unaudited")]
	op := func() error {
		if workload == "list" {
			_, err := cs.ListTools(ctx, nil)
			return err
		}
		res, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: call.tool, Arguments: call.args})
		if err == nil && res.IsError && workload != "denied" && path == "airlock" {
			err = fmt.Errorf("%s returned an error: %v", call.tool, res.Content)
		}
		return err
	}
	if path == "airlock" && workload == "granted" {
		// A grant made before measuring, as an approver's "always allow"
		// would leave behind. It binds to the tool's listed definition.
		for _, err := range cs.Tools(ctx, nil) {
			if err != nil {
				return benchResult{}, err
			}
		}
		if err := benchGrant(ctx, stateDir, call.tool); err != nil {
			return benchResult{}, err
		}
	}
	// Warm up at full concurrency first: a Node upstream started for this
	// case needs a second or so of calls before its JIT settles, while the
	// peer's upstream, started once, stays warm from case to case.
	if _, err := measure(ctx, op, callers, min(time.Second, o.duration)); err != nil {
		return benchResult{}, fmt.Errorf("warming up: %w", err)
	}
	var cpu0 time.Duration
	if airlock != nil {
		cpu0 = procCPU(airlock.Process.Pid)
	}
	if path == "airlock" && transport == "stdio" {
		ref, err := waitBroker(ctx, stateDir)
		if err != nil {
			return benchResult{}, err
		}
		metricsURL = ref.Info.URL + "/metrics"
	}
	lat, err := measure(ctx, op, callers, o.duration)
	if err != nil {
		return benchResult{}, err
	}
	r := summarize(lat, o.duration)
	r.Workload, r.Transport, r.Path, r.Callers = workload, transport, path, callers
	if airlock != nil {
		r.PeakRSS = procStatus(airlock.Process.Pid, "VmHWM")
		if r.Calls > 0 {
			r.CPUPerCall = float64((procCPU(airlock.Process.Pid) - cpu0).Microseconds()) / float64(r.Calls)
		}
	}
	if metricsURL != "" && workload != "list" {
		if r.PolicyWithin100us, err = policyWithin(ctx, metricsURL, "0.0001"); err != nil {
			return benchResult{}, err
		}
	}
	return r, nil
}

// policyWithin reads Airlock's policy evaluation histogram and returns the
// share of evaluations in the bucket whose upper bound is le.
func policyWithin(ctx context.Context, metricsURL, le string) (float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, metricsURL, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var within, count float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, `airlock_policy_evaluation_seconds_bucket{le="`+le+`"} `); ok {
			within, err = strconv.ParseFloat(v, 64)
		} else if v, ok := strings.CutPrefix(line, "airlock_policy_evaluation_seconds_count "); ok {
			count, err = strconv.ParseFloat(v, 64)
		}
		if err != nil {
			return 0, fmt.Errorf("%s: %q: %w", metricsURL, line, err)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	if count == 0 {
		return 0, fmt.Errorf("%s: no policy evaluations counted", metricsURL)
	}
	return within / count, nil
}

// benchGrant makes a tool grant through the running broker's API.
func benchGrant(ctx context.Context, stateDir, tool string) error {
	refs, err := findBrokers(stateDir, false)
	if err != nil {
		return err
	}
	c := &apiClient{ref: refs[0], http: http.DefaultClient}
	return c.do(ctx, http.MethodPost, "/api/v1/grants", map[string]any{
		"server": "up", "tool": tool, "scope": "tool", "ttl": "24h", "reason": "bench",
	}, nil)
}

// benchHeld holds many calls at once over stdio and reports the memory
// Airlock needs for them.
func benchHeld(ctx context.Context, out io.Writer, self string, up *benchUpstream, work string, o benchOptions) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	p := &benchProcs{ctx: ctx, self: self}
	defer p.stop()
	stateDir := filepath.Join(work, "held")
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return err
	}
	cfg := filepath.Join(stateDir, "airlock.yaml")
	// The limits on held calls are raised to what is measured.
	os.WriteFile(cfg, fmt.Appendf(nil, "state_dir: %s\nlog_level: error\nhold_wait: 10m\npolicy: {dir: %s}\nlimits: {held_calls: %d, held_calls_per_principal: %d}\n",
		stateDir, filepath.Join(work, "policy"), o.held, o.held), 0o600)
	argv := append([]string{self, "wrap", "--name", "up", "-c", cfg, "--"}, up.stdio...)
	airlock, in, stdout, err := p.start(argv, nil, true)
	if err != nil {
		return err
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-bench", Version: "1"}, nil)
	cs, err := client.Connect(ctx, &mcp.IOTransport{Reader: stdout, Writer: in}, &mcp.ClientSessionOptions{ProtocolVersion: relay.LatestProtocolVersion})
	if err != nil {
		return err
	}
	defer cs.Close()
	if _, err := cs.ListTools(ctx, nil); err != nil {
		return err
	}
	idle := procStatus(airlock.Process.Pid, "VmRSS")
	call := up.calls["granted"] // held by the bench policy
	callCtx, stopCalls := context.WithCancel(ctx)
	defer stopCalls()
	start := time.Now()
	// Each call's end, with whether it ran (an approved call's result).
	ended := make(chan bool, o.held)
	for i := range o.held {
		args := map[string]any{"n": i}
		for k, v := range call.args {
			args[k] = v
		}
		go func() {
			res, err := cs.CallTool(callCtx, &mcp.CallToolParams{Name: call.tool, Arguments: args})
			ended <- err == nil && !res.IsError
		}()
	}
	refs, err := waitBroker(ctx, stateDir)
	if err != nil {
		return err
	}
	for {
		n, err := heldNow(ctx, refs.Info.URL)
		if err != nil {
			return err
		}
		if n >= o.held {
			break
		}
		if time.Since(start) > 5*time.Minute {
			return fmt.Errorf("only %d of %d calls held after 5 minutes", n, o.held)
		}
		time.Sleep(100 * time.Millisecond)
	}
	held := procStatus(airlock.Process.Pid, "VmRSS")
	peak := procStatus(airlock.Process.Pid, "VmHWM")
	toHold := time.Since(start)
	lat, err := approveToRelease(ctx, refs, ended, min(o.held, 200))
	if err != nil {
		return err
	}
	res := map[string]any{
		"held": o.held, "seconds_to_hold": toHold.Seconds(),
		"idle_rss_kib": idle, "held_rss_kib": held, "peak_rss_kib": peak,
		"kib_per_held_call":        float64(held-idle) / float64(o.held),
		"released":                 len(lat),
		"approve_to_result_p50_us": quantileUS(lat, 0.5),
		"approve_to_result_p99_us": quantileUS(lat, 0.99),
	}
	if o.jsonOut {
		return json.NewEncoder(out).Encode(res)
	}
	fmt.Fprintf(out, "%d calls held in %.1fs: Airlock RSS %.1f MiB (idle %.1f MiB, peak %.1f MiB), %.1f KiB per held call\n",
		o.held, res["seconds_to_hold"], float64(held)/1024, float64(idle)/1024, float64(peak)/1024, res["kib_per_held_call"])
	fmt.Fprintf(out, "approve to result, %d calls approved one at a time through the API among the held: p50 %.0f µs, p99 %.0f µs\n",
		len(lat), res["approve_to_result_p50_us"], res["approve_to_result_p99_us"])
	return nil
}

// approveToRelease approves n held calls one at a time through the API and
// measures, for each, from sending the approval to its caller having the
// result: the approver's wait for the durable decision, the release, the
// upstream's answer and the relay back.
func approveToRelease(ctx context.Context, ref brokerRef, ended <-chan bool, n int) ([]time.Duration, error) {
	api := &apiClient{ref: ref, http: &http.Client{Timeout: 30 * time.Second}}
	var page struct{ Approvals []broker.Approval }
	if err := api.do(ctx, http.MethodGet, fmt.Sprintf("/api/v1/approvals?status=pending&limit=%d", n), nil, &page); err != nil {
		return nil, err
	}
	lat := make([]time.Duration, 0, n)
	for _, a := range page.Approvals {
		t0 := time.Now()
		body := broker.VoteRequest{Verdict: broker.Approve, Approver: "bench", Channel: "api"}
		if err := api.do(ctx, http.MethodPost, "/api/v1/approvals/"+a.ID+"/decision", body, nil); err != nil {
			return nil, fmt.Errorf("approve %s: %w", a.ID, err)
		}
		select {
		case ran := <-ended:
			if !ran {
				return nil, fmt.Errorf("a held call ended without its result after %s was approved", a.ID)
			}
		case <-time.After(30 * time.Second):
			return nil, fmt.Errorf("approved call %s not released within 30s", a.ID)
		}
		lat = append(lat, time.Since(t0))
	}
	return lat, nil
}

// quantileUS is the q-quantile of ds in µs.
func quantileUS(ds []time.Duration, q float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	ds = slices.Sorted(slices.Values(ds))
	return float64(ds[int(q*float64(len(ds)-1))].Nanoseconds()) / 1e3
}

func waitBroker(ctx context.Context, stateDir string) (brokerRef, error) {
	for range 200 {
		if refs, err := findBrokers(stateDir, false); err == nil {
			return refs[0], nil
		}
		select {
		case <-ctx.Done():
			return brokerRef{}, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return brokerRef{}, errors.New("the broker did not write its api.json")
}

// heldNow reads the number of held calls from the broker's metrics.
func heldNow(ctx context.Context, base string) (int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "airlock_held_calls "); ok {
			f, err := strconv.ParseFloat(v, 64)
			return int(f), err
		}
	}
	return 0, sc.Err()
}

// measure keeps callers operations in flight for d and returns every
// operation's latency.
func measure(ctx context.Context, op func() error, callers int, d time.Duration) ([]time.Duration, error) {
	var (
		mu       sync.Mutex
		all      []time.Duration
		firstErr atomic.Value
		wg       sync.WaitGroup
	)
	deadline := time.Now().Add(d)
	for range callers {
		wg.Go(func() {
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) {
				t0 := time.Now()
				if err := op(); err != nil {
					firstErr.CompareAndSwap(nil, err)
					return
				}
				local = append(local, time.Since(t0))
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		})
	}
	wg.Wait()
	if err, ok := firstErr.Load().(error); ok {
		return nil, err
	}
	return all, ctx.Err()
}

func summarize(lat []time.Duration, d time.Duration) benchResult {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*p)].Microseconds())
	}
	return benchResult{Calls: len(lat), PerSecond: float64(len(lat)) / d.Seconds(), P50: pct(0.50), P99: pct(0.99)}
}

// printBench prints, per workload, transport and callers, the direct path
// and each other path with its ratio to direct.
func printBench(out io.Writer, rs []benchResult) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "workload\ttransport\tcallers\tpath\tcalls/s\tof direct\tp50 µs\tadded p50\tp99 µs\tadded p99\tCPU µs/call\tpeak RSS MiB\tpolicy ≤100µs\t")
	var direct benchResult
	for _, r := range rs {
		if r.Path == "direct" {
			direct = r
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%.0f\t\t%.0f\t\t%.0f\t\t\t\t\t\n", r.Workload, r.Transport, r.Callers, r.Path, r.PerSecond, r.P50, r.P99)
			continue
		}
		rss, cpu, pol := "", "", ""
		if r.PeakRSS > 0 {
			rss = fmt.Sprintf("%.1f", float64(r.PeakRSS)/1024)
		}
		if r.CPUPerCall > 0 {
			cpu = fmt.Sprintf("%.0f", r.CPUPerCall)
		}
		if r.PolicyWithin100us > 0 {
			pol = fmt.Sprintf("%.1f%%", 100*r.PolicyWithin100us)
		}
		fmt.Fprintf(tw, "\t\t\t%s\t%.0f\t%.0f%%\t%.0f\t%+.0f\t%.0f\t%+.0f\t%s\t%s\t%s\t\n", r.Path, r.PerSecond, 100*r.PerSecond/direct.PerSecond,
			r.P50, r.P50-direct.P50, r.P99, r.P99-direct.P99, cpu, rss, pol)
	}
	tw.Flush()
	for _, c := range auditCosts(rs) {
		fmt.Fprintf(out, "audit cost over %s, %d caller(s): %.1f%% of calls/s (%.0f/s with audit on, %.0f/s off)\n",
			c.transport, c.callers, 100*(1-c.on/c.off), c.on, c.off)
	}
}

// auditCost compares Airlock's allowed calls with audit on and off.
type auditCost struct {
	transport string
	callers   int
	on, off   float64 // calls/s
}

// auditCosts pairs each "allowed" case through Airlock with its
// "allowed-unaudited" twin.
func auditCosts(rs []benchResult) []auditCost {
	var cs []auditCost
	for _, on := range rs {
		if on.Path != "airlock" || on.Workload != "allowed" {
			continue
		}
		for _, off := range rs {
			if off.Path == "airlock" && off.Workload == "allowed-unaudited" && off.Transport == on.Transport && off.Callers == on.Callers {
				cs = append(cs, auditCost{on.Transport, on.Callers, on.PerSecond, off.PerSecond})
			}
		}
	}
	return cs
}

// procCPU is a process's user and system CPU time so far, from /proc, or 0
// where /proc is not there.
func procCPU(pid int) time.Duration {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The fields after the command name, which is in parentheses and may
	// hold spaces: utime and stime are the 12th and 13th of them, in
	// clock ticks (100 a second on Linux).
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * 10 * time.Millisecond
}

// procStatus reads a memory field (VmRSS, VmHWM) of a process, in KiB, or
// 0 where /proc is not there.
func procStatus(pid int, field string) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for line := range bytes.Lines(data) {
		if v, ok := bytes.CutPrefix(line, []byte(field+":")); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(string(v)), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

func jsonList(ss []string) string {
	data, _ := json.Marshal(ss)
	return string(data)
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func waitTCP(ctx context.Context, addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come up: %w", addr, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
