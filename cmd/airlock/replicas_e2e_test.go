package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/pgstore/pgtest"
)

// replicaSet is several `airlock serve` processes on one database, each
// with its own state directory, all with one admin token.
type replicaSet struct {
	db    string
	token string
	serve []*pgServe
}

// testLease is the replicas' lease in these tests: short, so that a
// killed replica's calls are abandoned while the test waits.
const testLease = 3 * time.Second

// startReplicas starts n replicas of one broker guarding the server "up"
// (its servers: entry) with policy (a directory), on a fresh database.
func startReplicas(t testing.TB, n int, policy, up string) *replicaSet {
	t.Helper()
	return startReplicasOn(t, pgtest.Shared(t).NewDatabase(t), n, policy, up)
}

// startReplicasOn is startReplicas on the database db.
func startReplicasOn(t testing.TB, db string, n int, policy, up string) *replicaSet {
	t.Helper()
	rs := &replicaSet{db: db}
	tokenFile := filepath.Join(t.TempDir(), "admin-token")
	for range n {
		config := fmt.Sprintf("state_dir: %s\nadmin_token_file: %s\npolicy: {dir: %s}\nstate: {postgres: %q, lease: %s}\n"+
			"limits: {sessions: 1024, sessions_per_principal: 1024, children_per_server: 64, held_calls: 256, held_calls_per_principal: 256}\nservers:\n  up:\n%s",
			t.TempDir(), tokenFile, policy, rs.db, testLease, up)
		rs.serve = append(rs.serve, startPGServe(t, config))
	}
	tok, err := readSecretFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	rs.token = tok
	return rs
}

// replicasPolicy allows reads and calls a grant covers, and holds the
// rest.
func replicasPolicy(t testing.TB) string {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "airlock.rego"), []byte(`package airlock

decision := {"action": "allow", "reason": "reads pass"} if {
	input.tool.annotations.readOnlyHint
} else := {"action": "allow", "reason": "granted", "grant": min({g.id | some g in input.grants})} if {
	count(input.grants) > 0
} else := {"action": "hold", "reason": "writes need a person", "timeout": "10m"}
`), 0o600)
	return dir
}

// stdioUp is the servers: entry of the test upstream over stdio.
func stdioUp(mode string) string {
	args, _ := json.Marshal(testServerArgs(mode)[1:])
	return fmt.Sprintf("    command: env\n    args: %s\n", args)
}

// api makes an admin request to replica i and decodes its JSON answer
// into out (when not nil), returning the HTTP status.
func (rs *replicaSet) api(t testing.TB, i int, method, path string, body, out any) int {
	t.Helper()
	var r io.Reader
	if body != nil {
		data, _ := json.Marshal(body)
		r = bytes.NewReader(data)
	}
	req, _ := http.NewRequest(method, rs.serve[i].base+path, r)
	req.Header.Set("Authorization", "Bearer "+rs.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s on replica %d: %v", method, path, i, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

// pendingOn waits until replica i lists n pending approvals and returns
// them.
func (rs *replicaSet) pendingOn(t testing.TB, i, n int) []*broker.Approval {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got struct{ Approvals []*broker.Approval }
		rs.api(t, i, "GET", "/api/v1/approvals?status=pending&limit=500", nil, &got)
		if len(got.Approvals) == n {
			return got.Approvals
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica %d lists %d pending approvals, want %d", i, len(got.Approvals), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// audit reads the audit records of one event (and approval, if not "")
// through replica i.
func (rs *replicaSet) audit(t *testing.T, i int, event, approval string) []*broker.AuditRecord {
	t.Helper()
	var got struct{ Records []*broker.AuditRecord }
	rs.api(t, i, "GET", fmt.Sprintf("/api/v1/audit?limit=1000&event=%s&approval=%s", event, approval), nil, &got)
	return got.Records
}

func (rs *replicaSet) verify(t *testing.T, i int) broker.AuditVerification {
	t.Helper()
	var v broker.AuditVerification
	if code := rs.api(t, i, "GET", "/api/v1/audit/verify", nil, &v); code != http.StatusOK {
		t.Fatalf("audit verify on replica %d: HTTP %d", i, code)
	}
	return v
}

// events follows replica i's /api/v1/events and delivers each "held"
// event's data.
func (rs *replicaSet) events(t *testing.T, i int) <-chan string {
	t.Helper()
	req, _ := http.NewRequestWithContext(t.Context(), "GET", rs.serve[i].base+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+rs.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("events on replica %d: %v %v", i, resp, err)
	}
	out := make(chan string, 16)
	go func() {
		defer resp.Body.Close()
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 1<<20)
		held := false
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "event: held":
				held = true
			case held && strings.HasPrefix(line, "data: "):
				held = false
				select {
				case out <- strings.TrimPrefix(line, "data: "):
				default:
				}
			}
		}
	}()
	return out
}

// callAsync calls tool on cs and delivers the text the client read.
func callAsync(cs *mcp.ClientSession, tool string, args any) <-chan string {
	out := make(chan string, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: tool, Arguments: args})
		switch {
		case err != nil:
			out <- "transport error: " + err.Error()
		case res.IsError:
			out <- "tool error: " + resultString(res)
		default:
			out <- resultString(res)
		}
	}()
	return out
}

func within(t *testing.T, what string, d time.Duration, ch <-chan string) string {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(d):
		t.Fatalf("%s: nothing within %s", what, d)
		return ""
	}
}

// Three replicas act as one broker: a call held on A is released by an
// approval made through B; 50 decisions at once over the three replicas
// make one outcome; a grant made on C lets the call through on A; a token
// made on A and revoked on C is refused on B at once.
func TestReplicasActAsOne(t *testing.T) {
	rs := startReplicas(t, 3, replicasPolicy(t), stdioUp("echo"))
	a := httpSession(t, rs.serve[0].base+"/mcp/up")

	// Held on A, approved through B; B's event stream hears of the hold.
	events := rs.events(t, 1)
	done := callAsync(a, "write", map[string]any{"n": 1})
	held := rs.pendingOn(t, 1, 1)[0]
	if got := within(t, "B's event stream", 10*time.Second, events); !strings.Contains(got, `"id":"`+held.ID+`"`) {
		t.Errorf("B's event stream said %q first, want the call held on A", got)
	}
	if held.Holder == "" || held.Holder != getHealthz(t, rs.serve[0].base).Replica {
		t.Errorf("the approval's holder is %q, want replica A", held.Holder)
	}
	if code := rs.api(t, 1, "POST", "/api/v1/approvals/"+held.ID+"/decision", map[string]string{"verdict": "approve"}, nil); code != http.StatusOK {
		t.Fatalf("approving through B: HTTP %d", code)
	}
	if got := within(t, "the call approved through B", 10*time.Second, done); got != `wrote {"n":1}` {
		t.Fatalf("the client on A read %q", got)
	}

	// 50 decisions for one approval held on C, from all three replicas.
	c := httpSession(t, rs.serve[2].base+"/mcp/up")
	done = callAsync(c, "write", map[string]any{"n": 2})
	held = rs.pendingOn(t, 0, 1)[0]
	var wg sync.WaitGroup
	var ok, conflict atomic.Int32
	for i := range 50 {
		wg.Go(func() {
			vote := map[string]string{"verdict": "approve"}
			if i%2 == 1 {
				vote = map[string]string{"verdict": "deny", "reason": fmt.Sprint("no, says request ", i)}
			}
			switch code := rs.api(t, i%3, "POST", "/api/v1/approvals/"+held.ID+"/decision", vote, nil); code {
			case http.StatusOK:
				ok.Add(1)
			case http.StatusConflict:
				conflict.Add(1)
			default:
				t.Errorf("decision %d: HTTP %d", i, code)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 1 || conflict.Load() != 49 {
		t.Errorf("%d decisions counted and %d refused as already decided, want 1 and 49", ok.Load(), conflict.Load())
	}
	got := within(t, "the call decided by one of 50", 10*time.Second, done)
	outcomes := append(rs.audit(t, 1, "approval.approved", held.ID), rs.audit(t, 1, "approval.denied", held.ID)...)
	if len(outcomes) != 1 {
		t.Fatalf("%d outcome records for %s, want 1", len(outcomes), held.ID)
	}
	if (outcomes[0].Event == broker.EventApproved) != (got == `wrote {"n":2}`) {
		t.Errorf("the outcome is %s and the client read %q", outcomes[0].Event, got)
	}

	// A grant made on C covers the call on A.
	var g broker.Grant
	if code := rs.api(t, 2, "POST", "/api/v1/grants", map[string]any{"server": "up", "tool": "write", "scope": "tool", "ttl": "1h", "reason": "replica test"}, &g); code != http.StatusCreated {
		t.Fatalf("creating a grant on C: HTTP %d", code)
	}
	// The grant reaches A through the database's notification, in
	// milliseconds; the pause only keeps a loaded machine from failing
	// the test.
	time.Sleep(200 * time.Millisecond)
	if got := within(t, "the granted call on A", 10*time.Second, callAsync(a, "write", map[string]any{"n": 3})); got != `wrote {"n":3}` {
		t.Errorf("the call the grant made on C covers read %q on A", got)
	}

	// A token made on A works on B until it is revoked on C.
	var tok struct{ Token string }
	if code := rs.api(t, 0, "POST", "/api/v1/tokens", map[string]any{"name": "ci-bot"}, &tok); code != http.StatusCreated {
		t.Fatalf("creating a token on A: HTTP %d", code)
	}
	rc := &rawClient{http: http.DefaultClient, endpoint: rs.serve[1].base + "/mcp/up", token: tok.Token}
	sess, err := rc.open(t.Context())
	if err != nil {
		t.Fatalf("a session on B with the token made on A: %v", err)
	}
	if res, err := sess.call(t.Context(), "echo", []byte(`{"k":1}`)); err != nil || res.IsError {
		t.Fatalf("a call on B with the token made on A: %+v %v", res, err)
	}
	if code := rs.api(t, 2, "DELETE", "/api/v1/tokens/ci-bot", nil, nil); code != http.StatusOK {
		t.Fatalf("revoking the token on C: HTTP %d", code)
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		_, err := sess.call(t.Context(), "echo", []byte(`{"k":2}`))
		if err != nil && strings.Contains(err.Error(), "HTTP 401") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B still takes the token revoked on C 2s later: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if v := rs.verify(t, 0); !v.OK {
		t.Errorf("audit verify: %+v", v)
	}
}

// A replica killed with SIGKILL while it holds 20 calls: a live replica
// marks them abandoned within the lease, the chain verifies, and the
// calls the killed one answered before it died are all in the log.
func TestKilledReplicasCallsAbandoned(t *testing.T) {
	rs := startReplicas(t, 3, replicasPolicy(t), stdioUp("echo"))
	a := rs.serve[0]
	for i := range 10 {
		cs := httpSession(t, a.base+"/mcp/up")
		if got := callText(t, cs, "echo", map[string]any{"before": i}); !strings.Contains(got, "before") {
			t.Fatalf("echo on A: %q", got)
		}
	}
	// 20 sessions, since one session's calls share its child.
	for i := range 20 {
		cs := httpSession(t, a.base+"/mcp/up")
		callAsync(cs, "write", map[string]any{"held": i})
	}
	rs.pendingOn(t, 1, 20)
	if err := a.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	a.cmd.Wait()
	rs.pendingOn(t, 1, 0)
	took := time.Since(killed)
	// The lease runs out within testLease of the last renewal; B notices
	// at its next renewal, a third of the lease later at most.
	if took > testLease+testLease/3+2*time.Second {
		t.Errorf("the killed replica's calls were abandoned after %s, with a lease of %s", took, testLease)
	}
	t.Logf("abandoned %s after the kill (lease %s)", took.Round(time.Millisecond), testLease)
	abandoned := rs.audit(t, 1, "approval.abandoned", "")
	if len(abandoned) != 20 {
		t.Errorf("%d abandoned records, want 20", len(abandoned))
	}
	for _, r := range abandoned {
		if !strings.Contains(r.Reason, "the Airlock process holding the call stopped") {
			t.Errorf("abandoned record %d says %q", r.Seq, r.Reason)
			break
		}
	}
	if n := len(rs.audit(t, 1, "call.allowed", "")); n != 10 {
		t.Errorf("%d allowed-call records of the calls A answered before it died, want 10", n)
	}
	for i := 1; i < 3; i++ {
		if v := rs.verify(t, i); !v.OK || v.Records < 50 {
			t.Errorf("audit verify on replica %d: %+v", i, v)
		}
	}
}

// The database goes away while a replica runs: the held call keeps
// waiting, an allowed call is refused (never run unaudited) with a
// reference, and once the database is back the replica works again
// without a restart and the held call can be approved.
func TestServeWhileTheDatabaseIsAway(t *testing.T) {
	pg := pgtest.Private(t)
	rs := startReplicasOn(t, pg.NewDatabase(t), 1, replicasPolicy(t), stdioUp("echo"))
	cs := httpSession(t, rs.serve[0].base+"/mcp/up")
	if got := callText(t, cs, "echo", map[string]any{"k": 0}); !strings.Contains(got, `"k":0`) {
		t.Fatalf("echo: %q", got)
	}
	done := callAsync(cs, "write", map[string]any{"n": 1})
	held := rs.pendingOn(t, 0, 1)[0]

	if err := pg.Stop(); err != nil {
		t.Fatal(err)
	}
	got := within(t, "an allowed call with the database away", 30*time.Second, callAsync(cs, "echo", map[string]any{"k": 1}))
	if !strings.HasPrefix(got, "tool error: ") || !strings.Contains(got, "(ref ") || strings.Contains(got, `"k":1`) {
		t.Errorf("an allowed call with the database away read %q, want a tool error with a ref", got)
	}
	select {
	case got := <-done:
		t.Fatalf("the held call ended while the database was away: %q", got)
	default:
	}

	if err := pg.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		got := within(t, "an allowed call once the database is back", 30*time.Second, callAsync(cs, "echo", map[string]any{"k": 2}))
		if strings.Contains(got, `"k":2`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("30s after the database came back, an allowed call still reads %q\n%s", got, rs.serve[0].stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := rs.api(t, 0, "POST", "/api/v1/approvals/"+held.ID+"/decision", map[string]string{"verdict": "approve"}, nil); code != http.StatusOK {
		t.Fatalf("approving once the database is back: HTTP %d", code)
	}
	if got := within(t, "the held call, approved", 10*time.Second, done); got != `wrote {"n":1}` {
		t.Errorf("the held call read %q", got)
	}
	if v := rs.verify(t, 0); !v.OK {
		t.Errorf("audit verify: %+v", v)
	}
}

// Load: 3 replicas × 300 sessions × 100 allowed calls, no error, every
// call in the one chain, which verifies. The upstream is one streamable
// HTTP server in the test, since 900 stdio children would measure the
// machine's memory.
func TestReplicasUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("90,000 calls")
	}
	up := upstreamHTTP(t)
	rs := startReplicas(t, 3, allowAllPolicy(t), fmt.Sprintf("    url: %s\n", up))
	const sessions = 300
	calls := 100
	if raceEnabled {
		calls = 10
		t.Logf("under the race detector: %d calls per session (the full 100 run without it, in .ci/run)", calls)
	}
	var wg sync.WaitGroup
	var errs atomic.Int64
	var firstErr sync.Once
	start := time.Now()
	for r := range rs.serve {
		rc := &rawClient{http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: sessions}}, endpoint: rs.serve[r].base + "/mcp/up"}
		for s := range sessions {
			wg.Go(func() {
				fail := func(err error) {
					errs.Add(1)
					firstErr.Do(func() { t.Errorf("replica %d session %d: %v", r, s, err) })
				}
				sess, err := rc.open(context.Background())
				if err != nil {
					fail(err)
					return
				}
				defer sess.close(context.Background())
				for n := range calls {
					res, err := sess.call(context.Background(), "echo", fmt.Appendf(nil, `{"r":%d,"s":%d,"n":%d}`, r, s, n))
					if err != nil || res.IsError {
						fail(fmt.Errorf("call %d: %+v %v", n, res, err))
						return
					}
				}
			})
		}
	}
	wg.Wait()
	elapsed := time.Since(start)
	if errs.Load() != 0 {
		for r := range rs.serve {
			if out := rs.serve[r].stderr.String(); strings.Contains(out, "panic") {
				t.Logf("replica %d:\n%s", r, out)
			}
		}
		t.Fatalf("%d sessions failed", errs.Load())
	}
	t.Logf("%d calls in %s: %.0f calls/s", 3*sessions*calls, elapsed.Round(time.Millisecond), float64(3*sessions*calls)/elapsed.Seconds())
	v := rs.verify(t, 2)
	if !v.OK {
		t.Fatalf("audit verify: %+v", v)
	}
	allowed := countEvent(t, rs.db, "call.allowed")
	if allowed != 3*sessions*calls {
		t.Errorf("%d allowed-call records, want %d", allowed, 3*sessions*calls)
	}
}

// countEvent counts the audit records of one event in the database.
func countEvent(t *testing.T, db, event string) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM airlock_audit WHERE event = $1", event).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// upstreamHTTP serves the test upstream's echo over streamable HTTP, in
// the test process, and returns its URL.
func upstreamHTTP(t testing.TB) string {
	t.Helper()
	s := mcp.NewServer(&mcp.Implementation{Name: "airlock-test-upstream", Version: "1"}, nil)
	s.AddTool(&mcp.Tool{Name: "echo", InputSchema: json.RawMessage(`{"type":"object"}`), Annotations: &mcp.ToolAnnotations{ReadOnlyHint: true}},
		func(_ context.Context, req *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
			return &mcp.CallToolResult{Content: []mcp.Content{&mcp.TextContent{Text: string(req.Params.Arguments)}}}, nil
		})
	h := mcp.NewStreamableHTTPHandler(func(*http.Request) *mcp.Server { return s }, &mcp.StreamableHTTPOptions{JSONResponse: true})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
