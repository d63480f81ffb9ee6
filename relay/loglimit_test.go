package relay_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"

	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/relay/wire"
)

// countingHandler counts log lines by message, and the occurrences they
// stand for (1 plus "repeated").
type countingHandler struct {
	mu          sync.Mutex
	lines, occs map[string]int
}

func (h *countingHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countingHandler) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *countingHandler) WithGroup(string) slog.Handler            { return h }
func (h *countingHandler) Handle(_ context.Context, r slog.Record) error {
	n := 1
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "repeated" {
			n += int(a.Value.Int64())
		}
		return true
	})
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines[r.Message]++
	h.occs[r.Message] += n
	return nil
}

// floodUpstream is a raw JSON-RPC server that answers a tools/call only
// after n lines of garbage and n answers to ids Airlock never sent.
func floodUpstream(n int) *relay.Upstream {
	return &relay.Upstream{Name: "test", Transport: "stdio", Dial: func(context.Context) (mcp.Connection, error) {
		inR, inW := io.Pipe()   // Airlock → server
		outR, outW := io.Pipe() // server → Airlock
		go func() {
			defer outW.Close()
			sc := bufio.NewScanner(inR)
			sc.Buffer(nil, 1<<20)
			for sc.Scan() {
				var m struct {
					ID     json.RawMessage
					Method string
					Params struct{ ProtocolVersion string }
				}
				json.Unmarshal(sc.Bytes(), &m) // the test's own server reads what Airlock sent
				var result string
				switch m.Method {
				case "initialize":
					result = fmt.Sprintf(`{"protocolVersion":%q,"capabilities":{"tools":{}},"serverInfo":{"name":"flood","version":"1"}}`, m.Params.ProtocolVersion)
				case "tools/list":
					result = `{"tools":[{"name":"echo","inputSchema":{"type":"object"}}]}`
				case "tools/call":
					w := bufio.NewWriter(outW)
					for i := range n {
						fmt.Fprintf(w, "garbage %d\n", i)
						fmt.Fprintf(w, `{"jsonrpc":"2.0","id":"never-%d","result":{}}`+"\n", i)
					}
					w.Flush()
					result = `{"content":[{"type":"text","text":"done"}]}`
				default:
					continue
				}
				fmt.Fprintf(outW, `{"jsonrpc":"2.0","id":%s,"result":%s}`+"\n", m.ID, result)
			}
		}()
		return wire.NewLineConn(outR, inW, inW, 0), nil
	}}
}

// An upstream that floods Airlock with messages it drops costs a few log
// lines, which still count every message.
func TestFloodingUpstreamIsLoggedWithCounts(t *testing.T) {
	const n = 5000
	h := &countingHandler{lines: map[string]int{}, occs: map[string]int{}}
	bk := relaytest.NewRelay(t, relay.Options{Logger: slog.New(h)}, floodUpstream(n))
	// Checked once the session has ended (cleanups run last first), which
	// logs what is still counted.
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, msg := range []string{"bad message from upstream", "upstream answered an id Airlock never sent"} {
			// A line per 10 seconds at most: a machine slow enough to take
			// minutes over this would still log only a handful.
			if h.lines[msg] > 10 || h.occs[msg] != n {
				t.Errorf("%q: %d lines for %d messages, want a few lines for %d", msg, h.lines[msg], h.occs[msg], n)
			}
		}
	})
	cs := relaytest.StdioClient(t, bk, mcp.NewClient(&mcp.Implementation{Name: "t", Version: "1"}, nil))
	res, err := cs.CallTool(t.Context(), &mcp.CallToolParams{Name: "echo", Arguments: map[string]any{}})
	if err != nil || res.IsError {
		t.Fatalf("call: %v %+v", err, res)
	}
}
