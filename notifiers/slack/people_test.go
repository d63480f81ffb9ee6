package slack_test

import (
	"context"
	"testing"
	"testing/synctest"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
)

// A person may have more than one Slack account: each votes as the
// person, so the requester's second account cannot approve the call of
// the requester's agent. Without the mapping, that account is an unmapped
// Slack user, someone else, and its approval counts.
func TestSlackAccountsArePeople(t *testing.T) {
	const alice2 = "W0ALICE2" // alice's account in another workspace of the grid
	for name, mapped := range map[string]bool{"mapped": true, "unmapped": false} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				o := harnessOptions{}
				if mapped {
					o.config = func(c *slack.Config) { c.Identities["alice"] = []string{alice, alice2} }
					o.people = broker.People{broker.PersonKey("token", "alice-laptop"): "alice"}
				}
				h := newHarness(t, o)
				h.slack.AddUser(slacktest.User{ID: alice2, Name: "alice2"})
				h.slack.AddGroup(approvers, alice, bob, tester, alice2)
				h.Principal = broker.Principal{Source: "token", ID: "alice-laptop"}
				done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
				a := h.Held()
				synctest.Wait()
				h.post(h.slack.Click(alice2, h.message(), "airlock_approve"))
				synctest.Wait()
				got := h.approval(a.ID)
				if !mapped {
					if got.Status != broker.StatusApproved || got.DecidedBy != "slack:"+alice2 {
						t.Fatalf("unmapped: %s by %q", got.Status, got.DecidedBy)
					}
					<-done
					return
				}
				if e := h.ephemerals(alice2); len(e) != 1 || e[0] != "You requested this call, so you cannot approve it. (ref "+a.ID+")" {
					t.Errorf("alice's second account was told %q", e)
				}
				if got.Status != broker.StatusPending || len(got.Votes) != 0 {
					t.Fatalf("alice approved her own agent's call: %s, votes %+v", got.Status, got.Votes)
				}
				h.decide(a.ID, "carol", broker.Deny)
				<-done
			})
		})
	}
}
