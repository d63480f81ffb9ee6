package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/modelcontextprotocol/go-sdk/mcp"
)

// A held call over HTTP outlives body_timeout: the timeout bounds reading
// the request's body, and the read deadline it sets stays on the
// connection while the call waits; it must not end the request's context,
// which would withdraw the call as a disconnect.
func TestHeldCallOutlivesBodyTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("starts serve")
	}
	base, stderr := startServe(t, fmt.Sprintf("policy: {dir: %s}\nbody_timeout: 1s\nhold_wait: 1m\nservers:\n  t:\n    command: env\n    args: [\"AIRLOCK_TEST_ROLE=server\", \"AIRLOCK_TEST_SERVER=echo\", %q]\n",
		holdWritesPolicy(t), os.Args[0]))
	cs := httpSession(t, base+"/mcp/t")
	out := make(chan string, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: map[string]any{"n": 1}})
		if err != nil {
			out <- err.Error()
			return
		}
		out <- resultText(res)
	}()
	held := pending(t, 1)[0]
	time.Sleep(2 * time.Second) // past body_timeout
	if got := pending(t, 1); got[0].ID != held.ID {
		t.Fatalf("pending %+v", got)
	}
	if _, err := cli(t, "approve", held.ID); err != nil {
		t.Fatal(err)
	}
	select {
	case got := <-out:
		if got != `wrote {"n":1}` {
			t.Errorf("read %q\n%s", got, stderr)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("no answer\n%s", stderr)
	}
	if strings.Contains(stderr.String(), "withdrawn") {
		t.Errorf("withdrawn:\n%s", stderr)
	}
}
