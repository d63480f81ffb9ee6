package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// TestClientCompat is the client-compatibility matrix (docs/clients.md):
// real clients — the TypeScript SDK's (testdata/node/compat-client.mjs)
// and the go-sdk's — over stdio (airlock wrap) and streamable HTTP
// (airlock serve), each held call ending as a client of that kind will
// see it. Its subtests are named scenario/client/transport, the names
// docs/clients.md gives for its rows; change both together.
func TestClientCompat(t *testing.T) {
	for _, sc := range compatScenarios {
		t.Run(sc.name, func(t *testing.T) {
			t.Parallel()
			for _, client := range []string{"ts", "go"} {
				for _, transport := range []string{"stdio", "http"} {
					if sc.stdioOnly && transport != "stdio" || sc.tsOnly && client != "ts" {
						continue
					}
					t.Run(client+"/"+transport, func(t *testing.T) {
						t.Parallel()
						sc.run(t, startCompat(t, client, transport, sc.settings))
					})
				}
			}
		})
	}
}

// compatSettings are a scenario's Airlock settings; the zero value is
// the suite's short defaults.
type compatSettings struct {
	holdWait, holdWaitProgress string // defaults 2s, 3s
	approvalTimeout            string // the policy's timeout, default 10m
	offerTasks                 bool
}

var compatScenarios = []struct {
	name      string
	settings  compatSettings
	stdioOnly bool
	tsOnly    bool
	run       func(t *testing.T, r *compatRig)
}{
	// No progress token, and a client timeout longer than hold_wait: the
	// first call is answered "Approval pending" and the retry runs it.
	{name: "pending-then-retry", run: func(t *testing.T, r *compatRig) {
		r.call(compatCall{ID: "first", Timeout: 10 * time.Second})
		first := r.next(t)
		p := pending(t, 1)[0]
		if !first.IsError || !strings.Contains(first.Text, "Approval pending (ref "+p.ID+")") ||
			!strings.Contains(first.Text, "Call the tool again with the same arguments") {
			t.Fatalf("first attempt: %+v", first)
		}
		r.approve(t, p.ID)
		r.call(compatCall{ID: "retry", Timeout: 10 * time.Second})
		r.wrote(t, r.next(t))
		r.oneWrite(t)
	}},
	// A progress token, and a client that resets its timeout on progress
	// (the TS SDK's resetTimeoutOnProgress with a 1 s timeout; the go-sdk
	// without a deadline): the call waits through heartbeats and runs.
	{name: "progress-waits", settings: compatSettings{holdWaitProgress: "20s"}, run: func(t *testing.T, r *compatRig) {
		r.call(compatCall{ID: "call", Timeout: time.Second, Progress: true, Reset: true})
		p := pending(t, 1)[0]
		time.Sleep(2 * time.Second) // twice the TS client's timeout, four heartbeats
		r.approve(t, p.ID)
		res := r.next(t)
		r.wrote(t, res)
		if res.Progress < 2 {
			t.Errorf("the client heard %d progress notifications", res.Progress)
		}
		r.oneWrite(t)
	}},
	// A progress token but a timeout that progress does not reset, longer
	// than hold_wait_progress: "Approval pending" then, and the retry
	// joins the same approval.
	{name: "progress-pending-then-retry", run: func(t *testing.T, r *compatRig) {
		r.call(compatCall{ID: "first", Timeout: 10 * time.Second, Progress: true})
		first := r.next(t)
		p := pending(t, 1)[0]
		if !first.IsError || !strings.Contains(first.Text, "Approval pending (ref "+p.ID+")") || first.Progress < 2 {
			t.Fatalf("first attempt: %+v", first)
		}
		r.call(compatCall{ID: "retry", Timeout: 10 * time.Second, Progress: true})
		time.Sleep(500 * time.Millisecond)
		if again := pending(t, 1)[0]; again.ID != p.ID {
			t.Fatalf("the retry waits for %s, not %s", again.ID, p.ID)
		}
		r.approve(t, p.ID)
		r.wrote(t, r.next(t))
		r.oneWrite(t)
	}},
	// A client timeout below hold_wait: the client cancels, saying it
	// timed out; the approval stays open (cancel_grace) and the retry
	// joins it.
	{name: "client-timeout-then-retry", run: func(t *testing.T, r *compatRig) {
		r.call(compatCall{ID: "first", Timeout: time.Second})
		first := r.next(t)
		if !strings.Contains(first.Error, "timed out") && !strings.Contains(first.Error, "deadline exceeded") {
			t.Fatalf("first attempt: %+v", first)
		}
		time.Sleep(500 * time.Millisecond) // the cancellation has arrived
		p := pending(t, 1)[0]
		if a := r.audit(t); strings.Contains(a, `"approval.withdrawn"`) {
			t.Fatalf("the approval was withdrawn when the client timed out:\n%s", a)
		}
		r.call(compatCall{ID: "retry", Timeout: 10 * time.Second})
		r.approve(t, p.ID)
		r.wrote(t, r.next(t))
		r.oneWrite(t)
	}},
	// A plain cancel (AbortController; the go-sdk's context) withdraws
	// the approval. (The go-sdk over HTTP closes the request's stream
	// before its notifications/cancelled arrives; the relay waits a moment
	// for it, in relay/streamable.go.)
	{name: "cancel-withdraws", settings: compatSettings{holdWait: "30s"}, run: func(t *testing.T, r *compatRig) {
		r.call(compatCall{ID: "call", Timeout: 30 * time.Second})
		p := pending(t, 1)[0]
		r.abort("call")
		if res := r.next(t); res.Error == "" {
			t.Errorf("the cancelled call got %+v", res)
		}
		pending(t, 0)
		a := r.audit(t)
		if !strings.Contains(a, `"approval.withdrawn"`) || !strings.Contains(a, `"reason":"the client cancelled the call`) || !strings.Contains(a, p.ID) {
			t.Errorf("the audit log does not say the client cancelled:\n%s", a)
		}
		r.noWrite(t, a)
	}},
	{name: "deny", settings: compatSettings{holdWait: "30s"}, run: func(t *testing.T, r *compatRig) {
		r.call(compatCall{ID: "call", Timeout: 30 * time.Second})
		p := pending(t, 1)[0]
		if _, err := cli(t, "deny", p.ID, "--reason", "not that"); err != nil {
			t.Fatal(err)
		}
		res := r.next(t)
		if !res.IsError || !strings.Contains(res.Text, "The call to write was denied by admin: not that (ref "+p.ID+")") {
			t.Errorf("after the denial: %+v", res)
		}
		r.noWrite(t, r.audit(t))
	}},
	{name: "expiry", settings: compatSettings{holdWait: "30s", approvalTimeout: "2s"}, run: func(t *testing.T, r *compatRig) {
		r.call(compatCall{ID: "call", Timeout: 30 * time.Second})
		res := r.next(t)
		if !res.IsError || !strings.Contains(res.Text, "nobody decided within 2s, so the request expired") {
			t.Errorf("after the expiry: %+v", res)
		}
		r.noWrite(t, r.audit(t))
	}},
	// The client dies (SIGKILL; the go-sdk row closes the pipes as a
	// killed process's close): wrap withdraws the call and exits 0.
	{name: "client-killed", stdioOnly: true, settings: compatSettings{holdWait: "30s"}, run: func(t *testing.T, r *compatRig) {
		r.call(compatCall{ID: "call", Timeout: 30 * time.Second})
		p := pending(t, 1)[0]
		killed := time.Now()
		if code := r.kill(t); code != 0 {
			t.Errorf("wrap exited %d after its client was killed", code)
		}
		if d := time.Since(killed); d > 3*time.Second {
			t.Errorf("wrap took %s to withdraw and exit", d)
		}
		a, err := cli(t, "audit", "--json", "-n", "100", "--state-dir", filepath.Join(testStateHome(t), "airlock", wrapsDir))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(a, `"approval.withdrawn"`) || !strings.Contains(a, "the client's session ended") || !strings.Contains(a, p.ID) {
			t.Errorf("the audit log does not say the call was withdrawn:\n%s", a)
		}
		r.noWrite(t, a)
	}},
	// A held call that asks for a task (offer_tasks, since the test
	// upstream says nothing of tasks) is an Airlock task at once; approved,
	// the task's result is the upstream's. TestTypeScriptClientTask covers
	// an upstream that requires tasks, and a denial.
	{name: "task", tsOnly: true, settings: compatSettings{offerTasks: true}, run: func(t *testing.T, r *compatRig) {
		r.call(compatCall{ID: "call", Timeout: 30 * time.Second, Task: true})
		created := r.next(t)
		p := pending(t, 1)[0]
		if created.Type != "taskCreated" || created.Status != "working" ||
			created.StatusMessage != "waiting for approval (ref "+p.ID+"): writes need a person" {
			t.Fatalf("task created: %+v", created)
		}
		time.Sleep(3 * time.Second) // past hold_wait: a task is not cut off
		r.approve(t, p.ID)
		for {
			m := r.next(t)
			if m.Type == "result" {
				r.wrote(t, m)
				break
			}
			if m.Type != "taskStatus" {
				t.Fatalf("before the result: %+v", m)
			}
		}
		r.oneWrite(t)
	}},
}

// compatCall is one call of the write tool. Reset asks the client to
// reset its timeout on progress; the go-sdk cannot, so it sets no
// deadline instead.
type compatCall struct {
	ID       string        `json:"id"`
	Timeout  time.Duration `json:"-"`
	Progress bool          `json:"progress"`
	Reset    bool          `json:"reset"`
	Task     bool          `json:"task"`
}

// compatResult is what a client got: a result, an error, or (a task
// call) one message of its stream.
type compatResult struct {
	ID            string `json:"id"`
	IsError       bool   `json:"isError"`
	Text          string `json:"text"`
	Progress      int    `json:"progress"`
	Error         string `json:"error"`
	Type          string `json:"type"`
	Status        string `json:"status"`
	StatusMessage string `json:"statusMessage"`
}

// compatClient is a client of either SDK, connected to Airlock.
type compatClient interface {
	call(c compatCall)
	abort(id string)
	results() <-chan compatResult
	// kill kills the client (stdio only) and returns wrap's exit status.
	kill(t *testing.T) int
}

// compatRig is one subtest's Airlock and client.
type compatRig struct {
	compatClient
	logs *syncBuffer // the broker's stderr, for failures
}

func startCompat(t *testing.T, client, transport string, s compatSettings) *compatRig {
	t.Helper()
	policyDir := t.TempDir()
	timeout := s.approvalTimeout
	if timeout == "" {
		timeout = "10m"
	}
	os.WriteFile(filepath.Join(policyDir, "airlock.rego"), fmt.Appendf(nil, `package airlock

decision := {"action": "allow", "reason": "reads pass"} if {
	input.tool.annotations.readOnlyHint
} else := {"action": "hold", "reason": "writes need a person", "timeout": %q}
`, timeout), 0o600)
	cfg := fmt.Sprintf("policy: {dir: %s}\nhold_wait: %s\nheartbeat: 500ms\nhold_wait_progress: %s\noffer_tasks: %v\n",
		policyDir, or(s.holdWait, "2s"), or(s.holdWaitProgress, "3s"), s.offerTasks)
	r := &compatRig{logs: &syncBuffer{}}
	var url string
	var wrap []string
	if transport == "http" {
		base, logs := startServe(t, cfg+fmt.Sprintf("servers:\n  t:\n    command: env\n    args: [\"AIRLOCK_TEST_ROLE=server\", \"AIRLOCK_TEST_SERVER=echo\", %q]\n", os.Args[0]))
		url, r.logs = base+"/mcp/t", logs
	} else {
		path := filepath.Join(t.TempDir(), "airlock.yaml")
		os.WriteFile(path, []byte(cfg), 0o600)
		wrap = append([]string{"wrap", "--name", "t", "-c", path, "--"}, testServerArgs("echo")...)
	}
	if client == "ts" {
		r.compatClient = startTSClient(t, url, wrap, r.logs)
	} else {
		r.compatClient = startGoClient(t, url, wrap, r.logs)
	}
	return r
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (r *compatRig) next(t *testing.T) compatResult {
	t.Helper()
	select {
	case m, ok := <-r.results():
		if !ok {
			t.Fatalf("the client ended without output\n%s", r.logs)
		}
		return m
	case <-time.After(30 * time.Second):
		t.Fatalf("no output from the client\n%s", r.logs)
	}
	return compatResult{}
}

func (r *compatRig) approve(t *testing.T, id string) {
	t.Helper()
	if _, err := cli(t, "approve", id); err != nil {
		t.Fatal(err)
	}
}

// wrote checks that the client read the upstream's answer.
func (r *compatRig) wrote(t *testing.T, res compatResult) {
	t.Helper()
	if res.IsError || res.Text != `wrote {"n":1}` {
		t.Errorf("the client got %+v, want the write's result\n%s", res, r.logs)
	}
}

func (r *compatRig) audit(t *testing.T) string {
	t.Helper()
	out, err := cli(t, "audit", "--json", "-n", "100")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// oneWrite checks that one call was held and released: the retry joined
// the first attempt's approval.
func (r *compatRig) oneWrite(t *testing.T) {
	t.Helper()
	a := r.audit(t)
	if held, released := strings.Count(a, `"call.held"`), strings.Count(a, `"call.released"`); held != 1 || released != 1 {
		t.Errorf("%d calls held and %d released, want one write:\n%s", held, released, a)
	}
}

func (r *compatRig) noWrite(t *testing.T, audit string) {
	t.Helper()
	if strings.Contains(audit, `"call.released"`) {
		t.Errorf("a call was released:\n%s", audit)
	}
}

// tsClient is testdata/node/compat-client.mjs.
type tsClient struct {
	cmd      *exec.Cmd
	in       io.WriteCloser
	out      chan compatResult
	exitFile string // where the stdio row's shell writes wrap's exit status
}

func startTSClient(t *testing.T, url string, wrap []string, logs *syncBuffer) *tsClient {
	node := brokertest.Node(t)
	c := &tsClient{out: make(chan compatResult, 16), exitFile: filepath.Join(t.TempDir(), "wrap.exit")}
	args := []string{filepath.Join(brokertest.RepoRoot(t), "testdata", "node", "compat-client.mjs")}
	if url != "" {
		args = append(args, "http", url)
	} else {
		// wrap is the client's child: a shell in between tells the test
		// how it exited.
		args = append(append(args, "stdio", "sh", "-c", `"$@"; echo $? >"$0"`, c.exitFile, os.Args[0]), wrap...)
	}
	c.cmd = airlockCmd(t, args...)
	c.cmd.Path, c.cmd.Args[0] = node, node
	c.cmd.Stderr = logs
	c.in, _ = c.cmd.StdinPipe()
	out, _ := c.cmd.StdoutPipe()
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.in.Write([]byte(`{"op":"exit"}` + "\n"))
		c.in.Close()
		done := make(chan struct{})
		go func() { c.cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			c.cmd.Process.Kill()
			<-done
		}
	})
	ready := make(chan bool, 1)
	go func() {
		defer close(c.out)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), `{"ready"`) {
				ready <- true
				continue
			}
			var m compatResult
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				m.Error = "unreadable output: " + sc.Text()
			}
			c.out <- m
		}
		close(ready)
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatalf("the TypeScript client did not connect\n%s", logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("the TypeScript client did not connect\n%s", logs)
	}
	return c
}

func (c *tsClient) send(m map[string]any) {
	b, _ := json.Marshal(m)
	c.in.Write(append(b, '\n'))
}

func (c *tsClient) call(cc compatCall) {
	c.send(map[string]any{"op": "call", "id": cc.ID, "timeout": cc.Timeout.Milliseconds(), "progress": cc.Progress, "reset": cc.Reset, "task": cc.Task})
}

func (c *tsClient) abort(id string) { c.send(map[string]any{"op": "abort", "id": id}) }

func (c *tsClient) results() <-chan compatResult { return c.out }

func (c *tsClient) kill(t *testing.T) int {
	c.cmd.Process.Kill()
	deadline := time.Now().Add(20 * time.Second)
	for {
		b, err := os.ReadFile(c.exitFile)
		if s := strings.TrimSpace(string(b)); err == nil && s != "" {
			code, _ := strconv.Atoi(s)
			return code
		}
		if time.Now().After(deadline) {
			t.Fatal("wrap did not exit after its client was killed")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// goClient is the go-sdk's client, in this process.
type goClient struct {
	cs   *mcp.ClientSession
	wrap *exec.Cmd
	// The client's ends of wrap's pipes: closing them is its death.
	pipes []io.Closer
	out   chan compatResult

	mu       sync.Mutex
	cancels  map[string]context.CancelFunc
	progress map[string]int // by progress token
}

func startGoClient(t *testing.T, url string, wrap []string, logs *syncBuffer) *goClient {
	c := &goClient{out: make(chan compatResult, 16), cancels: map[string]context.CancelFunc{}, progress: map[string]int{}}
	client := mcp.NewClient(&mcp.Implementation{Name: "go-compat-test", Version: "1"}, &mcp.ClientOptions{
		ProgressNotificationHandler: func(_ context.Context, req *mcp.ProgressNotificationClientRequest) {
			c.mu.Lock()
			c.progress[fmt.Sprint(req.Params.ProgressToken)]++
			c.mu.Unlock()
		},
	})
	var transport mcp.Transport
	if url != "" {
		transport = &mcp.StreamableClientTransport{Endpoint: url}
	} else {
		c.wrap = airlockCmd(t, wrap...)
		stdin, _ := c.wrap.StdinPipe()
		stdout, _ := c.wrap.StdoutPipe()
		// stderr goes to the client too, and dies with it.
		stderr, _ := c.wrap.StderrPipe()
		go io.Copy(logs, stderr)
		if err := c.wrap.Start(); err != nil {
			t.Fatal(err)
		}
		c.pipes = []io.Closer{stdin, stdout, stderr}
		transport = &mcp.IOTransport{Reader: stdout, Writer: stdin}
		t.Cleanup(func() {
			for _, p := range c.pipes {
				p.Close()
			}
			exitCode(t, c.wrap)
		})
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	cs, err := client.Connect(ctx, transport, nil)
	if err != nil {
		t.Fatalf("connect: %v\n%s", err, logs)
	}
	c.cs = cs
	if url != "" {
		t.Cleanup(func() { cs.Close() })
	}
	return c
}

func (c *goClient) call(cc compatCall) {
	ctx, cancel := context.WithCancel(context.Background())
	if cc.Timeout > 0 && !cc.Reset {
		cancel()
		ctx, cancel = context.WithTimeout(context.Background(), cc.Timeout)
	}
	params := &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"n": 1}}
	token := "compat-" + cc.ID
	if cc.Progress {
		params.SetProgressToken(token)
	}
	c.mu.Lock()
	c.cancels[cc.ID] = cancel
	c.mu.Unlock()
	go func() {
		defer cancel()
		res, err := c.cs.CallTool(ctx, params)
		c.mu.Lock()
		r := compatResult{ID: cc.ID, Progress: c.progress[token]}
		c.mu.Unlock()
		if err != nil {
			r.Error = err.Error()
		} else {
			r.IsError, r.Text = res.IsError, resultString(res)
		}
		c.out <- r
	}()
}

func (c *goClient) abort(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cancels[id]()
}

func (c *goClient) results() <-chan compatResult { return c.out }

func (c *goClient) kill(t *testing.T) int {
	for _, p := range c.pipes {
		p.Close()
	}
	return exitCode(t, c.wrap)
}
