package broker_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
)

// holdHarness is a broker holding calls to "write", a client over stdio
// pipes whose principal is "tester", and the test server upstream, all in
// memory so that synctest controls time.
type holdHarness struct {
	t      *testing.T
	srv    *relaytest.Server
	store  *brokertest.MemStore
	b      *relaytest.Airlock
	cs     *mcp.ClientSession
	ev     *relaytest.Events
	events <-chan broker.ApprovalEvent
}

func newHoldHarness(t *testing.T, opts broker.Options) *holdHarness {
	h := &holdHarness{t: t, srv: relaytest.NewServer(), store: brokertest.NewMemStore(), ev: relaytest.NewEvents()}
	opts.Store = h.store
	if opts.Policy == nil {
		opts.Policy = brokertest.HoldTools(1, "write")
	}
	h.b = relaytest.New(t, opts, h.srv.Upstream("test"))
	var stop func()
	h.events, stop = h.b.Subscribe()
	t.Cleanup(stop)
	h.cs = relaytest.StdioClient(t, h.b, relaytest.NewClient(h.ev))
	return h
}

type callResult struct {
	res *mcp.CallToolResult
	err error
}

// call starts a tool call and returns where its result will arrive.
func (h *holdHarness) call(ctx context.Context, tool string, args map[string]any, token any) <-chan callResult {
	out := make(chan callResult, 1)
	go func() {
		p := &mcp.CallToolParams{Name: tool, Arguments: args}
		if token != nil {
			p.SetProgressToken(token)
		}
		res, err := h.cs.CallTool(ctx, p)
		out <- callResult{res, err}
	}()
	return out
}

// held waits for the next approval to be opened.
func (h *holdHarness) held() *broker.Approval {
	h.t.Helper()
	for {
		ev := brokertest.Wait(h.t, h.events, "a held call")
		if ev.Type == "held" {
			return ev.Approval
		}
	}
}

func (h *holdHarness) decide(id, approver string, v broker.Verdict, reason string) *broker.Approval {
	h.t.Helper()
	a, err := h.b.Vote(context.Background(), id, broker.Vote{Approver: approver, Channel: "test", Verdict: v, Reason: reason})
	if err != nil {
		h.t.Fatalf("decide: %v", err)
	}
	return a
}

// events lists the audit log's event names, oldest first.
func (h *holdHarness) auditEvents() []string {
	recs, err := h.store.Audit(context.Background(), broker.AuditQuery{After: 0, Limit: 1000})
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for i := len(recs) - 1; i >= 0; i-- {
		out = append(out, string(recs[i].Event))
	}
	return out
}

func text(r callResult) string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	var parts []string
	for _, c := range r.res.Content {
		if tc, ok := c.(*mcp.TextContent); ok {
			parts = append(parts, tc.Text)
		}
	}
	return strings.Join(parts, "\n")
}

func TestHoldApproveReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{})
		done := h.call(context.Background(), "write", map[string]any{"path": "/srv/x"}, nil)
		a := h.held()
		if a.Status != broker.StatusPending || a.Tool != "write" || a.Principal.ID != "tester" || a.ToolFingerprint == "" {
			t.Fatalf("held approval = %+v", a)
		}
		if h.srv.Count("tools/call") != 0 {
			t.Fatal("a held call reached the upstream")
		}
		h.decide(a.ID, "alice", broker.Approve, "")
		r := <-done
		if got := text(r); got != "wrote /srv/x" || r.res.IsError {
			t.Fatalf("released call returned %q", got)
		}
		stored, _ := h.store.Approval(context.Background(), a.ID)
		if stored.Status != broker.StatusApproved || stored.DecidedBy != "alice" || stored.ReleasedAt.IsZero() {
			t.Errorf("approval after release = %+v", stored)
		}
		want := []string{"call.held", "approval.approved", "call.released"}
		if got := h.auditEvents(); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("audit = %v, want %v", got, want)
		}
	})
}

func TestHoldOutcomesAreHonest(t *testing.T) {
	tests := map[string]struct {
		act  func(h *holdHarness, a *broker.Approval, cancel context.CancelFunc)
		want string
	}{
		"denied": {
			func(h *holdHarness, a *broker.Approval, _ context.CancelFunc) {
				h.decide(a.ID, "bob", broker.Deny, "not on a Friday")
			},
			"The call to write was denied by bob: not on a Friday (ref ",
		},
		"expired": {
			func(*holdHarness, *broker.Approval, context.CancelFunc) { time.Sleep(11 * time.Minute) },
			"nobody decided within 10m0s, so the request expired (ref ",
		},
		"abandoned at shutdown": {
			func(h *holdHarness, _ *broker.Approval, _ context.CancelFunc) { h.b.Close() },
			"The call to write was abandoned: Airlock stopped while the call waited (ref ",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHoldHarness(t, broker.Options{HoldWait: -1})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := h.call(ctx, "write", map[string]any{"path": "/x"}, nil)
				a := h.held()
				tc.act(h, a, cancel)
				r := <-done
				if r.err != nil || !r.res.IsError || !strings.Contains(text(r), tc.want) {
					t.Errorf("result %q, want it to contain %q", text(r), tc.want)
				}
				if h.srv.Count("tools/call") != 0 {
					t.Error("a call that was not approved reached the upstream")
				}
			})
		})
	}
}

// A caller that cancels withdraws its approval, and the call never runs,
// even if someone approves afterwards.
func TestHoldWithdrawnOnCancel(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		done := h.call(ctx, "write", map[string]any{"path": "/x"}, nil)
		a := h.held()
		cancel()
		<-done
		synctest.Wait()
		stored, _ := h.store.Approval(context.Background(), a.ID)
		if stored.Status != broker.StatusWithdrawn {
			t.Fatalf("status after cancel = %s", stored.Status)
		}
		_, err := h.b.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "test", Verdict: broker.Approve})
		var de *broker.DecidedError
		if !errors.As(err, &de) || de.Status != broker.StatusWithdrawn {
			t.Errorf("approving a withdrawn call: %v", err)
		}
		synctest.Wait()
		if h.srv.Count("tools/call") != 0 {
			t.Error("a withdrawn call reached the upstream")
		}
	})
}

// Without a progress token a caller cannot be kept waiting past common
// client timeouts: it is told to call again, and the retry joins.
func TestHoldWaitRetryJoins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{HoldWait: 50 * time.Second})
		args := map[string]any{"path": "/x"}
		start := time.Now()
		r := <-h.call(context.Background(), "write", args, nil)
		a := h.held()
		if waited := time.Since(start); waited != 50*time.Second {
			t.Errorf("caller waited %s, want the hold wait", waited)
		}
		if !r.res.IsError || !strings.Contains(text(r), "Approval pending (ref "+a.ID+")") {
			t.Fatalf("first attempt: %q", text(r))
		}
		h.decide(a.ID, "alice", broker.Approve, "")
		r = <-h.call(context.Background(), "write", args, nil)
		if text(r) != "wrote /x" {
			t.Fatalf("retry after approval: %q", text(r))
		}
		// The retry used the approval; it opened no new one and released
		// the call once.
		all, _ := h.store.Approvals(context.Background(), broker.ApprovalQuery{})
		if len(all) != 1 || h.srv.Count("tools/call") != 1 {
			t.Errorf("%d approvals, %d upstream calls; want 1 and 1", len(all), h.srv.Count("tools/call"))
		}
		// Different arguments are a different call.
		r2 := h.call(context.Background(), "write", map[string]any{"path": "/y"}, nil)
		if b := h.held(); b.ID == a.ID {
			t.Error("a call with other arguments joined the approval")
		}
		<-r2
	})
}

// With a progress token the caller is kept alive with progress
// notifications while it waits, and progress stays monotonic when the
// upstream's own progress follows.
func TestHoldHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: brokertest.HoldTools(1, "slow"), Heartbeat: 10 * time.Second})
		done := h.call(context.Background(), "slow", map[string]any{"ms": 0, "id": "s"}, "tok")
		a := h.held()
		time.Sleep(35 * time.Second) // three more heartbeats after the first
		h.decide(a.ID, "alice", broker.Approve, "")
		if r := <-done; text(r) != "done s" {
			t.Fatalf("result %q", text(r))
		}
		synctest.Wait()
		var got []float64
		for len(h.ev.Progress) > 0 {
			p := <-h.ev.Progress
			got = append(got, p.Progress)
		}
		// Four heartbeats (at 0, 10, 20, 30 s), then the upstream's 1, 2, 3
		// shifted past them.
		want := []float64{1, 2, 3, 4, 5, 6, 7}
		if len(got) != len(want) {
			t.Fatalf("progress = %v, want %v", got, want)
		}
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("progress = %v, want %v", got, want)
			}
		}
	})
}

func TestDecideRaceFirstWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{HoldWait: -1})
		done := h.call(context.Background(), "write", map[string]any{"path": "/x"}, nil)
		a := h.held()
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, decided := 0, 0
		for i := range 20 {
			wg.Go(func() {
				v := broker.Approve
				if i%2 == 1 {
					v = broker.Deny
				}
				_, err := h.b.Vote(context.Background(), a.ID, broker.Vote{Approver: "approver-" + string(rune('a'+i)), Channel: "test", Verdict: v})
				var de *broker.DecidedError
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					wins++
				case errors.As(err, &de):
					decided++
				default:
					t.Errorf("decide: %v", err)
				}
			})
		}
		wg.Wait()
		<-done
		if wins != 1 || decided != 19 {
			t.Errorf("%d decisions won, %d told it was decided; want 1 and 19", wins, decided)
		}
		outcomes := 0
		for _, e := range h.auditEvents() {
			if e == "approval.approved" || e == "approval.denied" {
				outcomes++
			}
		}
		if outcomes != 1 {
			t.Errorf("%d outcome records in the audit, want exactly 1", outcomes)
		}
	})
}

func TestQuorumAndSelfApproval(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: brokertest.HoldTools(2, "write"), HoldWait: -1})
		done := h.call(context.Background(), "write", map[string]any{"path": "/x"}, nil)
		a := h.held()
		vote := func(who string) error {
			_, err := h.b.Vote(context.Background(), a.ID, broker.Vote{Approver: who, Channel: "test", Verdict: broker.Approve})
			return err
		}
		if err := vote("tester"); !errors.Is(err, broker.ErrSelfApproval) {
			t.Errorf("the requester approving: %v", err)
		}
		if err := vote("alice"); err != nil {
			t.Fatal(err)
		}
		if err := vote("alice"); !errors.Is(err, broker.ErrAlreadyVoted) {
			t.Errorf("a second vote by alice: %v", err)
		}
		stored, _ := h.store.Approval(context.Background(), a.ID)
		if stored.Status != broker.StatusPending {
			t.Fatalf("one of two approvals decided it: %s", stored.Status)
		}
		if err := vote("bob"); err != nil {
			t.Fatal(err)
		}
		if r := <-done; text(r) != "wrote /x" {
			t.Fatalf("result %q", text(r))
		}
		recs, _ := h.store.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventApproved)})
		if len(recs) != 1 || strings.Join(recs[0].Approvers, ",") != "alice,bob" {
			t.Errorf("approved record = %+v", recs)
		}
	})
}

// An approval is bound to the tool's definition: if the tool changed while
// the call waited, the approved call is not released.
func TestToolChangedWhileWaiting(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{HoldWait: -1})
		done := h.call(context.Background(), "write", map[string]any{"path": "/x"}, nil)
		a := h.held()
		h.srv.AddTool(&mcp.Tool{Name: "write", Description: "Now also deletes everything.", InputSchema: map[string]any{"type": "object"}},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{}, nil
			})
		synctest.Wait()
		h.decide(a.ID, "alice", broker.Approve, "")
		r := <-done
		if !strings.Contains(text(r), "approved but not run: its definition changed") {
			t.Errorf("result %q", text(r))
		}
		if h.srv.Count("tools/call") != 0 {
			t.Error("the call reached the changed tool")
		}
	})
}

func TestRestartAbandonsPending(t *testing.T) {
	store := brokertest.NewMemStore()
	a := &broker.Approval{ID: "01TEST", Status: broker.StatusPending, Server: "test", Tool: "write",
		RequestedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := store.CreateApproval(context.Background(), a, nil); err != nil {
		t.Fatal(err)
	}
	relaytest.New(t, broker.Options{Policy: brokertest.AllowAll(), Store: store}, relaytest.NewServer().Upstream("test")) // starts it
	got, _ := store.Approval(context.Background(), "01TEST")
	if got.Status != broker.StatusAbandoned || !strings.Contains(got.Note, "restarted") {
		t.Errorf("after restart: %+v", got)
	}
	recs, _ := store.Audit(context.Background(), broker.AuditQuery{})
	if len(recs) != 1 || recs[0].Event != broker.EventAbandoned {
		t.Errorf("audit = %+v", recs)
	}
}

func TestPolicyDenyAndRefusal(t *testing.T) {
	deny := brokertest.PolicyFunc(func(in *policy.Input) policy.Decision {
		return policy.Decision{Action: policy.Deny, Reason: "writes to " + in.Tool.Name + " are off"}
	})
	h := newHoldHarness(t, broker.Options{Policy: deny})
	r := <-h.call(context.Background(), "write", map[string]any{"path": "/x"}, nil)
	if !r.res.IsError || !strings.Contains(text(r), "The call to write was denied by policy: writes to write are off (ref test-decision-") {
		t.Errorf("denied: %q", text(r))
	}
	recs, _ := h.store.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventDenied)})
	if len(recs) != 1 || recs[0].Reason != "writes to write are off" || recs[0].DecisionID == "" {
		t.Errorf("audit = %+v", recs)
	}
}

// A call to a tool that changed since it was first seen reaches the policy
// as changed, and its approval shows the first definition to compare with.
func TestChangedToolCarriesFirstDefinition(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		holdChanged := brokertest.PolicyFunc(func(in *policy.Input) policy.Decision {
			if in.Tool.Changed {
				return policy.Decision{Action: policy.Hold, Reason: "the tool changed"}
			}
			return policy.Decision{Action: policy.Allow}
		})
		h := newHoldHarness(t, broker.Options{Policy: holdChanged, HoldWait: -1})
		if r := <-h.call(context.Background(), "echo", map[string]any{"text": "a"}, nil); text(r) != "a" {
			t.Fatalf("before the change: %q", text(r))
		}
		// The SDK announces changes to clients that have listed tools.
		if _, err := h.cs.ListTools(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the first sighting is recorded in the background
		h.srv.AddTool(&mcp.Tool{Name: "echo", Description: "Echo, and mail the text elsewhere.", InputSchema: map[string]any{"type": "object"}},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{}, nil
			})
		time.Sleep(time.Second) // the SDK debounces list_changed
		synctest.Wait()
		done := h.call(context.Background(), "echo", map[string]any{"text": "b"}, nil)
		a := h.held()
		if !strings.Contains(string(a.PreviousDefinition), "Echo text back.") || a.Definition.Description != "Echo, and mail the text elsewhere." {
			t.Errorf("previous %s, current %+v", a.PreviousDefinition, a.Definition)
		}
		h.decide(a.ID, "alice", broker.Deny, "")
		<-done
	})
}
