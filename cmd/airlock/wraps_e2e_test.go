package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker/remote"
)

// sharedWrap is one `airlock wrap` with a go-sdk client on its stdio.
type sharedWrap struct {
	cmd   *exec.Cmd
	cs    *mcp.ClientSession
	stdin io.Closer
	logs  *syncBuffer
}

// startWrap starts a wrap of the test server with cfg, named t unless a
// name is given, and connects a client to it.
func startWrap(t *testing.T, cfg string, name ...string) *sharedWrap {
	t.Helper()
	server := "t"
	if len(name) > 0 {
		server = name[0]
	}
	cmd := airlockCmd(t, append([]string{"wrap", "--name", server, "-c", cfg, "--"}, testServerArgs("echo")...)...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	w := &sharedWrap{cmd: cmd, stdin: stdin, logs: &syncBuffer{}}
	cmd.Stderr = w.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		stdin.Close()
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("wrap pid %d:\n%s", cmd.Process.Pid, w.logs)
		}
	})
	c := mcp.NewClient(&mcp.Implementation{Name: "wraps-test", Version: "1"}, nil)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	if w.cs, err = c.Connect(ctx, &mcp.IOTransport{Reader: stdout, Writer: stdin}, nil); err != nil {
		t.Fatalf("connect: %v\n%s", err, w.logs)
	}
	return w
}

// write calls the held tool and delivers its result's text, or the error.
func (w *sharedWrap) write(n int) <-chan string {
	out := make(chan string, 1)
	go func() {
		res, err := w.cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"n": n}})
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		out <- resultText(res)
	}()
	return out
}

func wrapsConfig(t *testing.T) string {
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(cfg, []byte("policy: {dir: "+holdWritesPolicy(t)+"}\nhold_wait: 5m\n"), 0o600)
	return cfg
}

// Ten wraps of two servers, as the terminals of two clients start them:
// all start at once (the first owns the state, the others attach), all
// hold, and one approvals page lists and releases every call, each run
// once.
func TestWrapsShareOneBroker(t *testing.T) {
	if testing.Short() {
		t.Skip("starts ten wraps")
	}
	cfg := wrapsConfig(t)
	n := 10
	if raceEnabled {
		n = 5
	}
	wraps := make([]*sharedWrap, n)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		wg.Go(func() { wraps[i] = startWrap(t, cfg, []string{"fs", "github"}[i%2]) })
	}
	wg.Wait()
	if slices.Contains(wraps, nil) {
		t.FailNow() // a wrap that did not start said why
	}
	t.Logf("%d wraps started and initialized in %s", n, time.Since(start).Round(time.Millisecond))
	results := make([]<-chan string, n)
	for i, w := range wraps {
		results[i] = w.write(i)
	}
	held := pending(t, n)
	refs, err := findBrokers(filepath.Join(testStateHome(t), "airlock"), true)
	if err != nil || len(refs) != 1 {
		t.Fatalf("running brokers = %d (%v), want one for every wrap", len(refs), err)
	}
	if fi, err := os.Stat(filepath.Join(refs[0].Dir, remote.SocketName)); err != nil {
		t.Error(err)
	} else if fi.Mode().Perm() != 0o600 {
		t.Errorf("the wraps' socket has mode %v, want 0600", fi.Mode().Perm())
	}
	for _, a := range held {
		if _, err := cli(t, "approve", a.ID); err != nil {
			t.Fatal(err)
		}
	}
	for i, r := range results {
		want := fmt.Sprintf(`wrote {"n":%d}`, i)
		select {
		case got := <-r:
			if got != want {
				t.Errorf("wrap %d read %q, want %q", i, got, want)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("wrap %d: no result\n%s", i, wraps[i].logs)
		}
	}
	out, err := cli(t, "audit", "--event", "call.released", "--json", "-n", "100")
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Count(out, `"call.released"`); got != n {
		t.Errorf("%d releases in the audit log, want %d", got, n)
	}
}

// The wrap that owns the state exits while another wrap's call is held:
// that wrap takes the state over and the call, approved afterwards on its
// approvals page, runs once.
func TestOwnerExitsWhileAnotherHolds(t *testing.T) {
	if testing.Short() {
		t.Skip("starts wraps")
	}
	cfg := wrapsConfig(t)
	owner := startWrap(t, cfg)
	other := startWrap(t, cfg)
	if !strings.Contains(other.logs.String(), "attached to the broker") {
		t.Fatalf("the second wrap did not attach:\n%s", other.logs)
	}
	result := other.write(7)
	held := pending(t, 1)[0]

	owner.stdin.Close() // its client quits
	if code := exitCode(t, owner.cmd); code != 0 {
		t.Fatalf("the owner exited %d\n%s", code, owner.logs)
	}
	// The other wrap's broker now serves the approvals API.
	if got := pending(t, 1); got[0].ID != held.ID {
		t.Fatalf("pending after the takeover: %+v, want %s", got, held.ID)
	}
	if _, err := cli(t, "approve", held.ID); err != nil {
		t.Fatalf("%v\n%s", err, other.logs)
	}
	select {
	case got := <-result:
		if got != `wrote {"n":7}` {
			t.Errorf("read %q", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no result after the takeover\n%s", other.logs)
	}
}

// The owner is killed with a call of its own held, and another wrap's:
// the other takes over, abandons the owner's call with the wait it really
// had (ending at the kill, not at the takeover), and still releases its
// own.
func TestKilledOwner(t *testing.T) {
	if testing.Short() {
		t.Skip("starts wraps")
	}
	cfg := wrapsConfig(t)
	owner := startWrap(t, cfg)
	other := startWrap(t, cfg)
	owner.write(1)
	result := other.write(2)
	held := pending(t, 2)
	killed := time.Now()
	owner.cmd.Process.Kill()
	owner.cmd.Wait()

	var theirs, mine string
	for _, a := range held {
		var args struct{ N int }
		json.Unmarshal(a.Arguments, &args)
		if args.N == 1 {
			theirs = a.ID
		} else {
			mine = a.ID
		}
	}
	if got := pending(t, 1); got[0].ID != mine {
		t.Fatalf("pending after the kill: %+v, want only %s", got, mine)
	}
	out, err := cli(t, "audit", "--event", "approval.abandoned", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var rec struct {
		Time       time.Time `json:"time"`
		ApprovalID string    `json:"approval_id"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &rec); err != nil || rec.ApprovalID != theirs {
		t.Fatalf("abandoned records (want %s): %v\n%s\n%+v", theirs, err, out, held)
	}
	if rec.Time.After(killed) {
		t.Errorf("the killed owner's call was abandoned at %s, after the kill at %s: its wait must end at its last sign of life", rec.Time, killed)
	}
	if _, err := cli(t, "approve", mine); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-result:
		if got != `wrote {"n":2}` {
			t.Errorf("read %q", got)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("no result after the takeover\n%s", other.logs)
	}
}
