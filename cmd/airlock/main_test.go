package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker/pgstore/pgtest"
)

// The test binary doubles as airlock itself and as a small upstream MCP
// server, so that subprocess tests need no separate build.
func TestMain(m *testing.M) {
	switch os.Getenv("AIRLOCK_TEST_ROLE") {
	case "airlock":
		os.Args = append([]string{"airlock"}, os.Args[1:]...)
		main()
		os.Exit(0)
	case "server":
		runTestServer(os.Getenv("AIRLOCK_TEST_SERVER"))
		os.Exit(0)
	}
	os.Exit(pgtest.Main(m))
}

// runTestServer is an upstream for subprocess tests. Modes:
//
//	echo  tools echo, pid and crash (read-only; crash exits with status 3),
//	      and write (destructive)
//	mute  reads its input and never answers
func runTestServer(mode string) {
	if mode == "mute" {
		buf := make([]byte, 4096)
		for {
			if _, err := os.Stdin.Read(buf); err != nil {
				os.Exit(0)
			}
		}
	}
	if pidFile := os.Getenv("AIRLOCK_TEST_PIDFILE"); pidFile != "" {
		os.WriteFile(pidFile, []byte(fmt.Sprint(os.Getpid())), 0o600)
	}
	s := mcp.NewServer(&mcp.Implementation{Name: "airlock-test-upstream", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "echo", InputSchema: json.RawMessage(`{"type":"object"}`), Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(req.Params.Arguments)}}}, nil
		})
	s.AddTool(&mcp.Tool{Name: "pid", InputSchema: json.RawMessage(`{"type":"object"}`), Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: fmt.Sprint(os.Getpid())}}}, nil
		})
	s.AddTool(&mcp.Tool{Name: "crash", InputSchema: json.RawMessage(`{"type":"object"}`), Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			fmt.Fprintln(os.Stderr, "test upstream: crashing on purpose")
			os.Exit(3)
			return nil, nil
		})
	yes := true
	s.AddTool(&mcp.Tool{Name: "write", InputSchema: json.RawMessage(`{"type":"object"}`), Annotations: &mcp.ToolAnnotations{DestructiveHint: &yes}},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: "wrote " + string(req.Params.Arguments)}}}, nil
		})
	if err := s.Run(context.Background(), &mcp.StdioTransport{}); err != nil {
		fmt.Fprintln(os.Stderr, "test upstream:", err)
		os.Exit(1)
	}
}

// airlockCmd runs the test binary as airlock with args, with the test's
// own state home, so that brokers and CLI commands of one test find each
// other and never the user's.
func airlockCmd(t testing.TB, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "AIRLOCK_TEST_ROLE=airlock", "XDG_STATE_HOME="+testStateHome(t), "AIRLOCK_STATE_DIR=", "AIRLOCK_DATABASE_URL=")
	return cmd
}

var stateHomes sync.Map // test name → directory

func testStateHome(t testing.TB) string {
	if d, ok := stateHomes.Load(t.Name()); ok {
		return d.(string)
	}
	// Goroutines of one test may ask at once: one directory wins.
	d, _ := stateHomes.LoadOrStore(t.Name(), t.TempDir())
	return d.(string)
}

// allowAllConfig is a config file whose policy allows every call.
func allowAllConfig(t *testing.T) string {
	p := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(p, []byte("policy: {dir: "+allowAllPolicy(t)+"}\n"), 0o600)
	return p
}

// allowAllPolicy is a policy directory that allows every call, for tests
// about the relay rather than the gate.
func allowAllPolicy(t testing.TB) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "airlock.rego"), []byte(`package airlock

decision := {"action": "allow", "reason": "this test allows every call"}
`), 0o600)
	return dir
}

// testServerArgs is the command line of the test upstream in mode.
func testServerArgs(mode string, env ...string) []string {
	return append(append([]string{"env", "AIRLOCK_TEST_ROLE=server", "AIRLOCK_TEST_SERVER=" + mode}, env...), os.Args[0])
}

// syncBuffer collects a subprocess's stderr for assertions.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// wrapClient starts `airlock wrap -- upstream...` and connects an MCP
// client to it over its stdin and stdout.
func wrapClient(t *testing.T, extra []string, upstream ...string) (*mcp.ClientSession, *exec.Cmd, *syncBuffer) {
	t.Helper()
	args := append(append([]string{"wrap"}, extra...), "--")
	cmd := airlockCmd(t, append(args, upstream...)...)
	cs, stderr, err := connectCmd(cmd)
	if err != nil {
		t.Fatalf("connect through airlock wrap: %v\nstderr:\n%s", err, stderr)
	}
	return cs, cmd, stderr
}

// connectCmd starts cmd and connects an MCP client to its stdio. (The
// SDK's CommandTransport would reap the process itself, and the tests need
// its exit status.)
func connectCmd(cmd *exec.Cmd) (*mcp.ClientSession, *syncBuffer, error) {
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, stderr, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, stderr, err
	}
	if err := cmd.Start(); err != nil {
		return nil, stderr, err
	}
	c := mcp.NewClient(&mcp.Implementation{Name: "wrap-test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cs, err := c.Connect(ctx, &mcp.IOTransport{Reader: stdout, Writer: stdin}, nil)
	return cs, stderr, err
}

// exitCode waits for cmd and returns its exit status.
func exitCode(t testing.TB, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan struct{})
	go func() {
		cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatal("airlock did not exit")
	}
	return cmd.ProcessState.ExitCode()
}

func freePort(t testing.TB) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startServe runs `airlock serve` with the given config and waits until it
// answers /healthz.
func startServe(t *testing.T, config string) (base string, stderr *syncBuffer) {
	t.Helper()
	addr := freePort(t)
	path := filepath.Join(t.TempDir(), "airlock.yaml")
	if err := os.WriteFile(path, []byte("listen: "+addr+"\n"+config), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := airlockCmd(t, "serve", "-c", path)
	stderr = &syncBuffer{}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		if code := exitCode(t, cmd); code != 0 {
			t.Errorf("serve exited %d\n%s", code, stderr)
		}
	})
	base = "http://" + addr
	waitHealthy(t, base, stderr)
	return base, stderr
}

// waitHealthy waits until the broker at base answers /healthz.
func waitHealthy(t testing.TB, base string, stderr *syncBuffer) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not come up: %v\n%s", err, stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func httpSession(t *testing.T, url string) *mcp.ClientSession {
	t.Helper()
	c := mcp.NewClient(&mcp.Implementation{Name: "serve-test", Version: "1"}, nil)
	cs, err := c.Connect(context.Background(), &mcp.StreamableClientTransport{Endpoint: url}, nil)
	if err != nil {
		t.Fatalf("connect to %s: %v", url, err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs
}

// callText calls a tool and returns the text of its result.
func callText(t *testing.T, cs *mcp.ClientSession, tool string, args any) string {
	t.Helper()
	res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("call %s: %v", tool, err)
	}
	var parts []string
	for _, c := range res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func netDial(addr string) (net.Conn, error) { return net.DialTimeout("tcp", addr, time.Second) }
