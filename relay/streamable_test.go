package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/relay"
	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/relay/wire"
)

const initBody = `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`

type rawClient struct {
	t       *testing.T
	url     string
	session string
}

// post sends one message and returns the status and the JSON-RPC messages
// in the reply, whether it came as JSON or as an SSE stream.
func (c *rawClient) post(ctx context.Context, body string, hdr ...string) (int, []map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	if c.session != "" {
		req.Header.Set(wire.HeaderSessionID, c.session)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("POST: %v", err)
	}
	defer resp.Body.Close()
	if sid := resp.Header.Get(wire.HeaderSessionID); sid != "" {
		c.session = sid
	}
	return resp.StatusCode, readMessages(c.t, resp)
}

func readMessages(t *testing.T, resp *http.Response) []map[string]any {
	var msgs []map[string]any
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		er := wire.NewEventReader(resp.Body, 0)
		for {
			ev, err := er.Next()
			if err != nil {
				break
			}
			var m map[string]any
			if err := json.Unmarshal(ev.Data, &m); err != nil {
				t.Fatalf("bad event %q: %v", ev.Data, err)
			}
			msgs = append(msgs, m)
		}
		return msgs
	}
	data, _ := io.ReadAll(resp.Body)
	if len(bytes.TrimSpace(data)) == 0 {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		t.Fatalf("bad body %q: %v", data, err)
	}
	return []map[string]any{m}
}

// newRawClient is a raw HTTP client of a relay whose gate forwards every
// call.
func newRawClient(t *testing.T, opts relay.HTTPOptions) (*rawClient, *relaytest.Server, *relaytest.Gate) {
	return newRawClientGated(t, opts, nil)
}

// newRawClientGated is newRawClient with a gate that decides with decide.
func newRawClientGated(t *testing.T, opts relay.HTTPOptions, decide relaytest.Decision) (*rawClient, *relaytest.Server, *relaytest.Gate) {
	srv := relaytest.NewServer()
	g := &relaytest.Gate{Decide: decide}
	r := relaytest.NewRelay(t, relay.Options{Gate: g}, srv.Upstream("test"))
	hs := relaytest.NewHTTPServer(t, r, opts)
	return &rawClient{t: t, url: hs.URL + "/mcp/test"}, srv, g
}

func (c *rawClient) initialize() {
	c.t.Helper()
	if status, msgs := c.post(context.Background(), initBody); status != 200 || len(msgs) != 1 || msgs[0]["result"] == nil {
		c.t.Fatalf("initialize: %d %v", status, msgs)
	}
	if status, _ := c.post(context.Background(), `{"jsonrpc":"2.0","method":"notifications/initialized"}`); status != http.StatusAccepted {
		c.t.Fatalf("initialized: %d", status)
	}
}

func errorMessage(msgs []map[string]any) string {
	if len(msgs) != 1 {
		return ""
	}
	e, _ := msgs[0]["error"].(map[string]any)
	s, _ := e["message"].(string)
	return s
}

func TestHTTPRefusesBadRequests(t *testing.T) {
	c, _, _ := newRawClient(t, relay.HTTPOptions{Loopback: true})
	ctx := context.Background()
	tests := map[string]struct {
		body    string
		hdr     []string
		status  int
		message string
	}{
		"not JSON":          {`{"jsonrpc":`, nil, 400, "parse error"},
		"batch":             {`[` + initBody + `]`, nil, 400, "batches are not supported"},
		"no session":        {`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, nil, 400, "missing Mcp-Session-Id"},
		"unknown session":   {`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`, []string{wire.HeaderSessionID, "nope"}, 404, "session not found"},
		"wrong media type":  {initBody, []string{"Content-Type", "text/plain"}, 415, "Content-Type"},
		"DNS rebinding":     {initBody, []string{"Origin", "http://evil.example.com"}, 403, "forbidden"},
		"foreign host name": {initBody, []string{"Host", "evil.example.com"}, 403, "forbidden"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			hdr := tc.hdr
			req := *c
			req.t = t
			status, msgs := req.post(ctx, tc.body, hdr...)
			if name == "foreign host name" {
				// http.Request.Header cannot set Host; use the field.
				status, msgs = postWithHost(t, c.url, tc.body, "evil.example.com")
			}
			if status != tc.status || !strings.Contains(errorMessage(msgs), tc.message) {
				t.Errorf("got %d %v, want %d with %q", status, msgs, tc.status, tc.message)
			}
		})
	}
}

func postWithHost(t *testing.T, url, body, host string) (int, []map[string]any) {
	req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	req.Host = host
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, readMessages(t, resp)
}

func TestHTTPAllowsLocalOrigins(t *testing.T) {
	c, _, _ := newRawClient(t, relay.HTTPOptions{Loopback: true, AllowedOrigins: []string{"https://app.example.com"}})
	for _, origin := range []string{"http://localhost:3000", "http://127.0.0.1", "https://app.example.com"} {
		c.session = ""
		if status, msgs := c.post(context.Background(), initBody, "Origin", origin); status != 200 {
			t.Errorf("origin %s: %d %v", origin, status, msgs)
		}
	}
}

func TestHTTPDeleteEndsSession(t *testing.T) {
	c, srv, _ := newRawClient(t, relay.HTTPOptions{Loopback: true})
	c.initialize()
	upstreamSession(t, srv)
	req, _ := http.NewRequest(http.MethodDelete, c.url, nil)
	req.Header.Set(wire.HeaderSessionID, c.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	if status, _ := c.post(context.Background(), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); status != 404 {
		t.Errorf("request after DELETE: %d, want 404", status)
	}
	// The upstream session ends with it.
	done := make(chan error, 1)
	go func() { done <- srv.Sessions()[0].Wait() }()
	brokertest.Wait(t, done, "the upstream session to close")
}

// The stateful HTTP transport keeps a request alive after its client has
// gone; Airlock must cancel it upstream itself.
func TestHTTPDisconnectCancelsUpstream(t *testing.T) {
	c, srv, _ := newRawClient(t, relay.HTTPOptions{Loopback: true})
	c.initialize()
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		brokertest.WaitFor(t, "the slow call to start", func() bool { return srv.Count("tools/call") == 1 })
		cancel()
	}()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url,
		strings.NewReader(`{"jsonrpc":"2.0","id":9,"method":"tools/call","params":{"name":"slow","arguments":{"ms":60000,"id":"gone"}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set(wire.HeaderSessionID, c.session)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	if id := brokertest.Wait(t, srv.Cancelled, "upstream cancellation"); id != "gone" {
		t.Errorf("cancelled %q", id)
	}
}

func TestHTTPIdleSessionsClose(t *testing.T) {
	c, srv, _ := newRawClient(t, relay.HTTPOptions{Loopback: true, IdleTimeout: 50 * time.Millisecond})
	c.initialize()
	done := make(chan error, 1)
	go func() { done <- upstreamSession(t, srv).Wait() }()
	brokertest.Wait(t, done, "the idle session's upstream to close")
	if status, _ := c.post(context.Background(), `{"jsonrpc":"2.0","id":2,"method":"tools/list"}`); status != 404 {
		t.Errorf("request to an idle-closed session: %d, want 404", status)
	}
}

func TestHTTPServerDiscoverFallsBack(t *testing.T) {
	c, _, _ := newRawClient(t, relay.HTTPOptions{Loopback: true})
	status, msgs := c.post(context.Background(), `{"jsonrpc":"2.0","id":1,"method":"server/discover","params":{}}`)
	if status != 200 || !strings.Contains(errorMessage(msgs), "use initialize") {
		t.Errorf("server/discover: %d %v", status, msgs)
	}
}

// A client offering a newer protocol than Airlock relays is negotiated down.
func TestInitializeCapsProtocolVersion(t *testing.T) {
	c, srv, _ := newRawClient(t, relay.HTTPOptions{Loopback: true})
	_, msgs := c.post(context.Background(), strings.Replace(initBody, "2025-11-25", "2026-07-28", 1))
	res, _ := msgs[0]["result"].(map[string]any)
	if res["protocolVersion"] != relay.LatestProtocolVersion {
		t.Errorf("negotiated %v", res["protocolVersion"])
	}
	c.post(context.Background(), `{"jsonrpc":"2.0","method":"notifications/initialized"}`)
	if v := upstreamSession(t, srv).InitializeParams().ProtocolVersion; v != relay.LatestProtocolVersion {
		t.Errorf("upstream was offered %q", v)
	}
	status, msgs := c.post(context.Background(), `{"jsonrpc":"2.0","id":2,"method":"ping"}`, wire.HeaderProtocolVersion, "2099-01-01")
	if status != 400 || !strings.Contains(errorMessage(msgs), "unsupported MCP-Protocol-Version") {
		t.Errorf("unknown protocol header: %d %v", status, msgs)
	}
}

// An upstream request made while the client waits for an answer travels on
// that answer's stream, for clients that never open the GET stream.
func TestHTTPRelatedMessagesUseRequestStream(t *testing.T) {
	c, _, _ := newRawClient(t, relay.HTTPOptions{Loopback: true})
	c.post(context.Background(), strings.Replace(initBody, `"capabilities":{}`, `"capabilities":{"elicitation":{}}`, 1))
	c.post(context.Background(), `{"jsonrpc":"2.0","method":"notifications/initialized"}`)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, c.url,
		strings.NewReader(`{"jsonrpc":"2.0","id":"call-1","method":"tools/call","params":{"name":"elicit","arguments":{}}}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json, text/event-stream")
	req.Header.Set(wire.HeaderSessionID, c.session)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	er := wire.NewEventReader(resp.Body, 0)
	ev, err := er.Next()
	if err != nil {
		t.Fatal(err)
	}
	var elicit struct {
		ID     any    `json:"id"`
		Method string `json:"method"`
	}
	json.Unmarshal(ev.Data, &elicit)
	if elicit.Method != "elicitation/create" {
		t.Fatalf("first event on the call's stream: %s", ev.Data)
	}
	answer, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": elicit.ID, "result": map[string]any{"action": "decline"}})
	if status, _ := c.post(context.Background(), string(answer)); status != http.StatusAccepted {
		t.Fatalf("posting the elicitation answer: %d", status)
	}
	ev, err = er.Next()
	if err != nil || !strings.Contains(string(ev.Data), `"id":"call-1"`) || !strings.Contains(string(ev.Data), "decline") {
		t.Fatalf("answer on the call's stream: %s, %v", ev.Data, err)
	}
}

// Garbage and oversized lines get an error each and the session goes on.
func TestStdioBadInput(t *testing.T) {
	srv := relaytest.NewServer()
	b := relaytest.NewRelay(t, relay.Options{}, srv.Upstream("test"))
	cr, bw := io.Pipe()
	br, cw := io.Pipe()
	conn := wire.NewLineConn(br, bw, br, 1024)
	done := make(chan error, 1)
	go func() { done <- b.ServeConn(context.Background(), "test", conn, broker.Principal{}) }()
	go io.WriteString(cw, "this is not json\n"+
		`{"jsonrpc":"2.0","id":1,"method":"ping","params":{"pad":"`+strings.Repeat("x", 2000)+`"}}`+"\n"+
		initBody+"\n")
	sc := bufio.NewScanner(cr)
	want := []string{
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32700,`,
		`{"jsonrpc":"2.0","id":null,"error":{"code":-32600,"message":"message larger than 1024 bytes"}}`,
		`{"jsonrpc":"2.0","id":1,"result":{`,
	}
	for _, w := range want {
		if !sc.Scan() {
			t.Fatalf("no line for %s: %v", w, sc.Err())
		}
		if !strings.HasPrefix(sc.Text(), w) {
			t.Errorf("got %s\nwant %s", sc.Text(), w)
		}
	}
	cw.Close()
	if err := <-done; err != nil {
		t.Errorf("ServeConn: %v", err)
	}
}

// A tools/call without an id never reaches the upstream: only
// notifications travel without one, and every call passes the gate.
func TestStdioCallWithoutIDDropped(t *testing.T) {
	up := relaytest.NewServer().Upstream("test")
	rec := &recordingConn{}
	dial := up.Dial
	up.Dial = func(ctx context.Context) (mcp.Connection, error) {
		c, err := dial(ctx)
		rec.Connection = c
		return rec, err
	}
	g := &relaytest.Gate{}
	b := relaytest.NewRelay(t, relay.Options{Gate: g}, up)
	cr, bw := io.Pipe()
	br, cw := io.Pipe()
	conn := wire.NewLineConn(br, bw, br, 0)
	done := make(chan error, 1)
	go func() { done <- b.ServeConn(context.Background(), "test", conn, broker.Principal{}) }()
	go io.WriteString(cw, initBody+"\n"+
		`{"jsonrpc":"2.0","method":"notifications/initialized"}`+"\n"+
		`{"jsonrpc":"2.0","method":"tools/call","params":{"name":"write","arguments":{"path":"/x","content":"y"}}}`+"\n"+
		`{"jsonrpc":"2.0","id":2,"method":"ping"}`+"\n")
	sc := bufio.NewScanner(cr)
	for _, w := range []string{`{"jsonrpc":"2.0","id":1,"result":{`, `{"jsonrpc":"2.0","id":2,"result":{`} {
		if !sc.Scan() || !strings.HasPrefix(sc.Text(), w) {
			t.Fatalf("got %q (%v), want %s", sc.Text(), sc.Err(), w)
		}
	}
	if sent := rec.sent(); slices.Contains(sent, "tools/call") {
		t.Errorf("Airlock sent the upstream %v", sent)
	}
	if calls := g.Calls(); len(calls) != 0 {
		t.Errorf("the gate was asked about %d calls without an id", len(calls))
	}
	cw.Close()
	if err := <-done; err != nil {
		t.Errorf("ServeConn: %v", err)
	}
}

// recordingConn records the methods Airlock writes to an upstream.
type recordingConn struct {
	mcp.Connection
	mu      sync.Mutex
	methods []string
}

func (c *recordingConn) Write(ctx context.Context, msg jsonrpc.Message) error {
	if r, ok := msg.(*jsonrpc.Request); ok {
		c.mu.Lock()
		c.methods = append(c.methods, r.Method)
		c.mu.Unlock()
	}
	return c.Connection.Write(ctx, msg)
}

func (c *recordingConn) sent() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.methods)
}

// The client gets back the id it sent, byte for byte, and ids it sent
// apart stay apart: 1.5 is not 1, nor 2^53+1 2^53 (they were, when ids
// went through float64).
var exactIDs = []string{`1.5`, `9007199254740993`, `9007199254740992`, `1e300`, `-1e300`, `"\u0041"`, `-0`}

func TestStdioIDsKeepTheirBytes(t *testing.T) {
	b := relaytest.NewRelay(t, relay.Options{}, relaytest.NewServer().Upstream("test"))
	cr, bw := io.Pipe()
	br, cw := io.Pipe()
	conn := wire.NewLineConn(br, bw, br, 0)
	done := make(chan error, 1)
	go func() { done <- b.ServeConn(context.Background(), "test", conn, broker.Principal{}) }()
	in := initBody + "\n" + `{"jsonrpc":"2.0","method":"notifications/initialized"}` + "\n"
	for _, id := range exactIDs {
		in += `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo","arguments":{"text":` + strconv.Quote(id) + `}}}` + "\n"
	}
	go io.WriteString(cw, in)
	sc := bufio.NewScanner(cr)
	sc.Scan() // initialize's answer
	got := map[string]bool{}
	for range exactIDs {
		if !sc.Scan() {
			t.Fatalf("answers end early: %v", sc.Err())
		}
		id, text := answerID(t, sc.Bytes())
		if text != id {
			t.Errorf("the answer with id %s carries the call made with id %s", id, text)
		}
		got[id] = true
	}
	for _, id := range exactIDs {
		if !got[id] {
			t.Errorf("no answer with id %s (got %v)", id, got)
		}
	}
	cw.Close()
	if err := <-done; err != nil {
		t.Errorf("ServeConn: %v", err)
	}
}

func TestHTTPIDsKeepTheirBytes(t *testing.T) {
	c, _, _ := newRawClient(t, relay.HTTPOptions{Loopback: true})
	c.initialize()
	for _, id := range exactIDs {
		body := `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo","arguments":{"text":` + strconv.Quote(id) + `}}}`
		req, _ := http.NewRequest(http.MethodPost, c.url, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		req.Header.Set(wire.HeaderSessionID, c.session)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if i := bytes.Index(data, []byte("data: ")); i >= 0 {
			data = bytes.TrimSpace(bytes.SplitN(data[i+len("data: "):], []byte("\n"), 2)[0])
		}
		if got, text := answerID(t, data); got != id || text != id {
			t.Errorf("call with id %s: answered with id %s for the call with id %s", id, got, text)
		}
	}
}

// answerID returns the exact text of an answer's id and the text the echo
// tool sent back.
func answerID(t *testing.T, line []byte) (id, text string) {
	t.Helper()
	var m struct {
		ID     json.RawMessage `json:"id"`
		Result struct {
			Content []struct {
				Text string `json:"text"`
			} `json:"content"`
		} `json:"result"`
	}
	if err := json.Unmarshal(line, &m); err != nil || len(m.Result.Content) == 0 {
		t.Fatalf("answer %s: %v", line, err)
	}
	return string(m.ID), m.Result.Content[0].Text
}
