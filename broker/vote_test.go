package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
)

// voteCore is a broker with nothing but a store, for the rules of voting:
// no MCP, no held caller; approvals are put in the store as the gate
// would.
type voteCore struct {
	t     *testing.T
	store broker.Store
	b     *broker.Broker
}

func newVoteCore(t *testing.T, store broker.Store) *voteCore {
	if store == nil {
		store = brokertest.NewMemStore()
	}
	b, err := broker.New(broker.Options{Policy: brokertest.AllowAll(), Store: store, Logger: brokertest.Logger()})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return &voteCore{t: t, store: store, b: b}
}

var voteSeq atomic.Int64

// pending stores a pending approval of a call by "tester", changed by edit.
func (c *voteCore) pending(edit func(*broker.Approval)) *broker.Approval {
	c.t.Helper()
	now := time.Now()
	a := &broker.Approval{ID: fmt.Sprintf("01VOTE%010d", voteSeq.Add(1)), Status: broker.StatusPending, Server: "test", Tool: "write",
		Arguments: json.RawMessage(`{"path":"/x"}`), ArgumentsDigest: "sha256:x", ToolFingerprint: "sha256:t",
		Principal: broker.Principal{ID: "tester", Source: "os"}, RequestedAt: now, ExpiresAt: now.Add(time.Hour),
		Decision: policy.Decision{Action: policy.Hold, Reason: "held", Quorum: 1,
			Grantable: &policy.Grantable{Scopes: []string{policy.ScopeExact}, MaxTTL: policy.Duration(time.Hour)}}}
	if edit != nil {
		edit(a)
	}
	if err := c.store.CreateApproval(context.Background(), a, &broker.AuditRecord{Time: now, Event: broker.EventHeld, ApprovalID: a.ID}); err != nil {
		c.t.Fatal(err)
	}
	return a
}

func (c *voteCore) get(id string) *broker.Approval {
	c.t.Helper()
	a, err := c.b.Approval(context.Background(), id)
	if err != nil {
		c.t.Fatal(err)
	}
	return a
}

var exactGrant = &broker.GrantRequest{Scope: policy.ScopeExact, TTL: policy.Duration(time.Hour)}

// Every refusal is one VoteError with its code, leaves the approval as it
// was, and returns it as it stands.
func TestVoteRefusals(t *testing.T) {
	c := newVoteCore(t, nil)
	decided := c.pending(nil)
	if _, err := c.b.Vote(context.Background(), decided.ID, broker.Vote{Approver: "bob", Channel: "web", Verdict: broker.Approve}); err != nil {
		t.Fatal(err)
	}
	tests := map[string]struct {
		edit func(*broker.Approval)
		id   string // instead of a new approval's
		vote broker.Vote
		code broker.VoteCode
		msg  string
	}{
		"no such approval":        {id: "NOPE", vote: broker.Vote{Approver: "alice", Verdict: broker.Approve}, code: broker.VoteNotFound, msg: "no approval NOPE"},
		"decided already":         {id: decided.ID, vote: broker.Vote{Approver: "alice", Verdict: broker.Deny, Reason: "too late"}, code: broker.VoteAlreadyDecided, msg: "already decided by bob at "},
		"time ran out":            {edit: func(a *broker.Approval) { a.ExpiresAt = time.Now().Add(-time.Second) }, vote: broker.Vote{Approver: "alice", Verdict: broker.Approve}, code: broker.VoteExpired, msg: "the time for a decision has run out at "},
		"not named by the policy": {edit: func(a *broker.Approval) { a.Decision.Approvers.Users = []string{"carol"} }, vote: broker.Vote{Approver: "alice", Verdict: broker.Deny, Reason: "no"}, code: broker.VoteNotApprover, msg: "the policy names who may decide it (carol)"},
		"the requester approving": {vote: broker.Vote{Approver: "tester", Verdict: broker.Approve}, code: broker.VoteSelfApproval, msg: "the requester cannot approve"},
		"approving twice": {edit: func(a *broker.Approval) {
			a.Decision.Quorum = 2
			a.Votes = []broker.Vote{{Approver: "alice", Channel: "slack", Verdict: broker.Approve}}
		}, vote: broker.Vote{Approver: "alice", Verdict: broker.Approve}, code: broker.VoteAlreadyVoted, msg: "already approved"},
		"a grant not grantable":     {edit: func(a *broker.Approval) { a.Decision.Grantable = nil }, vote: broker.Vote{Approver: "alice", Verdict: broker.Approve, Grant: exactGrant}, code: broker.VoteNotGrantable, msg: "does not allow an \"always allow\""},
		"a scope not offered":       {vote: broker.Vote{Approver: "alice", Verdict: broker.Approve, Grant: &broker.GrantRequest{Scope: policy.ScopeTool}}, code: broker.VoteNotGrantable, msg: "does not allow that scope here: \"tool\" (allowed: exact)"},
		"a grant before quorum":     {edit: func(a *broker.Approval) { a.Decision.Quorum = 2 }, vote: broker.Vote{Approver: "alice", Verdict: broker.Approve, Grant: exactGrant}, code: broker.VoteNotGrantable, msg: "completes the quorum"},
		"a grant with a denial":     {vote: broker.Vote{Approver: "alice", Verdict: broker.Deny, Reason: "no", Grant: exactGrant}, code: broker.VoteNotGrantable, msg: "a grant can only come with an approval"},
		"a verdict that is none":    {vote: broker.Vote{Approver: "alice", Verdict: "maybe"}, code: broker.VoteBad, msg: `verdict must be "approve" or "deny"`},
		"a denial without a reason": {vote: broker.Vote{Approver: "alice", Verdict: broker.Deny}, code: broker.VoteBad, msg: "a denial needs a reason"},
		"a reason of white space":   {vote: broker.Vote{Approver: "alice", Verdict: broker.Deny, Reason: " \t\n"}, code: broker.VoteBad, msg: "a denial needs a reason"},
		"nobody voting":             {vote: broker.Vote{Approver: " ", Verdict: broker.Approve}, code: broker.VoteBad, msg: "the approver's identity"},
		"a negative number of use":  {vote: broker.Vote{Approver: "alice", Verdict: broker.Approve, Grant: &broker.GrantRequest{Scope: policy.ScopeExact, MaxUses: -1}}, code: broker.VoteBad, msg: "max_uses must not be negative"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			id := tc.id
			if id == "" {
				id = c.pending(tc.edit).ID
			}
			var before *broker.Approval
			if id != "NOPE" {
				before = c.get(id)
			}
			tc.vote.Channel = "test"
			got, err := c.b.Vote(context.Background(), id, tc.vote)
			ve, ok := errors.AsType[*broker.VoteError](err)
			if !ok || ve.Code != tc.code || broker.VoteCodeOf(err) != tc.code || !strings.Contains(ve.Error(), tc.msg) {
				t.Fatalf("err = %#v, want code %s saying %q", err, tc.code, tc.msg)
			}
			if before == nil {
				if got != nil {
					t.Errorf("an approval for an unknown id: %+v", got)
				}
				return
			}
			after := c.get(id)
			if after.Status != before.Status || len(after.Votes) != len(before.Votes) || after.GrantID != "" && before.GrantID == "" {
				t.Errorf("a refused vote changed the approval: %+v", after)
			}
			if got == nil || got.ID != id || got.Status != after.Status {
				t.Errorf("the approval returned with the refusal: %+v", got)
			}
		})
	}

	// Who decided first, and when, travel with already_decided.
	_, err := c.b.Vote(context.Background(), decided.ID, broker.Vote{Approver: "alice", Verdict: broker.Deny, Reason: "too late", Channel: "test"})
	ve, _ := errors.AsType[*broker.VoteError](err)
	var de *broker.DecidedError
	if ve == nil || ve.By != "bob" || ve.Status != broker.StatusApproved || ve.At.IsZero() || !errors.As(err, &de) {
		t.Errorf("already decided: %#v", err)
	}
	// The finer reasons stay reachable.
	_, err = c.b.Vote(context.Background(), c.pending(nil).ID, broker.Vote{Approver: "tester", Verdict: broker.Approve, Channel: "test"})
	if !errors.Is(err, broker.ErrSelfApproval) {
		t.Errorf("self approval: %v", err)
	}
	_, err = c.b.Vote(context.Background(), c.pending(nil).ID, broker.Vote{Approver: "alice", Verdict: broker.Deny, Channel: "test"})
	if !errors.Is(err, broker.ErrNoReason) {
		t.Errorf("a denial without a reason: %v", err)
	}
}

// CheckVote, which channels ask before a person has written a reason,
// offers a denial without one, still refusing what the reason cannot
// change; Vote then asks for the reason.
func TestCheckVoteDenialProbe(t *testing.T) {
	c := newVoteCore(t, nil)
	a := c.pending(nil)
	now := time.Now()
	if err := a.CheckVote(broker.Vote{Approver: "alice", Verdict: broker.Deny}, now); err != nil {
		t.Errorf("a denial, before its reason is written: %v", err)
	}
	a.Decision.Approvers.Users = []string{"carol"}
	if err := a.CheckVote(broker.Vote{Approver: "alice", Verdict: broker.Deny}, now); broker.VoteCodeOf(err) != broker.VoteNotApprover {
		t.Errorf("a non-approver's denial: %v", err)
	}
	if err := a.CheckVote(broker.Vote{Approver: "carol", Verdict: broker.Deny, Reason: "  "}, now); err != nil {
		t.Errorf("a probe with a blank reason is a probe: %v", err)
	}
}

// The same person voting in two channels (the web UI and Slack, mapped
// to the same identity) is one approval, not a quorum of two.
func TestVoteQuorumCountsPeopleNotChannels(t *testing.T) {
	c := newVoteCore(t, nil)
	a := c.pending(func(a *broker.Approval) { a.Decision.Quorum = 2 })
	if _, err := c.b.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "web", Verdict: broker.Approve}); err != nil {
		t.Fatal(err)
	}
	_, err := c.b.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "slack", Verdict: broker.Approve, Authorized: true})
	if broker.VoteCodeOf(err) != broker.VoteAlreadyVoted {
		t.Fatalf("alice again, in Slack: %v", err)
	}
	if got := c.get(a.ID); got.Status != broker.StatusPending || got.Approvals() != 1 {
		t.Fatalf("after alice twice: %s with %d approvals", got.Status, got.Approvals())
	}
	if got, err := c.b.Vote(context.Background(), a.ID, broker.Vote{Approver: "bob", Channel: "cli", Verdict: broker.Approve}); err != nil || got.Status != broker.StatusApproved {
		t.Fatalf("bob completes the quorum: %v %+v", err, got)
	}
}

// When the grant cannot be stored, the vote still counted: the approval
// comes back approved, with grant_not_stored, not a refusal.
func TestVoteGrantNotStored(t *testing.T) {
	c := newVoteCore(t, brokertest.FailGrants(brokertest.NewMemStore()))
	a := c.pending(nil)
	got, err := c.b.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "test", Verdict: broker.Approve, Grant: exactGrant})
	ve, ok := errors.AsType[*broker.VoteError](err)
	if !ok || ve.Code != broker.VoteGrantNotStored || ve.Ref == "" || !strings.Contains(ve.Msg, "approved, but the grant could not be stored (ref "+ve.Ref+")") || !errors.Is(err, brokertest.ErrDiskFull) {
		t.Fatalf("err = %#v", err)
	}
	if got == nil || got.Status != broker.StatusApproved || got.GrantID != "" {
		t.Fatalf("approval returned: %+v", got)
	}
	// It names no grant that does not exist.
	if stored := c.get(a.ID); stored.Status != broker.StatusApproved || stored.GrantID != "" {
		t.Errorf("stored: %s, grant %q", stored.Status, stored.GrantID)
	}
}

// The API maps each code to its status and says the code; a grant not
// stored is a 500 that still carries the approved approval.
func TestAPIVoteCodes(t *testing.T) {
	store := &brokertest.FaultyStore{Store: brokertest.NewMemStore()}
	c := newVoteCore(t, store)
	srv := httptest.NewServer(c.b.APIHandler(testToken))
	t.Cleanup(srv.Close)
	api := apiClient{t, srv.URL}
	decided := c.pending(nil)
	c.b.Vote(context.Background(), decided.ID, broker.Vote{Approver: "bob", Channel: "web", Verdict: broker.Approve})
	tests := map[string]struct {
		edit   func(*broker.Approval)
		id     string
		body   string
		status int
		code   broker.VoteCode
	}{
		"not_found":       {id: "NOPE", body: `{"verdict":"approve"}`, status: 404, code: broker.VoteNotFound},
		"already_decided": {id: decided.ID, body: `{"verdict":"approve"}`, status: 409, code: broker.VoteAlreadyDecided},
		"expired":         {edit: func(a *broker.Approval) { a.ExpiresAt = time.Now().Add(-time.Second) }, body: `{"verdict":"approve"}`, status: 409, code: broker.VoteExpired},
		"not_an_approver": {edit: func(a *broker.Approval) { a.Decision.Approvers.Users = []string{"alice"} }, body: `{"verdict":"approve"}`, status: 403, code: broker.VoteNotApprover},
		"self_approval":   {edit: func(a *broker.Approval) { a.Principal.ID = broker.AdminIdentity }, body: `{"verdict":"approve"}`, status: 403, code: broker.VoteSelfApproval},
		"already_voted": {edit: func(a *broker.Approval) {
			a.Decision.Quorum = 2
			a.Votes = []broker.Vote{{Approver: "admin", Verdict: broker.Approve}}
		}, body: `{"verdict":"approve"}`, status: 403, code: broker.VoteAlreadyVoted},
		"not_grantable": {body: `{"verdict":"deny","reason":"no","grant":{"scope":"exact"}}`, status: 403, code: broker.VoteNotGrantable},
		"bad_vote":      {body: `{"verdict":"maybe"}`, status: 400, code: broker.VoteBad},
		"no reason":     {body: `{"verdict":"deny","reason":"  "}`, status: 400, code: broker.VoteBad},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			id := tc.id
			if id == "" {
				id = c.pending(tc.edit).ID
			}
			var body broker.VoteErrorBody
			if code := api.do("POST", "/api/v1/approvals/"+id+"/decision", tc.body, &body); code != tc.status || body.Code != tc.code || body.Error == "" {
				t.Errorf("%d %+v, want %d with code %s", code, body, tc.status, tc.code)
			}
			if tc.code == broker.VoteAlreadyDecided && (body.DecidedBy != "bob" || body.Status != broker.StatusApproved || body.DecidedAt.IsZero()) {
				t.Errorf("already decided without who, how and when: %+v", body)
			}
			if tc.code == broker.VoteExpired && body.ExpiresAt.IsZero() {
				t.Errorf("expired without when: %+v", body)
			}
		})
	}

	store.SetFailGrants(true)
	a := c.pending(nil)
	var body broker.VoteErrorBody
	if code := api.do("POST", "/api/v1/approvals/"+a.ID+"/decision", `{"verdict":"approve","grant":{"scope":"exact","ttl":"1h"}}`, &body); code != 500 ||
		body.Code != broker.VoteGrantNotStored || body.Approval == nil || body.Approval.Status != broker.StatusApproved || !strings.Contains(body.Error, "grant could not be stored") {
		t.Errorf("grant not stored: %d %+v", code, body)
	}
}
