package relay_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/relay/wire"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// The Mcp-Session-Id lets whoever holds it act in the session, so it is
// handed to its client only: audit records, approvals (what the UI and
// Slack show), INFO logs and the policy input name the session by its
// SessionRef.
func TestSessionIDStaysWithItsClient(t *testing.T) {
	var logs lockedBuffer
	var mu sync.Mutex
	var seen []string
	hold := brokertest.HoldTools(1, "write")
	store := brokertest.NewMemStore()
	b := relaytest.New(t, broker.Options{
		Logger:   slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Store:    store,
		HoldWait: -1,
		Policy: brokertest.PolicyFunc(func(in *policy.Input) policy.Decision {
			mu.Lock()
			seen = append(seen, in.Session.ID)
			mu.Unlock()
			return hold(in)
		}),
	}, relaytest.NewServer().Upstream("test"))
	hs := relaytest.NewHTTPServer(t, b, relay.HTTPOptions{Loopback: true})
	c := &rawClient{t: t, url: hs.URL + "/mcp/test"}
	c.initialize()
	id := c.session
	if len(id) < 26 {
		t.Fatalf("session id %q is shorter than 128 bits of base32", id)
	}
	ref := relay.SessionRef(id)
	if !regexp.MustCompile(`^[0-9a-f]{12}$`).MatchString(ref) || strings.Contains(id, ref) {
		t.Fatalf("SessionRef(%q) = %q", id, ref)
	}

	if status, msgs := c.post(context.Background(), `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`); status != 200 || len(msgs) != 1 {
		t.Fatalf("echo: %d %v", status, msgs)
	}
	// A call refused for its params is audited too.
	if status, msgs := c.post(context.Background(), `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"echo","Name":"write"}}`); status != 200 || len(msgs) != 1 || msgs[0]["error"] == nil {
		t.Fatalf("decoy params: %d %v", status, msgs)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url,
			strings.NewReader(`{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"write","arguments":{"path":"/x","content":"y"}}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set(wire.HeaderSessionID, id)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	var held []*broker.Approval
	brokertest.WaitFor(t, "the write to be held", func() bool {
		held, _ = store.Approvals(context.Background(), broker.ApprovalQuery{})
		return len(held) == 1
	})
	cancel()
	<-done

	approvals, _ := json.Marshal(held)
	recs, err := store.Audit(context.Background(), broker.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	audit, _ := json.Marshal(recs)
	mu.Lock()
	inputs := strings.Join(seen, " ")
	mu.Unlock()
	for what, text := range map[string]string{"approvals": string(approvals), "audit": string(audit), "INFO logs": logs.String(), "policy input": inputs} {
		if strings.Contains(text, id) {
			t.Errorf("the session id is in the %s: %s", what, text)
		}
		if !strings.Contains(text, ref) {
			t.Errorf("the session's ref %s is not in the %s: %s", ref, what, text)
		}
	}
	if held[0].Session != ref {
		t.Errorf("approval names session %q, want %q", held[0].Session, ref)
	}
}

// The gate, and through it everything the core records (approvals, audit,
// the policy input), learns a session only by its SessionRef; the relay's
// INFO logs name it so too.
func TestGateSeesOnlyTheSessionRef(t *testing.T) {
	var logs lockedBuffer
	srv := relaytest.NewServer()
	g := &relaytest.Gate{}
	r := relaytest.NewRelay(t, relay.Options{Gate: g, Logger: slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))},
		srv.Upstream("test"))
	hs := relaytest.NewHTTPServer(t, r, relay.HTTPOptions{Loopback: true})
	c := &rawClient{t: t, url: hs.URL + "/mcp/test"}
	c.initialize()
	if status, msgs := c.post(context.Background(), `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"text":"hi"}}}`); status != 200 || len(msgs) != 1 {
		t.Fatalf("echo: %d %v", status, msgs)
	}
	ref := relay.SessionRef(c.session)
	calls := g.Calls()
	if len(calls) != 1 || calls[0].Session != ref {
		t.Fatalf("the gate saw %+v, want one call in session %s", calls, ref)
	}
	all, _ := json.Marshal(calls[0])
	for what, text := range map[string]string{"call": string(all), "INFO logs": logs.String()} {
		if strings.Contains(text, c.session) {
			t.Errorf("the session id is in the %s: %s", what, text)
		}
		if !strings.Contains(text, ref) {
			t.Errorf("the session's ref %s is not in the %s: %s", ref, what, text)
		}
	}
}
