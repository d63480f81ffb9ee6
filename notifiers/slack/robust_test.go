package slack_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
)

// Slack's Retry-After is waited out, and server errors are retried with
// growing pauses.
func TestRetries(t *testing.T) {
	tests := map[string]struct {
		faults []slacktest.Fault
		gaps   []time.Duration // between attempts
	}{
		"rate limited":  {[]slacktest.Fault{{Status: http.StatusTooManyRequests, RetryAfter: 3}}, []time.Duration{3 * time.Second}},
		"server errors": {[]slacktest.Fault{{Status: 503}, {Status: 500}, {Error: "internal_error"}}, []time.Duration{500 * time.Millisecond, time.Second, 2 * time.Second}},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := newSlack(t)
				n := newNotifier(t, config(s))
				s.Fail("chat.postMessage", tc.faults...)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				if _, err := n.Notify(ctx, fixture()); err != nil {
					t.Fatal(err)
				}
				calls := s.Calls("chat.postMessage")
				if len(calls) != len(tc.gaps)+1 || len(s.Messages()) != 1 {
					t.Fatalf("%d attempts, %d messages", len(calls), len(s.Messages()))
				}
				for i, want := range tc.gaps {
					if got := calls[i+1].At.Sub(calls[i].At); got != want {
						t.Errorf("attempt %d came %s after the one before, want %s", i+2, got, want)
					}
				}
			})
		})
	}
}

// Errors that another attempt cannot fix are not retried.
func TestNoRetryOfPermanentErrors(t *testing.T) {
	s := newSlack(t)
	n := newNotifier(t, config(s))
	s.Fail("chat.postMessage", slacktest.Fault{Error: "invalid_blocks"})
	if _, err := n.Notify(context.Background(), fixture()); err == nil || !strings.Contains(err.Error(), "invalid_blocks") {
		t.Errorf("err = %v", err)
	}
	if c := len(s.Calls("chat.postMessage")); c != 1 {
		t.Errorf("%d attempts", c)
	}
}

// With Slack down, the other channels hear of the call at once, the call
// keeps waiting (nothing is approved by a failure), and a decision made
// elsewhere still releases it.
func TestSlackDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		other := brokertest.NewNotifier()
		var logs bytes.Buffer
		h := newHarness(t, harnessOptions{
			notifiers: []broker.Notifier{other},
			config: func(c *slack.Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
			},
		})
		down := make([]slacktest.Fault, 20)
		for i := range down {
			down[i] = slacktest.Fault{Status: http.StatusBadGateway}
		}
		h.slack.Fail("chat.postMessage", down...)
		start := time.Now()
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		if got, at := other.Notified(), other.NotifiedAt(); len(got) != 1 || !at[0].Equal(start) {
			t.Errorf("the other channel heard %d approvals at %v", len(got), at)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := h.approval(a.ID); got.Status != broker.StatusPending {
			t.Fatalf("Slack being down changed the approval: %s", got.Status)
		}
		if len(h.slack.Messages()) != 0 || len(h.slack.Calls("chat.postMessage")) > 5 {
			t.Errorf("%d posts tried", len(h.slack.Calls("chat.postMessage")))
		}
		h.decide(a.ID, "carol", broker.Approve)
		if r := <-done; !released(r) {
			t.Errorf("the call returned %+v", r)
		}
		for _, secret := range []string{slacktest.BotToken, slacktest.SigningSecret} {
			if strings.Contains(logs.String(), secret) {
				t.Errorf("a secret is in the logs")
			}
		}
		if !strings.Contains(logs.String(), "slack call failed; retrying") {
			t.Errorf("retries were not logged:\n%s", logs.String())
		}
	})
}

// An older state that arrives late never overwrites a newer one.
func TestUpdatesStayInOrder(t *testing.T) {
	s := newSlack(t)
	n := newNotifier(t, config(s))
	ctx := context.Background()
	a := fixture()
	ref, err := n.Notify(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	a.Messages = map[string]json.RawMessage{slack.Name: ref}
	vote := *a
	vote.Decision.Quorum = 2
	vote.Votes = []broker.Vote{{Approver: "alice", Channel: "slack", Verdict: broker.Approve}}
	final := vote
	final.Votes = append(vote.Votes, broker.Vote{Approver: "bob", Channel: "web", Verdict: broker.Approve})
	final.Status, final.DecidedBy = broker.StatusApproved, "bob"
	for _, x := range []*broker.Approval{&final, &vote, a} {
		if err := n.Update(ctx, x); err != nil {
			t.Fatal(err)
		}
	}
	m := s.Messages()[0]
	if m.Updates != 1 || !strings.Contains(m.Mrkdwn(), "*Approved*") {
		t.Errorf("after %d updates the message says:\n%s", m.Updates, m.Mrkdwn())
	}
}

// A user group's members are asked for once a minute at most, however
// often people click.
func TestGroupMembershipCached(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{policy: holdWrite(3)})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		m := h.message()
		h.post(h.slack.Click(alice, m, "airlock_approve"))
		synctest.Wait()
		h.post(h.slack.Click(mallory, m, "airlock_approve"))
		synctest.Wait()
		if c := len(h.slack.Calls("usergroups.users.list")); c != 1 {
			t.Errorf("%d look-ups within the minute", c)
		}
		time.Sleep(61 * time.Second)
		h.slack.AddGroup(approvers, alice, bob, mallory) // mallory joined
		h.post(h.slack.Click(mallory, m, "airlock_approve"))
		synctest.Wait()
		if c := len(h.slack.Calls("usergroups.users.list")); c != 2 {
			t.Errorf("%d look-ups after a minute", c)
		}
		if got := h.approval(a.ID); len(got.Votes) != 2 {
			t.Errorf("votes %+v", got.Votes)
		}
		h.decide(a.ID, "carol", broker.Deny)
		<-done
	})
}
