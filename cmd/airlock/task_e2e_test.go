package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// The TypeScript SDK's task client (client.experimental.tasks.callToolStream)
// through airlock wrap, against the npm server-everything's
// simulate-research-query, which requires a task: the held call is a task
// of Airlock's at once; approved, Airlock runs it upstream as the
// upstream's task and the stream yields its result; denied, the task
// fails, saying why.
func TestTypeScriptClientTask(t *testing.T) {
	node := brokertest.Node(t)
	everything := brokertest.NPMCommand(t, "mcp-server-everything")
	script := filepath.Join(brokertest.RepoRoot(t), "testdata", "node", "task-client.mjs")
	policyDir := t.TempDir()
	os.WriteFile(filepath.Join(policyDir, "airlock.rego"), []byte(`package airlock

decision := {"action": "hold", "reason": "research needs a person", "timeout": "5m"} if {
	input.tool.name == "simulate-research-query"
} else := {"action": "allow", "reason": "the rest pass"}
`), 0o600)
	cfg := filepath.Join(t.TempDir(), "airlock.yaml")
	os.WriteFile(cfg, fmt.Appendf(nil, "policy: {dir: %s}\nhold_wait: 2s\n", policyDir), 0o600)

	run := func(t *testing.T) <-chan map[string]any {
		args := append([]string{script, "simulate-research-query", `{"topic":"airlocks"}`, os.Args[0], "wrap", "--name", "everything", "-c", cfg, "--"}, everything...)
		cmd := airlockCmd(t, args...)
		cmd.Path = node
		cmd.Args[0] = node
		cmd.Stderr = &syncBuffer{}
		out, _ := cmd.StdoutPipe()
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		ch := make(chan map[string]any, 64)
		go func() {
			defer close(ch)
			dec := json.NewDecoder(out)
			for {
				var m map[string]any
				if dec.Decode(&m) != nil {
					return
				}
				ch <- m
			}
		}()
		return ch
	}
	// until reads the stream's messages until one of type typ.
	until := func(t *testing.T, ch <-chan map[string]any, typ string) (last map[string]any, seen []map[string]any) {
		t.Helper()
		for {
			select {
			case m, ok := <-ch:
				if !ok {
					t.Fatalf("the client ended before a %s message; saw %v", typ, seen)
				}
				if m["type"] == typ {
					return m, seen
				}
				seen = append(seen, m)
			case <-time.After(90 * time.Second):
				t.Fatalf("no %s message from the client; saw %v", typ, seen)
			}
		}
	}

	t.Run("approved", func(t *testing.T) {
		ch := run(t)
		created, _ := until(t, ch, "taskCreated")
		p := pending(t, 1)[0]
		if created["status"] != "working" || created["statusMessage"] != "waiting for approval (ref "+p.ID+"): research needs a person" ||
			!strings.HasPrefix(fmt.Sprint(created["taskId"]), "airlock-") {
			t.Fatalf("task created: %v", created)
		}
		if _, err := cli(t, "approve", p.ID); err != nil {
			t.Fatal(err)
		}
		res, seen := until(t, ch, "result")
		if res["isError"] != false || !strings.Contains(fmt.Sprint(res["text"]), "Research Report: airlocks") {
			t.Errorf("result: %v (after %v)", res, seen)
		}
		for _, m := range seen {
			if m["type"] != "taskStatus" || m["taskId"] != created["taskId"] {
				t.Errorf("unexpected message before the result: %v", m)
			}
		}
	})
	t.Run("denied", func(t *testing.T) {
		ch := run(t)
		until(t, ch, "taskCreated")
		p := pending(t, 1)[0]
		if _, err := cli(t, "deny", p.ID, "--reason", "not now"); err != nil {
			t.Fatal(err)
		}
		e, seen := until(t, ch, "error")
		if !strings.Contains(fmt.Sprint(e["error"]), "failed") {
			t.Errorf("error: %v", e)
		}
		last := seen[len(seen)-1]
		if last["status"] != "failed" || !strings.Contains(fmt.Sprint(last["statusMessage"]), "denied by admin: not now (ref "+p.ID+")") {
			t.Errorf("last status before the error: %v", last)
		}
	})
}
