package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
)

type benchOptions struct {
	duration   time.Duration
	callers    []int
	transports []string
	jsonOut    bool
}

func newBenchCmd() *cobra.Command {
	var o benchOptions
	var callers, transports string
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "Measure what Airlock adds to a tool call, against the same server directly",
		Long: `bench starts a small Go MCP echo server as a real process and calls its
read-only "echo" tool, first directly and then through Airlock (wrap over
stdio, serve over streamable HTTP), in the same run, at each number of
concurrent callers. It reports calls/s and latency for both, and their ratio:
figures from one run on one machine, comparable with each other only.`,
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
			return runBench(cmd.Context(), cmd.OutOrStdout(), o)
		},
	}
	cmd.Flags().DurationVar(&o.duration, "duration", 3*time.Second, "measuring time for each case")
	cmd.Flags().StringVar(&callers, "callers", "1,8,64", "numbers of concurrent callers, comma-separated")
	cmd.Flags().StringVar(&transports, "transports", "stdio,http", "transports to measure: stdio, http")
	cmd.Flags().BoolVar(&o.jsonOut, "json", false, "print results as JSON")
	cmd.AddCommand(newEchoServerCmd())
	return cmd
}

// newEchoServerCmd is the upstream bench measures: as little server as an
// MCP tool call can have, so that the cost of what sits in front shows.
func newEchoServerCmd() *cobra.Command {
	var addr string
	cmd := &cobra.Command{
		Use:    "echo-server",
		Short:  "Serve a minimal MCP echo tool (the bench upstream)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			s := mcp.NewServer(&mcp.Implementation{Name: "airlock-bench-echo", Version: "1"}, nil)
			s.AddTool(&mcp.Tool{Name: "echo", Description: "Echo the arguments back.", InputSchema: json.RawMessage(`{"type":"object"}`),
				Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
				func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
					return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(req.Params.Arguments)}}}, nil
				})
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

// benchResult is one measured case.
type benchResult struct {
	Transport string  `json:"transport"`
	Path      string  `json:"path"` // "direct" or "airlock"
	Callers   int     `json:"callers"`
	Calls     int     `json:"calls"`
	PerSecond float64 `json:"calls_per_second"`
	P50       float64 `json:"p50_us"`
	P99       float64 `json:"p99_us"`
}

func runBench(ctx context.Context, out io.Writer, o benchOptions) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	var results []benchResult
	for _, tr := range o.transports {
		for _, n := range o.callers {
			// Direct and through Airlock back to back, so that both see
			// the same machine.
			for _, path := range []string{"direct", "airlock"} {
				r, err := benchCase(ctx, self, tr, path, n, o.duration)
				if err != nil {
					return fmt.Errorf("bench %s %s at %d callers: %w", tr, path, n, err)
				}
				results = append(results, r)
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

// benchCase starts the processes for one case, connects a client and
// measures it.
func benchCase(ctx context.Context, self, transport, path string, callers int, d time.Duration) (benchResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var procs []*exec.Cmd
	defer func() {
		for _, p := range procs {
			p.Process.Signal(os.Interrupt)
			p.Wait()
		}
	}()
	start := func(args ...string) (*exec.Cmd, error) {
		c := exec.CommandContext(ctx, self, args...)
		c.Stderr = nil // the bench's own output stays readable
		c.Cancel = func() error { return c.Process.Signal(os.Interrupt) }
		return c, nil
	}

	var t mcp.Transport
	switch transport {
	case "stdio":
		args := []string{"bench", "echo-server"}
		if path == "airlock" {
			args = append([]string{"wrap", "--name", "echo", "--", self}, args...)
		}
		c, _ := start(args...)
		stdin, _ := c.StdinPipe()
		stdout, _ := c.StdoutPipe()
		if err := c.Start(); err != nil {
			return benchResult{}, err
		}
		procs = append(procs, c)
		t = &mcp.IOTransport{Reader: stdout, Writer: stdin}
	case "http":
		echoAddr, err := freeAddr()
		if err != nil {
			return benchResult{}, err
		}
		c, _ := start("bench", "echo-server", "--http", echoAddr)
		if err := c.Start(); err != nil {
			return benchResult{}, err
		}
		procs = append(procs, c)
		url := "http://" + echoAddr + "/"
		if err := waitHTTP(ctx, url); err != nil {
			return benchResult{}, err
		}
		if path == "airlock" {
			airlockAddr, err := freeAddr()
			if err != nil {
				return benchResult{}, err
			}
			cfg := filepath.Join(os.TempDir(), fmt.Sprintf("airlock-bench-%d.yaml", os.Getpid()))
			os.WriteFile(cfg, fmt.Appendf(nil, "listen: %s\nlog_level: warn\nservers:\n  echo:\n    url: %s\n", airlockAddr, url), 0o600)
			defer os.Remove(cfg)
			c, _ := start("serve", "-c", cfg)
			if err := c.Start(); err != nil {
				return benchResult{}, err
			}
			procs = append(procs, c)
			url = "http://" + airlockAddr + "/mcp/echo"
			if err := waitHTTP(ctx, "http://"+airlockAddr+"/healthz"); err != nil {
				return benchResult{}, err
			}
		}
		t = &mcp.StreamableClientTransport{Endpoint: url, DisableStandaloneSSE: true}
	}
	client := mcp.NewClient(&mcp.Implementation{Name: "airlock-bench", Version: "1"}, nil)
	cs, err := client.Connect(ctx, t, &mcp.ClientSessionOptions{ProtocolVersion: "2025-11-25"})
	if err != nil {
		return benchResult{}, err
	}
	defer cs.Close()
	lat, err := measure(ctx, cs, callers, d)
	if err != nil {
		return benchResult{}, err
	}
	return summarize(transport, path, callers, d, lat), nil
}

// measure keeps callers calls in flight for d, after a short warm-up, and
// returns every call's latency.
func measure(ctx context.Context, cs *mcp.ClientSession, callers int, d time.Duration) ([]time.Duration, error) {
	args := map[string]any{"text": "hello"}
	call := func() error {
		_, err := cs.CallTool(ctx, &mcp.CallToolParams{Name: "echo", Arguments: args})
		return err
	}
	for range 200 {
		if err := call(); err != nil {
			return nil, err
		}
	}
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
				if err := call(); err != nil {
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
	return all, nil
}

func summarize(transport, path string, callers int, d time.Duration, lat []time.Duration) benchResult {
	slices.Sort(lat)
	pct := func(p float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return float64(lat[int(float64(len(lat)-1)*p)].Microseconds())
	}
	return benchResult{
		Transport: transport, Path: path, Callers: callers, Calls: len(lat),
		PerSecond: float64(len(lat)) / d.Seconds(), P50: pct(0.50), P99: pct(0.99),
	}
}

func printBench(out io.Writer, rs []benchResult) {
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "transport\tcallers\tdirect calls/s\tairlock calls/s\tratio\tdirect p50 µs\tairlock p50 µs\tadded p50 µs\tdirect p99 µs\tairlock p99 µs\tadded p99 µs\t")
	for i := 0; i+1 < len(rs); i += 2 {
		d, a := rs[i], rs[i+1]
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f%%\t%.0f\t%.0f\t%+.0f\t%.0f\t%.0f\t%+.0f\t\n",
			d.Transport, d.Callers, d.PerSecond, a.PerSecond, 100*a.PerSecond/d.PerSecond,
			d.P50, a.P50, a.P50-d.P50, d.P99, a.P99, a.P99-d.P99)
	}
	tw.Flush()
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

func waitHTTP(ctx context.Context, url string) error {
	deadline := time.Now().Add(10 * time.Second)
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not come up: %w", url, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
