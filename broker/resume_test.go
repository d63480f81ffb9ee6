package broker_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
)

// A wrap's client is told "pending"; the broker that owned the state
// stops; the wrap takes the state over, and the client's retry joins the
// approval it opened instead of asking people again.
func TestRetryAfterTakeoverJoinsTheStoredApproval(t *testing.T) {
	store := brokertest.NewMemStore()
	owner := brokertest.NewHarness(t, broker.Options{Store: store, Replica: "owner", HoldWait: 50 * time.Millisecond})
	call := owner.NewCall("write", map[string]any{"path": "/x"})
	call.Holder = "wrap-b" // an attached wrap's call
	first := brokertest.Wait(t, owner.Check(context.Background(), call), "the pending answer")
	if !strings.Contains(first.Refusal, "Approval pending") {
		t.Fatalf("first attempt: %+v, want told to call again", first)
	}
	a := owner.Held()
	owner.Broker.Close()

	next := brokertest.NewHarness(t, broker.Options{Store: store, Replica: "wrap-b"})
	retry := next.NewCall("write", map[string]any{"path": "/x"}) // now its own broker's
	out := next.Check(context.Background(), retry)
	brokertest.WaitFor(t, "the retry to wait", func() bool { return next.Broker.Usage().Held == 1 })
	if got, _ := store.Approvals(context.Background(), broker.ApprovalQuery{Status: []broker.Status{broker.StatusPending}}); len(got) != 1 || got[0].ID != a.ID {
		t.Fatalf("pending after the retry: %d, want only %s", len(got), a.ID)
	}
	next.Vote(a.ID, "alice", broker.Approve, "")
	if o := brokertest.Wait(t, out, "the retry's outcome"); !o.Forward {
		t.Fatalf("retry: %+v, want forwarded", o)
	}
}

// Another caller's stored approval is not joined: only the holder's own.
func TestStoredApprovalOfAnotherHolderNotJoined(t *testing.T) {
	store := brokertest.NewMemStore()
	owner := brokertest.NewHarness(t, broker.Options{Store: store, Replica: "owner", HoldWait: 50 * time.Millisecond})
	call := owner.NewCall("write", map[string]any{"path": "/x"})
	call.Holder = "wrap-c"
	brokertest.Wait(t, owner.Check(context.Background(), call), "the pending answer")
	stored := owner.Held()
	owner.Broker.Close()
	// wrap-c lives on, attached to the next owner: its approval stays.
	if _, err := store.Lease(context.Background(), "wrap-c", time.Hour); err != nil {
		t.Fatal(err)
	}

	next := brokertest.NewHarness(t, broker.Options{Store: store, Replica: "wrap-b"})
	if got, _ := store.Approval(context.Background(), stored.ID); got.Status != broker.StatusPending {
		t.Fatalf("wrap-c's approval: %s, want pending", got.Status)
	}
	go next.Check(context.Background(), next.NewCall("write", map[string]any{"path": "/x"}))
	if a := next.Held(); a.Holder != "wrap-b" {
		t.Fatalf("the retry opened %+v, want its own approval", a.Holder)
	}
}
