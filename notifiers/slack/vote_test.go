package slack_test

import (
	"context"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
)

// grantableWrite holds "write" for the approvers group with quorum q,
// offering exact and tool grants, and honours them.
func grantableWrite(q int) brokertest.PolicyFunc {
	return func(in *policy.Input) policy.Decision {
		if in.Tool.Name != "write" {
			return policy.Decision{Action: policy.Allow}
		}
		if len(in.Grants) > 0 {
			return policy.Decision{Action: policy.Allow, Grant: in.Grants[0].ID}
		}
		return policy.Decision{Action: policy.Hold, Reason: "write may change data", Quorum: q, Approvers: policy.Approvers{SlackGroups: []string{approvers}},
			Grantable: &policy.Grantable{Scopes: []string{policy.ScopeExact, policy.ScopeTool}, MaxTTL: policy.Duration(8 * time.Hour)}}
	}
}

// Refusals only the broker's rules find (the Slack plugin checked the
// person and found them allowed) reach the person who clicked as a
// specific message, and nothing is decided.
func TestVoteRefusedInSlack(t *testing.T) {
	tests := map[string]struct {
		policy brokertest.PolicyFunc
		before func(h *harness, a *broker.Approval) // what happened elsewhere first
		user   string
		action string
		told   string
		votes  int // on the approval afterwards
	}{
		"expired, not yet marked so": {
			before: func(h *harness, a *broker.Approval) {
				h.edit(a.ID, func(a *broker.Approval) { a.ExpiresAt = time.Now().Add(-time.Second) })
			},
			user: alice, action: "airlock_approve",
			told: "Too late: the time for a decision on this call ran out; it will not run.",
		},
		"expired, before the deny dialog": {
			before: func(h *harness, a *broker.Approval) {
				h.edit(a.ID, func(a *broker.Approval) { a.ExpiresAt = time.Now().Add(-time.Second) })
			},
			user: alice, action: "airlock_deny",
			told: "Too late: the time for a decision on this call ran out; it will not run.",
		},
		"always allow before the quorum": {
			policy: grantableWrite(2), user: bob, action: "airlock_grant",
			told: "Nothing was decided: an \"always allow\" must come with the approval that completes the quorum (ref ",
		},
		"the same person, on the web and then in Slack": {
			policy: holdWrite(2),
			before: func(h *harness, a *broker.Approval) { h.decide(a.ID, "alice", broker.Approve) },
			user:   alice, action: "airlock_approve",
			told:  "You have already approved this call; it needs 2 different approvers.",
			votes: 1,
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := harnessOptions{}
				if tc.policy != nil {
					o.policy = tc.policy
				}
				h := newHarness(t, o)
				done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
				a := h.Held()
				synctest.Wait()
				if tc.before != nil {
					tc.before(h, a)
				}
				h.post(h.slack.Click(tc.user, h.message(), tc.action))
				synctest.Wait()
				if e := h.ephemerals(tc.user); len(e) != 1 || !strings.HasPrefix(e[0], tc.told) {
					t.Errorf("told %q, want %q", e, tc.told)
				}
				if v := h.slack.Views(); len(v) != 0 {
					t.Error("a dialog opened for a vote that cannot count")
				}
				if got := h.approval(a.ID); got.Status != broker.StatusPending || len(got.Votes) != tc.votes || got.Approvals() > 1 {
					t.Errorf("afterwards: %s with %d votes, %d approvals", got.Status, len(got.Votes), got.Approvals())
				}
				if h.Forwarded() != 0 {
					t.Error("the call reached the upstream")
				}
				if got := h.approval(a.ID); got.ExpiresAt.After(time.Now()) {
					h.decide(a.ID, "carol", broker.Deny)
				} // else its timer ends it, in the bubble's time
				<-done
			})
		})
	}
}

// "Always allow" submitted, the call approved and released, but the grant
// could not be stored: the approver is told exactly that, not that nothing
// was decided.
func TestGrantNotStoredInSlack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{policy: grantableWrite(1), store: func(s broker.Store) broker.Store { return brokertest.FailGrants(s) }})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		h.post(h.slack.Click(bob, h.message(), "airlock_grant"))
		synctest.Wait()
		views := h.slack.Views()
		if len(views) != 1 {
			t.Fatalf("views opened: %+v", views)
		}
		h.post(h.slack.Submit(bob, views[0], map[string]string{"scope": "exact"}))
		if r := <-done; !released(r) {
			t.Fatalf("the approved call returned %+v", r)
		}
		synctest.Wait()
		const want = "You approved the call and it goes ahead, but the \"always allow\" could not be stored, so calls like it will still ask (ref "
		if e := h.ephemerals(bob); len(e) != 1 || !strings.HasPrefix(e[0], want) {
			t.Errorf("bob was told %q, want %q", e, want)
		}
		if got := h.approval(a.ID); got.Status != broker.StatusApproved {
			t.Errorf("approval %s", got.Status)
		}
		if gs, _ := h.Broker.Grants(context.Background(), broker.GrantQuery{}); len(gs) != 0 {
			t.Errorf("grants: %+v", gs)
		}
	})
}
