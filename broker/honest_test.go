package broker_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// stored reads an approval as the store has it now.
func stored(t *testing.T, h *brokertest.Harness, id string) *broker.Approval {
	t.Helper()
	synctest.Wait()
	a, err := h.Store.Approval(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// timedOut is the cause the relay gives a call whose client's request
// timed out.
type timedOut struct{ error }

func (c timedOut) Unwrap() []error { return []error{c.error, broker.ErrClientTimedOut} }

var clientTimedOut = timedOut{fmt.Errorf("%w: Request timed out", broker.ErrClientCancelled)}

// Even a caller with a progress token is told to call again before the
// 5 minutes after which Cursor and VS Code give up; its approval stays
// open and the identical retry joins it.
func TestHoldWaitProgressCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{})
		args := map[string]any{"path": "/x"}
		call := h.NewCall("write", args)
		call.Progress = true
		start := time.Now()
		done := h.Check(context.Background(), call)
		a := h.Held()
		o := <-done
		if waited := time.Since(start); waited != broker.DefaultHoldWaitProgress {
			t.Errorf("caller waited %s, want %s", waited, broker.DefaultHoldWaitProgress)
		}
		if o.Forward || !strings.Contains(o.Refusal, "Approval pending (ref "+a.ID+")") {
			t.Fatalf("at the cap: %+v", o)
		}
		if n := len(h.Caller.Waited()); n < 27 { // every 10 s from 0 to 4m20s (4m30s races the cap)
			t.Errorf("%d heartbeats, want 27 or 28", n)
		}
		if s := stored(t, h, a.ID).Status; s != broker.StatusPending {
			t.Fatalf("after the cap the approval is %s", s)
		}
		retry := h.NewCall("write", args)
		retry.Progress = true
		done = h.Check(context.Background(), retry)
		synctest.Wait()
		if got := h.Vote(a.ID, "alice", broker.Approve, ""); !got.CallerWaiting {
			t.Error("approved while the retry waited, but not known to be waiting")
		}
		if o := <-done; !released(o) {
			t.Fatalf("retry: %+v", o)
		}
	})
	// A negative cap is none: heartbeats until the decision.
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{HoldWaitProgress: -1})
		call := h.NewCall("write", map[string]any{"path": "/x"})
		call.Progress = true
		done := h.Check(context.Background(), call)
		a := h.Held()
		time.Sleep(9 * time.Minute)
		h.Vote(a.ID, "alice", broker.Approve, "")
		if o := <-done; !released(o) {
			t.Fatalf("uncapped: %+v", o)
		}
	})
}

// A client that timed out will likely call again: its approval stays
// open for the cancel grace, its retry joins it, and only without one is
// it withdrawn, with the client's reason. A plain cancel withdraws at
// once (TestHoldWithdrawnOnCancel).
func TestCancelGrace(t *testing.T) {
	args := map[string]any{"path": "/x"}
	start := func(t *testing.T, h *brokertest.Harness) *broker.Approval {
		ctx, cancel := context.WithCancelCause(context.Background())
		done := h.Call(ctx, "write", args)
		a := h.Held()
		time.Sleep(30 * time.Second)
		cancel(clientTimedOut)
		if o := <-done; o.Forward || o.Refusal != "" {
			t.Fatalf("a cancelled call was answered: %+v", o)
		}
		return a
	}
	t.Run("withdrawn after the grace", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{HoldWait: -1})
			a := start(t, h)
			time.Sleep(broker.DefaultCancelGrace - time.Second)
			if s := stored(t, h, a.ID).Status; s != broker.StatusPending {
				t.Fatalf("within the grace: %s", s)
			}
			time.Sleep(time.Second)
			got := stored(t, h, a.ID)
			if got.Status != broker.StatusWithdrawn || got.Note != "the client cancelled the call: Request timed out" {
				t.Fatalf("after the grace: %s (%s)", got.Status, got.Note)
			}
		})
	})
	t.Run("a retry joins", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{HoldWait: -1})
			a := start(t, h)
			time.Sleep(time.Minute)
			done := h.Call(context.Background(), "write", args)
			time.Sleep(5 * time.Minute) // well past the grace
			if s := stored(t, h, a.ID).Status; s != broker.StatusPending {
				t.Fatalf("with the retry waiting: %s", s)
			}
			h.Vote(a.ID, "alice", broker.Approve, "")
			if o := <-done; !released(o) {
				t.Fatalf("retry: %+v", o)
			}
		})
	})
	t.Run("approved in the grace lapses", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{HoldWait: -1})
			a := start(t, h)
			got := h.Vote(a.ID, "alice", broker.Approve, "")
			if got.CallerWaiting || !got.RetryUntil.Equal(got.ExpiresAt.Add(broker.DefaultApprovedRetryWindow)) {
				t.Errorf("approved with nobody waiting: caller_waiting %v, retry_until %s (expires %s)", got.CallerWaiting, got.RetryUntil, got.ExpiresAt)
			}
			time.Sleep(broker.DefaultCancelGrace)
			if s := stored(t, h, a.ID).Status; s != broker.StatusApproved {
				t.Fatalf("after the grace: %s", s)
			}
			time.Sleep(time.Until(got.RetryUntil) + time.Second)
			if s := stored(t, h, a.ID).Status; s != broker.StatusLapsed {
				t.Fatalf("after the retry window: %s", s)
			}
		})
	})
	t.Run("negative grace withdraws at once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{HoldWait: -1, CancelGrace: -1})
			a := start(t, h)
			if s := stored(t, h, a.ID).Status; s != broker.StatusWithdrawn {
				t.Fatalf("without a grace: %s", s)
			}
		})
	})
}

// An approval nobody waits for says so, runs on the agent's retry even
// after its expiry, within the retry window, and lapses after it: it
// never says "approved" forever of a call that did not run.
func TestApprovedWithoutWaiter(t *testing.T) {
	args := map[string]any{"path": "/x"}
	pending := func(t *testing.T, h *brokertest.Harness) *broker.Approval {
		if o := <-h.Call(context.Background(), "write", args); o.Forward || !strings.Contains(o.Refusal, "Approval pending") {
			t.Fatalf("first attempt: %+v", o)
		}
		a := h.Held()
		got := h.Vote(a.ID, "alice", broker.Approve, "")
		if got.CallerWaiting || got.Awaited() {
			t.Fatalf("approved after its caller was told pending, yet said to be awaited: %+v", got)
		}
		return got
	}
	t.Run("lapses", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{})
			a := pending(t, h)
			time.Sleep(time.Until(a.RetryUntil) - time.Second)
			if s := stored(t, h, a.ID).Status; s != broker.StatusApproved {
				t.Fatalf("within the window: %s", s)
			}
			time.Sleep(2 * time.Second)
			got := stored(t, h, a.ID)
			if got.Status != broker.StatusLapsed || got.DecidedBy != "alice" || !strings.HasPrefix(got.Note, "the agent did not call again by ") {
				t.Fatalf("after the window: %+v", got)
			}
			if evs := strings.Join(h.AuditEvents(), " "); evs != "call.held approval.approved approval.lapsed" {
				t.Errorf("audit = %s", evs)
			}
			if n := h.Broker.TrackedHolds(); n != 0 {
				t.Errorf("%d approvals kept after the lapse", n)
			}
			// A lapsed approval is final: a retry asks anew.
			done := h.Call(context.Background(), "write", args)
			if b := h.Held(); b.ID == a.ID {
				t.Error("a retry joined a lapsed approval")
			}
			<-done
		})
	})
	t.Run("late retry runs once", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{})
			a := pending(t, h)
			time.Sleep(time.Until(a.ExpiresAt) + 5*time.Minute) // expired, within the window
			if o := <-h.Call(context.Background(), "write", args); !released(o) {
				t.Fatalf("retry after expiry: %+v", o)
			}
			got := stored(t, h, a.ID)
			if got.Status != broker.StatusApproved || got.ReleasedAt.IsZero() {
				t.Fatalf("after the late retry: %+v", got)
			}
			time.Sleep(time.Hour)
			if s := stored(t, h, a.ID).Status; s != broker.StatusApproved {
				t.Errorf("a released call became %s", s)
			}
			if n := h.Broker.TrackedHolds(); n != 0 {
				t.Errorf("%d approvals kept after the release", n)
			}
			// Used once: the next identical call asks anew.
			done := h.Call(context.Background(), "write", args)
			if b := h.Held(); b.ID == a.ID {
				t.Error("a second retry joined a used approval")
			}
			<-done
		})
	})
	t.Run("retry after the window asks anew", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{ApprovedRetryWindow: time.Minute})
			a := pending(t, h)
			time.Sleep(time.Until(a.RetryUntil) + time.Second)
			done := h.Call(context.Background(), "write", args)
			if b := h.Held(); b.ID == a.ID {
				t.Error("a retry after the window joined the approval")
			}
			<-done
			if s := stored(t, h, a.ID).Status; s != broker.StatusLapsed {
				t.Errorf("after the window: %s", s)
			}
		})
	})
	t.Run("stopping lapses it", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{})
			a := pending(t, h)
			h.Broker.Close()
			if got := stored(t, h, a.ID); got.Status != broker.StatusLapsed || got.Note != "Airlock stopped before the agent called again" {
				t.Errorf("after Close: %s (%s)", got.Status, got.Note)
			}
		})
	})
}

// At Start, an approved call that never ran and cannot now (its holder's
// process is gone: with bbolt, the previous run) lapses; one that ran
// stays approved.
func TestRestartLapsesApprovedUnreleased(t *testing.T) {
	store := brokertest.NewMemStore()
	now := time.Now()
	for _, a := range []*broker.Approval{
		{ID: "01UNUSED", Status: broker.StatusApproved, DecidedBy: "alice", DecidedAt: now.Add(-time.Minute)},
		{ID: "01USED", Status: broker.StatusApproved, DecidedBy: "alice", DecidedAt: now.Add(-time.Minute), ReleasedAt: now},
	} {
		a.Server, a.Tool, a.RequestedAt, a.ExpiresAt, a.Holder = "test", "write", now.Add(-2*time.Minute), now.Add(time.Hour), "gone"
		if err := store.CreateApproval(context.Background(), a, nil); err != nil {
			t.Fatal(err)
		}
	}
	brokertest.NewHarness(t, broker.Options{Policy: brokertest.AllowAll(), Store: store})
	if got, _ := store.Approval(context.Background(), "01UNUSED"); got.Status != broker.StatusLapsed || got.DecidedBy != "alice" {
		t.Errorf("unused after restart: %+v", got)
	}
	if got, _ := store.Approval(context.Background(), "01USED"); got.Status != broker.StatusApproved {
		t.Errorf("used after restart: %+v", got)
	}
	recs, _ := store.Audit(context.Background(), broker.AuditQuery{})
	if len(recs) != 1 || recs[0].Event != broker.EventLapsed || recs[0].ApprovalID != "01UNUSED" {
		t.Errorf("audit = %+v", recs)
	}
}
