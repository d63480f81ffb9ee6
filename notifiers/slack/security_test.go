package slack_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
	"github.com/airlock-mcp/airlock/policy"
)

// Only the approvers a decision names may decide; everyone else is told
// so, privately, and nothing is decided.
func TestClicksRefused(t *testing.T) {
	tests := map[string]struct {
		user, action string
		told         string
		fault        string // users.info fails with this
	}{
		"not an approver":            {mallory, "airlock_approve", "You are not an approver for this call.", ""},
		"not an approver (deny)":     {mallory, "airlock_deny", "You are not an approver for this call.", ""},
		"the requester":              {tester, "airlock_approve", "You requested this call, so you cannot approve it.", ""},
		"a bot":                      {robot, "airlock_approve", "You are not an approver for this call.", ""},
		"a guest":                    {guest, "airlock_approve", "You are not an approver for this call.", ""},
		"a deactivated user":         {gone, "airlock_approve", "You are not an approver for this call.", ""},
		"Slack cannot say who it is": {alice, "airlock_approve", "Airlock could not take your decision; nothing was decided.", "user_not_found"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOptions{})
				done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
				a := h.Held()
				synctest.Wait()
				if tc.fault != "" {
					h.slack.Fail("users.info", slacktest.Fault{Error: tc.fault})
				}
				if code := h.post(h.slack.Click(tc.user, h.message(), tc.action)); code != http.StatusOK {
					t.Fatalf("click answered %d", code)
				}
				synctest.Wait()
				if got := h.approval(a.ID); got.Status != broker.StatusPending || len(got.Votes) != 0 {
					t.Errorf("after the click: %s with %d votes", got.Status, len(got.Votes))
				}
				if v := h.slack.Views(); len(v) != 0 {
					t.Errorf("a dialog opened for someone who may not decide")
				}
				if e := h.ephemerals(tc.user); len(e) != 1 || !strings.HasPrefix(e[0], tc.told) {
					t.Errorf("%s was told %q, want %q", tc.user, e, tc.told)
				}
				if h.Forwarded() != 0 {
					t.Error("the call reached the upstream")
				}
				h.decide(a.ID, "carol", broker.Deny)
				<-done
			})
		})
	}
}

// The requester may not approve even when the policy names them, and
// the broker's own check holds when the mapping makes them the same
// identity.
func TestRequesterNamedAsApprover(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		named := brokertestPolicy(policy.Approvers{SlackUsers: []string{tester, alice}})
		h := newHarness(t, harnessOptions{policy: named})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		h.post(h.slack.Click(tester, h.message(), "airlock_approve"))
		synctest.Wait()
		if got := h.approval(a.ID); len(got.Votes) != 0 {
			t.Fatalf("the requester voted: %+v", got.Votes)
		}
		// Denying their own call is allowed: it only stops it.
		h.post(h.slack.Click(tester, h.message(), "airlock_deny"))
		synctest.Wait()
		if v := h.slack.Views(); len(v) != 1 {
			t.Fatalf("the requester could not deny: %d dialogs", len(v))
		}
		h.post(h.slack.Submit(tester, h.slack.Views()[0], map[string]string{"reason": "changed my mind"}))
		if r := <-done; r.Forward || !strings.Contains(r.Refusal, "denied by tester: changed my mind") {
			t.Errorf("the call returned %+v", r)
		}
	})
}

// Without approvers in the decision or the config, anyone in the channel
// may decide, still not guests, bots or the requester; with configured
// defaults, only those.
func TestDefaultApprovers(t *testing.T) {
	for name, tc := range map[string]struct {
		defaults         slack.Approvers
		allowed, refused string
	}{
		"anyone":           {slack.Approvers{}, mallory, guest},
		"configured":       {slack.Approvers{Users: []string{bob}}, bob, mallory},
		"configured group": {slack.Approvers{Groups: []string{approvers}}, alice, mallory},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHarness(t, harnessOptions{
					policy: brokertestPolicy(policy.Approvers{}),
					config: func(c *slack.Config) { c.Approvers = tc.defaults },
				})
				done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
				a := h.Held()
				synctest.Wait()
				h.post(h.slack.Click(tc.refused, h.message(), "airlock_approve"))
				synctest.Wait()
				if got := h.approval(a.ID); got.Status != broker.StatusPending {
					t.Fatalf("%s decided it", tc.refused)
				}
				h.post(h.slack.Click(tc.allowed, h.message(), "airlock_approve"))
				if r := <-done; !released(r) {
					t.Errorf("%s's approval: %+v", tc.allowed, r)
				}
			})
		})
	}
}

func brokertestPolicy(ap policy.Approvers) brokertest.PolicyFunc {
	return func(in *policy.Input) policy.Decision {
		if in.Tool.Name != "write" {
			return policy.Decision{Action: policy.Allow}
		}
		return policy.Decision{Action: policy.Hold, Reason: "held", Approvers: ap}
	}
}

func withHeader(r *http.Request, k, v string) *http.Request {
	r.Header.Set(k, v)
	return r
}

func httpBody(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

// A forged, stale, replayed or unsigned request is refused before
// anything in it is read, and nothing is decided.
func TestInteractivityRefusesUnsigned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, harnessOptions{policy: holdWrite(2)})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
		a := h.Held()
		synctest.Wait()
		click := h.slack.Click(alice, h.message(), "airlock_approve")
		send := func(r *http.Request) int {
			rec := httptest.NewRecorder()
			h.http.ServeHTTP(rec, r)
			return rec.Code
		}
		now := time.Now()
		refused := map[string]*http.Request{
			"wrong secret":      slacktest.InteractionRequest("/", "0123456789abcdef0123456789abcdee", now, click),
			"stale":             slacktest.InteractionRequest("/", slacktest.SigningSecret, now.Add(-6*time.Minute), click),
			"from the future":   slacktest.InteractionRequest("/", slacktest.SigningSecret, now.Add(6*time.Minute), click),
			"far future":        withHeader(slacktest.InteractionRequest("/", slacktest.SigningSecret, now, click), "X-Slack-Request-Timestamp", "99999999999999999"),
			"unsigned":          withHeader(slacktest.InteractionRequest("/", slacktest.SigningSecret, now, click), "X-Slack-Signature", ""),
			"signature garbage": withHeader(slacktest.InteractionRequest("/", slacktest.SigningSecret, now, click), "X-Slack-Signature", "v0=zz"),
			"old scheme":        withHeader(slacktest.InteractionRequest("/", slacktest.SigningSecret, now, click), "X-Slack-Signature", "v1=00"),
			"body changed": func() *http.Request {
				r := slacktest.InteractionRequest("/", slacktest.SigningSecret, now, click)
				other := slacktest.InteractionBody(h.slack.Click(bob, h.message(), "airlock_approve"))
				r.Body = httpBody(other)
				return r
			}(),
		}
		for name, r := range refused {
			if code := send(r); code != http.StatusUnauthorized {
				t.Errorf("%s: %d, want 401", name, code)
			}
		}
		// The genuine request counts once; its replay is refused.
		if code := send(slacktest.InteractionRequest("/", slacktest.SigningSecret, now, click)); code != http.StatusOK {
			t.Fatalf("genuine request: %d", code)
		}
		synctest.Wait()
		if code := send(slacktest.InteractionRequest("/", slacktest.SigningSecret, now, click)); code != http.StatusUnauthorized {
			t.Errorf("replay: %d, want 401", code)
		}
		r := slacktest.InteractionRequest("/", slacktest.SigningSecret, now, click)
		r.Header.Set("X-Slack-Signature", "v0="+strings.ToUpper(strings.TrimPrefix(r.Header.Get("X-Slack-Signature"), "v0=")))
		if code := send(r); code != http.StatusUnauthorized {
			t.Errorf("replay with the signature in upper case: %d, want 401", code)
		}
		synctest.Wait()
		got := h.approval(a.ID)
		if got.Status != broker.StatusPending || len(got.Votes) != 1 {
			t.Errorf("after forgeries and a replay: %s with %d votes", got.Status, len(got.Votes))
		}
		if e := h.slack.Ephemerals(); len(e) != 0 {
			t.Errorf("someone was told %v", e)
		}
		h.decide(a.ID, "carol", broker.Deny)
		<-done
	})
}

// Without a signing secret, the endpoint believes nobody.
func TestInteractivityWithoutSecret(t *testing.T) {
	s := newSlack(t)
	cfg := config(s)
	cfg.SigningSecret = ""
	n := newNotifier(t, cfg)
	rec := httptest.NewRecorder()
	n.InteractivityHandler(nil).ServeHTTP(rec, slacktest.InteractionRequest("/", "", time.Now(), []byte(`{}`)))
	if rec.Code != http.StatusUnauthorized {
		t.Errorf("%d, want 401", rec.Code)
	}
}

func TestInteractivityBadRequests(t *testing.T) {
	s := newSlack(t)
	n := newNotifier(t, config(s))
	hd := n.InteractivityHandler(nil)
	tests := map[string]struct {
		r    *http.Request
		code int
	}{
		"GET": {httptest.NewRequest(http.MethodGet, "/", nil), http.StatusMethodNotAllowed},
		"no payload": {func() *http.Request {
			body := []byte("nothing=here")
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(string(body)))
			r.Header = slacktest.Sign(slacktest.SigningSecret, time.Now(), body)
			return r
		}(), http.StatusBadRequest},
		"unreadable payload": {slacktest.InteractionRequest("/", slacktest.SigningSecret, time.Now(), []byte(`{"type":`)), http.StatusBadRequest},
		"too large":          {slacktest.InteractionRequest("/", slacktest.SigningSecret, time.Now(), []byte(strings.Repeat("x", 2<<20))), http.StatusRequestEntityTooLarge},
		"not ours":           {slacktest.InteractionRequest("/", slacktest.SigningSecret, time.Now(), []byte(`{"type":"shortcut","user":{"id":"U0ALICE"}}`)), http.StatusOK},
	}
	for name, tc := range tests {
		rec := httptest.NewRecorder()
		hd.ServeHTTP(rec, tc.r)
		if rec.Code != tc.code {
			t.Errorf("%s: %d, want %d", name, rec.Code, tc.code)
		}
	}
}
