package broker_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
)

// Two brokers on one store are two replicas sharing a database: each holds
// its own callers' calls, and neither's start or stop abandons the
// other's.
func TestReplicasKeepEachOthersHolds(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := newHoldHarness(t, broker.Options{HoldWait: -1, Replica: "a"})
		done := a.Call(context.Background(), "write", map[string]any{"path": "/x"})
		held := a.Held()
		if held.Holder != "a" {
			t.Fatalf("the approval's holder is %q, want a", held.Holder)
		}

		b := brokertest.NewHarness(t, broker.Options{Store: a.Store, Replica: "b"}) // Start leases and looks for orphans
		b.Broker.Close()
		if got, _ := a.Store.Approval(context.Background(), held.ID); got.Status != broker.StatusPending {
			t.Fatalf("another replica's start and stop left the approval %s (%s)", got.Status, got.Note)
		}
		// The live view of one replica hears of a decision made in another.
		c := brokertest.NewHarness(t, broker.Options{Store: a.Store, Replica: "c"})
		c.Vote(held.ID, "bob", broker.Approve, "")
		if o := <-done; !released(o) {
			t.Fatalf("outcome %+v, want released", o)
		}
		for {
			ev := brokertest.Wait(t, a.Events, "the decision made in replica c")
			if ev.Type == "decided" && ev.Approval.ID == held.ID {
				break
			}
		}
	})
}

// A replica that dies (its lease is never renewed) leaves its approvals
// pending; a live replica abandons them within one lease TTL, audited.
func TestDeadReplicasApprovalsAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := brokertest.NewMemStore()
		ctx := context.Background()
		if _, err := store.Lease(ctx, "dead", 20*time.Second); err != nil {
			t.Fatal(err)
		}
		now := time.Now()
		orphan := &broker.Approval{ID: "01ORPHAN", Status: broker.StatusPending, Server: "test", Tool: "write",
			Holder: "dead", RequestedAt: now, ExpiresAt: now.Add(time.Hour)}
		if err := store.CreateApproval(ctx, orphan, nil); err != nil {
			t.Fatal(err)
		}
		brokertest.NewHarness(t, broker.Options{Store: store, Replica: "live", LeaseTTL: 30 * time.Second})
		if got, _ := store.Approval(ctx, orphan.ID); got.Status != broker.StatusPending {
			t.Fatalf("abandoned while its replica's lease ran: %s", got.Status)
		}
		time.Sleep(30 * time.Second) // the dead lease ran out 10 s ago; a renewal came since
		synctest.Wait()
		got, _ := store.Approval(ctx, orphan.ID)
		if got.Status != broker.StatusAbandoned || got.Note != "the Airlock process holding the call stopped" {
			t.Fatalf("after the lease: %s (%s), want abandoned", got.Status, got.Note)
		}
		recs, _ := store.Audit(ctx, broker.AuditQuery{})
		if len(recs) != 1 || recs[0].Event != broker.EventAbandoned || recs[0].ApprovalID != orphan.ID {
			t.Fatalf("audit = %+v", recs)
		}
	})
}

// A grant made in one replica lets the call through in another at once;
// its revocation there holds the next one again.
func TestGrantsReachEveryReplica(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1}
		a := newHoldHarness(t, opts)
		opts.Store = a.Store
		c := brokertest.NewHarness(t, opts)
		listAll(c)
		synctest.Wait()
		g, err := c.Broker.CreateGrant(context.Background(), broker.GrantSpec{Server: "test", Tool: "write", Scope: broker.ScopeTool,
			TTL: policy.Duration(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if o := <-a.Call(context.Background(), "write", map[string]any{"path": "/x"}); !released(o) {
			t.Fatalf("with the grant made in another replica: %+v, want released", o)
		}
		if _, err := c.Broker.RevokeGrant(context.Background(), g.ID, "test"); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := a.Call(ctx, "write", map[string]any{"path": "/x"})
		if held := a.Held(); held.Tool != "write" {
			t.Fatalf("held %+v", held)
		}
		cancel()
		<-done
	})
}

// An expiry whose write failed is tried again at the next renewal of the
// lease: a call must not wait past its timeout because the database was
// away when it ran out.
func TestOverdueApprovalExpiresLater(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		store := &failingUpdates{MemStore: brokertest.NewMemStore()}
		h := newHoldHarness(t, broker.Options{Store: store, HoldWait: -1, ApprovalTimeout: time.Minute, LeaseTTL: 30 * time.Second})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
		a := h.Held()
		store.fail.Store(true)
		time.Sleep(time.Minute + time.Second) // the timer ran; its write failed
		synctest.Wait()
		if got, _ := store.Approval(context.Background(), a.ID); got.Status != broker.StatusPending {
			t.Fatalf("status %s while writes fail", got.Status)
		}
		store.fail.Store(false)
		var o broker.Outcome
		select {
		case o = <-done:
		case <-time.After(time.Hour): // fake time
			t.Fatal("the overdue approval never expired")
		}
		if released(o) || o.Refusal == "" {
			t.Fatalf("outcome %+v, want the expiry", o)
		}
		if got, _ := store.Approval(context.Background(), a.ID); got.Status != broker.StatusExpired {
			t.Fatalf("status %s, want expired", got.Status)
		}
	})
}

// failingUpdates is a store whose approval updates fail while fail is set,
// as a database that went away would.
type failingUpdates struct {
	*brokertest.MemStore
	fail atomic.Bool
}

func (s *failingUpdates) UpdateApproval(ctx context.Context, id string, fn func(*broker.Approval) (*broker.AuditRecord, error)) (*broker.Approval, error) {
	if s.fail.Load() {
		return nil, errors.New("the database went away")
	}
	return s.MemStore.UpdateApproval(ctx, id, fn)
}
