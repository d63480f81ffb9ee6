package broker_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"

	"github.com/airlock-mcp/airlock/broker"
)

func TestHeldCallLimits(t *testing.T) {
	tests := map[string]struct {
		limits broker.Limits
		held   []map[string]any // calls that are held
		over   map[string]any   // the call refused
		key    string
		notKey string
	}{
		"in all": {
			limits: broker.Limits{Held: 2},
			held:   []map[string]any{{"path": "/a"}, {"path": "/b"}},
			over:   map[string]any{"path": "/c"},
			key:    "limits.held_calls ",
		},
		"per principal": {
			limits: broker.Limits{HeldPerPrincipal: 1},
			held:   []map[string]any{{"path": "/a"}},
			over:   map[string]any{"path": "/b"},
			key:    "limits.held_calls_per_principal",
		},
		"bytes": {
			limits: broker.Limits{HeldBytes: 64},
			held:   []map[string]any{{"path": "/a"}},
			over:   map[string]any{"path": "/" + strings.Repeat("b", 45)}, // 57 bytes: over only with the first
			key:    "limits.held_bytes",
			notKey: "alone",
		},
		"bytes of one call": {
			limits: broker.Limits{HeldBytes: 64},
			over:   map[string]any{"path": "/" + strings.Repeat("b", 64)},
			key:    "this call's 76 bytes pass alone (limits.held_bytes",
		},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHoldHarness(t, broker.Options{Limits: tt.limits, HoldWait: -1})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				var held []*broker.Approval
				for _, args := range tt.held {
					h.Call(ctx, "write", args)
					held = append(held, h.Held())
				}
				o := <-h.Call(ctx, "write", tt.over)
				if o.Forward || !strings.Contains(o.Refusal+" ", tt.key) || !strings.Contains(o.Refusal, "was not run") {
					t.Fatalf("call over the limit: %+v, want a tool error naming %s", o, tt.key)
				}
				if tt.notKey != "" && strings.Contains(o.Refusal, tt.notKey) {
					t.Errorf("call over the limit: %q, should not say %q", o.Refusal, tt.notKey)
				}
				pending, _ := h.Store.Approvals(context.Background(), broker.ApprovalQuery{Status: []broker.Status{broker.StatusPending}})
				if len(pending) != len(tt.held) {
					t.Errorf("%d approvals pending, want %d", len(pending), len(tt.held))
				}
				recs, _ := h.Store.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventRefused)})
				if len(recs) != 1 || !strings.Contains(recs[0].Reason+" ", tt.key) || recs[0].Actor != broker.Airlock || recs[0].Ref == "" {
					t.Errorf("refusal audit = %+v", recs)
				}
				if len(held) == 0 {
					return
				}
				// A decision gives the place back: another call is held.
				h.Vote(held[0].ID, "alice", broker.Deny, "no")
				h.Call(ctx, "write", map[string]any{"path": "/z"})
				if a := h.Held(); a.Status != broker.StatusPending {
					t.Errorf("after a decision: %+v", a)
				}
			})
		})
	}
}

// A decided call's approval, arguments and all, is not kept in memory for
// the life of the broker.
func TestDecidedHoldsAreLetGo(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{HoldWait: -1})
		for i, v := range []broker.Verdict{broker.Deny, broker.Approve} {
			done := h.Call(context.Background(), "write", map[string]any{"path": "/" + strings.Repeat("x", i+1)})
			h.Vote(h.Held().ID, "alice", v, "either way")
			<-done
		}
		if n := h.Broker.TrackedHolds(); n != 0 {
			t.Errorf("%d decided approvals kept in memory", n)
		}
	})
}
