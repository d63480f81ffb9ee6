package ui_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/ui"
)

// Each refusal of a vote, found by the broker's rules, is a specific
// sentence on the page, with its own status, and nothing is decided.
func TestVoteRefusalsOnThePage(t *testing.T) {
	h := newHarness(t)
	admin := h.signIn("")
	grantable := func(a *broker.Approval) {
		a.Decision.Grantable = &policy.Grantable{Scopes: []string{policy.ScopeExact, policy.ScopeTool}, MaxTTL: policy.Duration(time.Hour)}
	}
	tests := map[string]struct {
		edit   func(*broker.Approval)
		before func(a *broker.Approval) // a vote elsewhere first
		as     string
		form   url.Values
		status int
		told   string
	}{
		"expired, not yet marked so": {edit: func(a *broker.Approval) { a.ExpiresAt = time.Now().Add(-time.Second) },
			form: url.Values{"verdict": {"approve"}}, status: http.StatusConflict, told: "Too late: the time for a decision ran out at "},
		"not named by the policy": {edit: func(a *broker.Approval) { a.Decision.Approvers.Users = []string{"carol"} },
			form: url.Values{"verdict": {"approve"}}, status: http.StatusForbidden, told: "The policy names who may decide this call: carol. You are signed in as admin."},
		"the requester": {as: "agent",
			form: url.Values{"verdict": {"approve"}}, status: http.StatusForbidden, told: "You asked for this call, so someone else must approve it."},
		"the same person, in Slack and then here": {edit: func(a *broker.Approval) { a.Decision.Quorum = 2 },
			before: func(a *broker.Approval) {
				if _, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "admin", Channel: "slack", Verdict: broker.Approve, Authorized: true}); err != nil {
					t.Fatal(err)
				}
			},
			form: url.Values{"verdict": {"approve"}}, status: http.StatusForbidden, told: "You have approved; 1 more approvals from other people are needed."},
		"a scope the policy does not offer": {edit: grantable,
			form:   url.Values{"verdict": {"approve"}, "grant_scope": {"everything"}, "grant_ttl": {"1h"}},
			status: http.StatusForbidden, told: `Nothing was decided: The policy does not allow that scope here: "everything" (allowed: exact, tool).`},
		"a verdict that is none":    {form: url.Values{"verdict": {"maybe"}}, status: http.StatusBadRequest, told: `The verdict must be "approve" or "deny".`},
		"a denial without a reason": {form: url.Values{"verdict": {"deny"}, "reason": {" \n "}}, status: http.StatusBadRequest, told: "Say why you deny the call: the agent reads the reason."},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			a := h.addApproval(tc.edit)
			if tc.before != nil {
				tc.before(a)
			}
			c := admin
			if tc.as != "" {
				c = h.signIn(tc.as)
			}
			before, _ := h.Broker.Approval(context.Background(), a.ID)
			resp, doc := c.post("/approvals/"+a.ID+"/decision", tc.form)
			wantStatus(t, resp, tc.status)
			if got := text(doc.Find("#error")); !strings.HasPrefix(got, tc.told) {
				t.Errorf("told %q, want %q", got, tc.told)
			}
			if after, _ := h.Broker.Approval(context.Background(), a.ID); after.Status != broker.StatusPending || len(after.Votes) != len(before.Votes) {
				t.Errorf("a refused vote changed the approval: %s with %d votes", after.Status, len(after.Votes))
			}
		})
	}

	// The page offers no action the broker would refuse.
	a := h.addApproval(func(a *broker.Approval) { a.ExpiresAt = time.Now().Add(-time.Second) })
	_, doc := admin.get("/approvals/" + a.ID)
	if doc.Find("#actions form").Length() != 0 || !strings.Contains(text(doc.Find("#actions .note")), "the time for a decision ran out") {
		t.Errorf("an expired approval offers %d actions, note %q", doc.Find("#actions form").Length(), text(doc.Find("#actions .note")))
	}
	a = h.addApproval(func(a *broker.Approval) { grantable(a); a.Decision.Quorum = 2 })
	if _, doc := admin.get("/approvals/" + a.ID); doc.Find("form.grant").Length() != 0 || doc.Find("#actions button.approve").Length() != 1 {
		t.Error("Always allow is offered with an approval that does not complete the quorum")
	}
}

// grantNotStored stands for a broker whose store cannot keep grants: an
// approval with a grant counts, and the grant is reported not stored.
type grantNotStored struct{ ui.Broker }

func (b grantNotStored) Vote(ctx context.Context, id string, v broker.Vote) (*broker.Approval, error) {
	g := v.Grant
	v.Grant = nil
	a, err := b.Broker.Vote(ctx, id, v)
	if err != nil || g == nil {
		return a, err
	}
	return a, &broker.VoteError{Code: broker.VoteGrantNotStored, Ref: "REF1", Status: a.Status,
		Msg: "the call was approved, but the grant could not be stored (ref REF1)"}
}

// Approved, but the grant not stored: the page says the call goes ahead
// and the grant was not made.
func TestVoteGrantNotStoredOnThePage(t *testing.T) {
	h := newHarness(t, func(o *ui.Options) { o.Broker = grantNotStored{o.Broker} })
	c := h.signIn("")
	done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/a"})
	a := h.Held()
	resp, doc := c.post("/approvals/"+a.ID+"/decision", url.Values{"verdict": {"approve"}, "grant_scope": {"exact"}, "grant_ttl": {"1h0m0s"}})
	wantStatus(t, resp, http.StatusInternalServerError)
	const want = `You approved the call and it goes ahead, but the "always allow" could not be stored, so calls like it will still ask (ref REF1).`
	if got := text(doc.Find("#error")); got != want {
		t.Errorf("told %q, want %q", got, want)
	}
	if o := outcome(t, done); !released(o) {
		t.Errorf("the call returned %+v, want it released", o)
	}
}
