package slack_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
	"github.com/airlock-mcp/airlock/policy"
)

// A held call is posted with the right blocks, an approver's click
// releases it, and the message shows who approved.
func TestApproveInSlack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x", "secret": "hunter2", "note": "<!channel>"})
		a := h.Held()
		synctest.Wait()
		m := h.message()
		golden(t, "e2e-request", m, a.ID)
		checkInert(t, m)

		if code := h.post(h.slack.Click(alice, m, "airlock_approve")); code != http.StatusOK {
			t.Fatalf("click answered %d", code)
		}
		r := <-done
		if !released(r) {
			t.Fatalf("the call returned %+v", r)
		}
		synctest.Wait()
		if got := h.approval(a.ID); got.Status != broker.StatusApproved || got.DecidedBy != "alice" || got.Votes[0].Channel != "slack" {
			t.Errorf("approval = %+v", got)
		}
		m = h.message()
		golden(t, "e2e-approved", m, a.ID)
		if m.Updates == 0 || strings.Contains(string(m.Blocks), "airlock_approve") {
			t.Error("the message still has its buttons")
		}
		if e := h.slack.Ephemerals(); len(e) != 0 {
			t.Errorf("the approver was told %v", e)
		}
	})
}

// Deny asks for a reason in a dialog; the agent reads it, and so does the
// channel.
func TestDenyInSlack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		if code := h.post(h.slack.Click(bob, h.message(), "airlock_deny")); code != http.StatusOK {
			t.Fatalf("click answered %d", code)
		}
		synctest.Wait()
		views := h.slack.Views()
		if len(views) != 1 || views[0].User != bob {
			t.Fatalf("views opened: %+v", views)
		}
		if got := h.approval(a.ID); got.Status != broker.StatusPending {
			t.Fatalf("clicking Deny decided before the reason: %s", got.Status)
		}
		if code := h.post(h.slack.Submit(bob, views[0], map[string]string{"reason": "not on a Friday"})); code != http.StatusOK {
			t.Fatalf("submission answered %d", code)
		}
		r := <-done
		if r.Forward || !strings.Contains(r.Refusal, "denied by slack:U0BOB: not on a Friday") {
			t.Fatalf("the call returned %+v", r)
		}
		synctest.Wait()
		text := h.message().AllText()
		if !strings.Contains(text, "*Denied* by <@U0BOB>") || !strings.Contains(text, "Reason: not on a Friday") {
			t.Errorf("message after the denial:\n%s", text)
		}
	})
}

// A dialog can only be opened within three seconds of the click; when
// Slack is too slow for that, the person is told to click again and
// nothing is decided.
func TestDenyDialogTooLate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		h.slack.Fail("users.info", slacktest.Fault{Status: http.StatusTooManyRequests, RetryAfter: 5})
		h.post(h.slack.Click(bob, h.message(), "airlock_deny"))
		time.Sleep(6 * time.Second) // Airlock waits as Slack asked
		synctest.Wait()
		if v := h.slack.Views(); len(v) != 0 {
			t.Errorf("a dialog opened after its trigger expired: %+v", v)
		}
		if e := h.ephemerals(bob); len(e) != 1 || !strings.Contains(e[0], "Click again") {
			t.Errorf("bob was told %q", e)
		}
		if got := h.approval(a.ID); got.Status != broker.StatusPending {
			t.Errorf("status %s", got.Status)
		}
		h.decide(a.ID, "carol", broker.Deny)
		<-done
	})
}

func (h *harness) decide(id, who string, v broker.Verdict) *broker.Approval {
	h.t.Helper()
	a, err := h.Broker.Vote(context.Background(), id, broker.Vote{Approver: who, Channel: "web", Verdict: v, Reason: "decided in the web UI"})
	if err != nil {
		h.t.Fatal(err)
	}
	return a
}

// Every outcome shows in the message, whoever or whatever decided it.
func TestOutcomesUpdateTheMessage(t *testing.T) {
	tests := map[string]struct {
		act  func(h *harness, a *broker.Approval, cancel context.CancelFunc)
		want string
	}{
		"decided in the web UI": {
			func(h *harness, a *broker.Approval, _ context.CancelFunc) { h.decide(a.ID, "carol", broker.Approve) },
			":white_check_mark: *Approved* by carol in the web UI",
		},
		"denied with the CLI": {
			func(h *harness, a *broker.Approval, _ context.CancelFunc) {
				h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "cli", Verdict: broker.Deny, Reason: "use staging"})
			},
			":no_entry: *Denied* by <@U0ALICE> (alice) with the CLI",
		},
		"expired": {
			func(*harness, *broker.Approval, context.CancelFunc) { time.Sleep(11 * time.Minute) },
			":hourglass: *Expired*: nobody decided within 10m.",
		},
		"withdrawn": {
			func(_ *harness, _ *broker.Approval, cancel context.CancelFunc) { cancel() },
			":leftwards_arrow_with_hook: *Withdrawn* before anyone decided",
		},
		"abandoned": {
			func(h *harness, _ *broker.Approval, _ context.CancelFunc) { h.Broker.Close() },
			":black_square_for_stop: *Abandoned*",
		},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOptions{})
				ctx, cancel := context.WithCancel(context.Background())
				defer cancel()
				done := h.Call(ctx, "write", map[string]any{"path": "/srv/x"})
				a := h.Held()
				synctest.Wait()
				tc.act(h, a, cancel)
				<-done
				synctest.Wait()
				m := h.message()
				if text := m.Mrkdwn(); !strings.Contains(text, tc.want) {
					t.Errorf("message after the outcome:\n%s\nwant it to contain %q", text, tc.want)
				}
				if strings.Contains(string(m.Blocks), "airlock_approve") {
					t.Error("the message still has its buttons")
				}
			})
		})
	}
}

// With a quorum of two, the first approval shows as one of two and keeps
// the buttons; the second releases the call.
func TestQuorumInSlack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{policy: holdWrite(2)})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		h.post(h.slack.Click(alice, h.message(), "airlock_approve"))
		synctest.Wait()
		m := h.message()
		if !strings.Contains(m.Mrkdwn(), "Approved so far by <@U0ALICE> (alice): *1 of 2*") || !strings.Contains(string(m.Blocks), "airlock_approve") {
			t.Errorf("after one approval:\n%s", m.Mrkdwn())
		}
		// Alice again: her vote counts once.
		h.post(h.slack.Click(alice, m, "airlock_approve"))
		synctest.Wait()
		if e := h.ephemerals(alice); len(e) != 1 || !strings.Contains(e[0], "already approved") {
			t.Errorf("alice was told %q", e)
		}
		h.post(h.slack.Click(bob, m, "airlock_approve"))
		if r := <-done; !released(r) {
			t.Fatalf("the call returned %+v", r)
		}
		synctest.Wait()
		if text := h.message().Mrkdwn(); !strings.Contains(text, "*Approved* by <@U0ALICE> (alice), <@U0BOB>") || !strings.Contains(text, "(2 of 2)") {
			t.Errorf("after the second approval:\n%s", text)
		}
		if got := h.approval(a.ID); strings.Join([]string{got.Votes[0].Approver, got.Votes[1].Approver}, ",") != "alice,slack:U0BOB" {
			t.Errorf("votes = %+v", got.Votes)
		}
	})
}

// A click after the approval was decided elsewhere is told who decided.
func TestClickAfterDecision(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		m := h.message()
		h.decide(a.ID, "alice", broker.Approve)
		<-done
		h.post(h.slack.Click(bob, m, "airlock_approve"))
		synctest.Wait()
		if e := h.ephemerals(bob); len(e) != 1 || e[0] != "Too late: this call was already approved by <@U0ALICE> (alice)." {
			t.Errorf("bob was told %q", e)
		}
	})
}

// "Always allow…" opens a dialog with the scopes and durations the policy
// allows; submitting it approves the call and makes the grant, and the
// next identical call passes without a message.
func TestAlwaysAllowInSlack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		grantable := func(in *policy.Input) policy.Decision {
			if in.Tool.Name != "write" {
				return policy.Decision{Action: policy.Allow}
			}
			if len(in.Grants) > 0 {
				return policy.Decision{Action: policy.Allow, Grant: in.Grants[0].ID}
			}
			return policy.Decision{Action: policy.Hold, Reason: "write may change data", Approvers: policy.Approvers{SlackGroups: []string{approvers}},
				Grantable: &policy.Grantable{Scopes: []string{policy.ScopeExact, policy.ScopeTool}, MaxTTL: policy.Duration(8 * time.Hour)}}
		}
		h := newHarness(t, harnessOptions{policy: brokertest.PolicyFunc(grantable)})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		if !strings.Contains(string(h.message().Blocks), "Always allow") {
			t.Fatal("the message offers no \"Always allow\"")
		}
		h.post(h.slack.Click(bob, h.message(), "airlock_grant"))
		synctest.Wait()
		views := h.slack.Views()
		if len(views) != 1 {
			t.Fatalf("views opened: %+v", views)
		}
		dialog := string(views[0].View)
		for _, want := range []string{"Exactly this call", "Every call of this tool", "8 hours", "1 hour", "for tester (OS user) only."} {
			if !strings.Contains(dialog, want) {
				t.Errorf("the dialog lacks %q", want)
			}
		}
		if strings.Contains(dialog, "1 day") {
			t.Error("the dialog offers more than the policy's max_ttl")
		}
		h.post(h.slack.Submit(bob, views[0], map[string]string{"scope": "exact"}))
		if r := <-done; !released(r) {
			t.Fatalf("the call returned %+v", r)
		}
		got := h.approval(a.ID)
		g, err := h.Broker.Grant(context.Background(), got.GrantID)
		if err != nil || g.Scope != "exact" || g.CreatedBy != "slack:U0BOB" || g.ExpiresAt.Sub(g.CreatedAt) != time.Hour {
			t.Fatalf("grant %+v, %v", g, err)
		}
		posted := len(h.slack.Messages())
		if r := <-h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"}); !released(r) {
			t.Fatalf("the identical call after the grant: %+v", r)
		}
		if len(h.slack.Messages()) != posted {
			t.Error("the granted call was posted for approval")
		}
	})
}
