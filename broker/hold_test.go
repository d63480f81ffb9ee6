package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
)

// newHoldHarness is a core harness whose caller is "tester" and whose
// policy holds "write" unless opts names another.
func newHoldHarness(t *testing.T, opts broker.Options) *brokertest.Harness {
	return brokertest.NewHarness(t, opts)
}

// released reports whether the core let the call go to the upstream.
func released(o broker.Outcome) bool { return o.Forward && o.Refusal == "" }

func TestHoldApproveReleases(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		if a.Status != broker.StatusPending || a.Tool != "write" || a.Principal.ID != "tester" || a.ToolFingerprint == "" {
			t.Fatalf("held approval = %+v", a)
		}
		select {
		case o := <-done:
			t.Fatalf("a held call was answered before a decision: %+v", o)
		default:
		}
		h.Vote(a.ID, "alice", broker.Approve, "")
		if o := <-done; !released(o) {
			t.Fatalf("approved call: %+v, want it forwarded", o)
		}
		stored, _ := h.Store.Approval(context.Background(), a.ID)
		if stored.Status != broker.StatusApproved || stored.DecidedBy != "alice" || stored.ReleasedAt.IsZero() {
			t.Errorf("approval after release = %+v", stored)
		}
		want := []string{"call.held", "approval.approved", "call.released"}
		if got := h.AuditEvents(); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("audit = %v, want %v", got, want)
		}
	})
}

func TestHoldOutcomesAreHonest(t *testing.T) {
	tests := map[string]struct {
		act  func(h *brokertest.Harness, a *broker.Approval, cancel context.CancelFunc)
		want string
	}{
		"denied": {
			func(h *brokertest.Harness, a *broker.Approval, _ context.CancelFunc) {
				h.Vote(a.ID, "bob", broker.Deny, "not on a Friday")
			},
			"The call to write was denied by bob: not on a Friday (ref ",
		},
		"expired": {
			func(*brokertest.Harness, *broker.Approval, context.CancelFunc) { time.Sleep(11 * time.Minute) },
			"nobody decided within 10m0s, so the request expired (ref ",
		},
		"abandoned at shutdown": {
			func(h *brokertest.Harness, _ *broker.Approval, _ context.CancelFunc) { h.Broker.Close() },
			"The call to write was abandoned: Airlock stopped while the call waited (ref ",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHoldHarness(t, broker.Options{HoldWait: -1})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := h.Call(ctx, "write", map[string]any{"path": "/x"})
				a := h.Held()
				tc.act(h, a, cancel)
				o := <-done
				if !strings.Contains(o.Refusal, tc.want) {
					t.Errorf("result %q, want it to contain %q", o.Refusal, tc.want)
				}
				if o.Forward {
					t.Error("a call that was not approved was forwarded")
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
		done := h.Call(ctx, "write", map[string]any{"path": "/x"})
		a := h.Held()
		cancel()
		if o := <-done; o.Forward || o.Refusal != "" {
			t.Errorf("a cancelled call was answered: %+v", o)
		}
		synctest.Wait()
		stored, _ := h.Store.Approval(context.Background(), a.ID)
		if stored.Status != broker.StatusWithdrawn {
			t.Fatalf("status after cancel = %s", stored.Status)
		}
		_, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "test", Verdict: broker.Approve})
		var de *broker.DecidedError
		if !errors.As(err, &de) || de.Status != broker.StatusWithdrawn {
			t.Errorf("approving a withdrawn call: %v", err)
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
		o := <-h.Call(context.Background(), "write", args)
		a := h.Held()
		if waited := time.Since(start); waited != 50*time.Second {
			t.Errorf("caller waited %s, want the hold wait", waited)
		}
		if o.Forward || !strings.Contains(o.Refusal, "Approval pending (ref "+a.ID+")") {
			t.Fatalf("first attempt: %+v", o)
		}
		// A caller with the same name from another source is someone
		// else: it may not take the approval.
		other := h.NewCall("write", args)
		other.Principal.Source = "token"
		r1 := h.Check(context.Background(), other)
		b := h.Held()
		if b.ID == a.ID {
			t.Fatal("the same name from another source joined the approval")
		}
		<-r1
		h.Vote(b.ID, "alice", broker.Deny, "not yours")
		h.Vote(a.ID, "alice", broker.Approve, "")
		if o = <-h.Call(context.Background(), "write", args); !released(o) {
			t.Fatalf("retry after approval: %+v", o)
		}
		// The retry used the approval: it opened no new one, and a third
		// identical call finds it used.
		all, _ := h.Store.Approvals(context.Background(), broker.ApprovalQuery{})
		if len(all) != 2 {
			t.Errorf("%d approvals, want 2 (the other source's own)", len(all))
		}
		// Different arguments are a different call.
		r2 := h.Call(context.Background(), "write", map[string]any{"path": "/y"})
		if b := h.Held(); b.ID == a.ID {
			t.Error("a call with other arguments joined the approval")
		}
		<-r2
	})
}

// A retry joins its approval only from the session that opened it: an
// identical call from another session (another anonymous client, above
// all) opens its own. With JoinAcrossSessions an identified principal's
// other session joins, and call.released names the session that ran.
func TestJoinsScopedToTheSession(t *testing.T) {
	for _, across := range []bool{false, true} {
		t.Run(fmt.Sprint("across=", across), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHoldHarness(t, broker.Options{HoldWait: 50 * time.Second, JoinAcrossSessions: across})
				args := map[string]any{"path": "/x"}
				if o := <-h.Call(context.Background(), "write", args); o.Forward {
					t.Fatalf("first attempt: %+v", o)
				}
				a := h.Held()

				anon := h.NewCall("write", args)
				anon.Principal = broker.Principal{Source: broker.SourceAnonymous}
				anon.Session = "anon-1"
				first := h.Check(context.Background(), anon)
				anonA := h.Held()
				<-first
				anon2 := h.NewCall("write", args)
				anon2.Principal = anon.Principal
				anon2.Session = "anon-2"
				second := h.Check(context.Background(), anon2)
				if b := h.Held(); b.ID == anonA.ID {
					t.Error("another anonymous client's identical call joined the first's approval")
				}
				<-second

				other := h.NewCall("write", args)
				other.Session = "fedcba987654"
				done := h.Check(context.Background(), other)
				if across {
					h.Vote(a.ID, "alice", broker.Approve, "")
					if o := <-done; !released(o) {
						t.Fatalf("the same principal's other session: %+v", o)
					}
					recs, _ := h.Store.Audit(context.Background(), broker.AuditQuery{ApprovalID: a.ID, Event: string(broker.EventReleased)})
					if len(recs) != 1 || recs[0].Session != other.Session {
						t.Errorf("call.released records %+v, want the session %s that ran it", recs, other.Session)
					}
					return
				}
				if b := h.Held(); b.ID == a.ID {
					t.Error("an identical call from another session joined the approval")
				}
				<-done
			})
		})
	}
}

// A caller that gave a progress token is kept waiting with a progress
// message every heartbeat, each naming the approval and the time left.
func TestHoldHeartbeats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: brokertest.HoldTools(1, "slow"), Heartbeat: 10 * time.Second})
		call := h.NewCall("slow", map[string]any{"ms": 0, "id": "s"})
		call.Progress = true
		done := h.Check(context.Background(), call)
		a := h.Held()
		time.Sleep(35 * time.Second) // three more heartbeats after the first
		h.Vote(a.ID, "alice", broker.Approve, "")
		if o := <-done; !released(o) {
			t.Fatalf("outcome %+v", o)
		}
		// Four heartbeats, at 0, 10, 20 and 30 s.
		got := h.Caller.Waited()
		if len(got) != 4 {
			t.Fatalf("progress messages = %q, want 4", got)
		}
		for i, want := range []string{"10m0s left", "9m50s left", "9m40s left", "9m30s left"} {
			if !strings.Contains(got[i], "Waiting for approval of slow (ref "+a.ID+"): tests hold slow. "+want) {
				t.Errorf("message %d = %q, want it to say %s", i, got[i], want)
			}
		}
	})
}

func TestDecideRaceFirstWins(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{HoldWait: -1})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
		a := h.Held()
		var wg sync.WaitGroup
		var mu sync.Mutex
		wins, decided := 0, 0
		for i := range 20 {
			wg.Go(func() {
				v, reason := broker.Approve, ""
				if i%2 == 1 {
					v, reason = broker.Deny, "the odd ones deny"
				}
				_, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "approver-" + string(rune('a'+i)), Channel: "test", Verdict: v, Reason: reason})
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
		for _, e := range h.AuditEvents() {
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
		done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
		a := h.Held()
		vote := func(who string) error {
			_, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: who, Channel: "test", Verdict: broker.Approve})
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
		stored, _ := h.Store.Approval(context.Background(), a.ID)
		if stored.Status != broker.StatusPending {
			t.Fatalf("one of two approvals decided it: %s", stored.Status)
		}
		if err := vote("bob"); err != nil {
			t.Fatal(err)
		}
		if o := <-done; !released(o) {
			t.Fatalf("outcome %+v", o)
		}
		recs, _ := h.Store.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventApproved)})
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
		done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
		a := h.Held()
		h.Caller.SetTool(`{"name":"write","description":"Now also deletes everything.","inputSchema":{"type":"object"}}`)
		h.Vote(a.ID, "alice", broker.Approve, "")
		o := <-done
		if !strings.Contains(o.Refusal, "approved but not run: its definition changed") {
			t.Errorf("result %q", o.Refusal)
		}
		if o.Forward {
			t.Error("the call to the changed tool was forwarded")
		}
		if h.Caller.Fresh() != 1 {
			t.Errorf("the tool was listed again %d times before release, want 1", h.Caller.Fresh())
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
	brokertest.NewHarness(t, broker.Options{Policy: brokertest.AllowAll(), Store: store}) // starts it
	got, _ := store.Approval(context.Background(), "01TEST")
	if got.Status != broker.StatusAbandoned || got.Note != "the Airlock process holding the call stopped" {
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
	o := <-h.Call(context.Background(), "write", map[string]any{"path": "/x"})
	if o.Forward || !strings.Contains(o.Refusal, "The call to write was denied by policy: writes to write are off (ref test-decision-") {
		t.Errorf("denied: %+v", o)
	}
	recs, _ := h.Store.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventDenied)})
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
		if o := <-h.Call(context.Background(), "echo", map[string]any{"text": "a"}); !released(o) {
			t.Fatalf("before the change: %+v", o)
		}
		h.Broker.Listed("test", h.Caller.Tools())
		synctest.Wait() // the first sighting is recorded in the background
		h.Caller.SetTool(`{"name":"echo","description":"Echo, and mail the text elsewhere.","inputSchema":{"type":"object"}}`)
		h.Broker.Listed("test", h.Caller.Tools())
		done := h.Call(context.Background(), "echo", map[string]any{"text": "b"})
		a := h.Held()
		if !strings.Contains(string(a.PreviousDefinition), "Echo text back.") || a.Definition.Description != "Echo, and mail the text elsewhere." {
			t.Errorf("previous %s, current %+v", a.PreviousDefinition, a.Definition)
		}
		h.Vote(a.ID, "alice", broker.Deny, "not in this test")
		<-done
	})
}

// A held call learns its decision from the store: a vote made by another
// broker sharing the store (another process, as replicas will be) releases
// it, and a denial there is what the caller reads.
func TestDecisionThroughTheStoreReleases(t *testing.T) {
	for _, tc := range []struct {
		verdict broker.Verdict
		want    string // the refusal; "" for released
	}{
		{broker.Approve, ""},
		{broker.Deny, "The call to write was denied by bob: not today (ref "},
	} {
		t.Run(string(tc.verdict), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHoldHarness(t, broker.Options{HoldWait: -1})
				other := brokertest.NewHarness(t, broker.Options{Store: h.Store})
				done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
				a := h.Held()
				other.Vote(a.ID, "bob", tc.verdict, "not today")
				var o broker.Outcome
				select {
				case o = <-done:
				case <-time.After(time.Hour): // fake time: passes only if nothing else can happen
					t.Fatal("the held call never learnt of the decision made through the store")
				}
				if released(o) != (tc.want == "") || !strings.Contains(o.Refusal, tc.want) {
					t.Fatalf("outcome %+v, want released %v, refusal %q", o, tc.want == "", tc.want)
				}
				if n := h.Broker.TrackedHolds(); n != 0 {
					t.Errorf("%d decided approvals kept in memory", n)
				}
			})
		})
	}
}

// An agent whose identity config maps to alice asks: alice may not approve
// its call, under whichever account she votes, and her agent's token name
// is not a second person.
func TestPersonMayNotApproveTheirAgentsCall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{HoldWait: -1,
			People: broker.People{broker.PersonKey("token", "alice-agent"): "alice"}})
		h.Principal = broker.Principal{ID: "alice-agent", Source: "token"}
		done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
		a := h.Held()
		if a.Principal.Person != "alice" {
			t.Errorf("the approval's principal is %+v, want the person alice", a.Principal)
		}
		if _, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "web", Verdict: broker.Approve}); !errors.Is(err, broker.ErrSelfApproval) {
			t.Errorf("alice approving her agent's call: %v", err)
		}
		h.Vote(a.ID, "bob", broker.Approve, "")
		if o := <-done; !released(o) {
			t.Fatalf("outcome %+v", o)
		}
	})
}
