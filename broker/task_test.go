package broker_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// taskCaller is the test's Caller as the relay is for a call answered
// through a task: it hears Held.
type taskCaller struct {
	*brokertest.Caller
	held chan broker.Pending
}

func (c *taskCaller) Held(h broker.Pending) { c.held <- h }

// A call answered through a task is told at once that it is held, with
// the approval and the time it may wait, and then waits past HoldWait
// without heartbeats until the decision.
func TestTaskCallerWaitsForTheDecision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: brokertest.HoldTools(1, "slow"), HoldWait: 50 * time.Second, Heartbeat: 10 * time.Second})
		caller := &taskCaller{Caller: h.Caller, held: make(chan broker.Pending, 1)}
		call := h.NewCall("slow", map[string]any{"ms": 0, "id": "t"})
		call.Task, call.Progress = true, true
		done := make(chan broker.Outcome, 1)
		go func() { done <- h.Broker.Check(context.Background(), call, caller) }()
		a := h.Held()
		hold := <-caller.held
		if hold.ApprovalID != a.ID || hold.Reason != "tests hold slow" || hold.Left != 10*time.Minute {
			t.Errorf("Held got %+v, want approval %s", hold, a.ID)
		}
		time.Sleep(5 * time.Minute) // far past HoldWait
		synctest.Wait()
		select {
		case o := <-done:
			t.Fatalf("a task's call was answered before a decision: %+v", o)
		default:
		}
		h.Vote(a.ID, "alice", broker.Deny, "no")
		if o := <-done; o.Forward || !strings.Contains(o.Refusal, "denied by alice") {
			t.Fatalf("outcome %+v", o)
		}
		if got := h.Caller.Waited(); len(got) != 0 {
			t.Errorf("a task's caller got heartbeats: %q", got)
		}
	})
}
