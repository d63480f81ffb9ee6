package broker_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/relay/wire"
)

const testToken = "test-admin-token"

type apiClient struct {
	t   *testing.T
	url string
}

func (c apiClient) do(method, path, body string, out any) int {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			c.t.Fatalf("%s %s: %v in %s", method, path, err, data)
		}
	}
	return resp.StatusCode
}

func newAPI(t *testing.T, h *brokertest.Harness) apiClient {
	srv := httptest.NewServer(h.Broker.APIHandler(testToken))
	t.Cleanup(srv.Close)
	return apiClient{t, srv.URL}
}

func TestAPIRefusesWithoutToken(t *testing.T) {
	h := newHoldHarness(t, broker.Options{})
	api := newAPI(t, h)
	for _, auth := range []string{"", "Bearer wrong", testToken} {
		req, _ := http.NewRequest(http.MethodGet, api.url+"/api/v1/approvals", nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("Authorization %q: %d, want 401", auth, resp.StatusCode)
		}
	}
}

func TestAPIVote(t *testing.T) {
	h := newHoldHarness(t, broker.Options{HoldWait: -1})
	api := newAPI(t, h)
	done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
	a := h.Held()

	var list struct{ Approvals []*broker.Approval }
	if code := api.do("GET", "/api/v1/approvals?status=pending", "", &list); code != 200 || len(list.Approvals) != 1 || list.Approvals[0].ID != a.ID {
		t.Fatalf("pending: %d %+v", code, list)
	}
	if code := api.do("GET", "/api/v1/approvals?status=pending,lapsd", "", nil); code != 400 {
		t.Errorf("a misspelt status: %d, want 400", code)
	}
	var got broker.Approval
	if code := api.do("GET", "/api/v1/approvals/"+a.ID, "", &got); code != 200 || got.Decision.Reason != "tests hold write" {
		t.Fatalf("get: %d %+v", code, got)
	}
	var e struct{ Error string }
	tests := []struct {
		body   string
		status int
		error  string
	}{
		{`{"verdict":"maybe"}`, 400, "verdict must be"},
		{`{"verdict":"approve","extra":1}`, 400, "unknown field"},
		{`{"verdict":"deny","reason":"no","channel":"cli"}`, 200, ""},
		{`{"verdict":"approve","approver":"carol"}`, 409, "already decided by admin at "},
	}
	for _, tc := range tests {
		e.Error = ""
		if code := api.do("POST", "/api/v1/approvals/"+a.ID+"/decision", tc.body, &e); code != tc.status || !strings.Contains(e.Error, tc.error) {
			t.Errorf("%s: %d %q, want %d %q", tc.body, code, e.Error, tc.status, tc.error)
		}
	}
	if o := <-done; !strings.Contains(o.Refusal, "denied by admin: no") {
		t.Errorf("client read %q", o.Refusal)
	}
	if code := api.do("POST", "/api/v1/approvals/NOPE/decision", `{"verdict":"approve"}`, &e); code != 404 {
		t.Errorf("unknown id: %d", code)
	}

	var audit struct{ Records []*broker.AuditRecord }
	if code := api.do("GET", "/api/v1/audit?approval="+a.ID, "", &audit); code != 200 || len(audit.Records) != 2 ||
		audit.Records[0].Event != broker.EventRejected || audit.Records[0].Channel != "cli" {
		t.Errorf("audit: %d %+v", code, audit.Records)
	}
	var v broker.AuditVerification
	if code := api.do("GET", "/api/v1/audit/verify", "", &v); code != 200 || !v.OK || v.Records != 2 {
		t.Errorf("verify: %d %+v", code, v)
	}
}

// One admin token deciding as "bob" and then as "bob2" reached a quorum of
// two; now a decision made with the admin token is the admin identity's,
// and the name it gives is only recorded.
func TestAPIAdminTokenIsOnePerson(t *testing.T) {
	h := newHoldHarness(t, broker.Options{Policy: brokertest.HoldTools(2, "write"), HoldWait: -1, AdminIdentity: "carol"})
	api := newAPI(t, h)
	done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
	a := h.Held()
	var got broker.Approval
	if code := api.do("POST", "/api/v1/approvals/"+a.ID+"/decision", `{"verdict":"approve","approver":"bob"}`, &got); code != 200 || got.Status != broker.StatusPending {
		t.Fatalf("first approval: %d %+v", code, got)
	}
	if v := got.Votes[0]; v.Approver != "carol" || v.As != "bob" {
		t.Errorf("vote recorded as %q (as %q), want carol (as bob)", v.Approver, v.As)
	}
	var e struct{ Error string }
	for _, body := range []string{`{"verdict":"approve","approver":"bob2"}`, `{"verdict":"approve"}`, `{"verdict":"approve","approver":"carol"}`} {
		if code := api.do("POST", "/api/v1/approvals/"+a.ID+"/decision", body, &e); code != 403 || !strings.Contains(e.Error, "already approved") {
			t.Errorf("%s after the token's first approval: %d %q, want 403 already approved", body, code, e.Error)
		}
	}
	if cur, _ := h.Broker.Approval(context.Background(), a.ID); cur.Status != broker.StatusPending || cur.Approvals() != 1 {
		t.Fatalf("after one person's approvals: %s with %d approvals", cur.Status, cur.Approvals())
	}
	h.Vote(a.ID, "dave", broker.Approve, "")
	<-done
	var audit struct{ Records []*broker.AuditRecord }
	api.do("GET", "/api/v1/audit?approval="+a.ID+"&event=approval.vote", "", &audit)
	if len(audit.Records) != 1 || audit.Records[0].Actor != "carol" || audit.Records[0].ActorAs != "bob" {
		t.Errorf("audit of the vote: %+v", audit.Records)
	}
}

// approvers.users was checked by the web UI only: the admin token decided
// any call through the API and the CLI.
func TestAPIDecisionMeetsApproversUsers(t *testing.T) {
	pol := brokertest.PolicyFunc(func(in *policy.Input) policy.Decision {
		return policy.Decision{Action: policy.Hold, Reason: "held", Quorum: 1, Approvers: policy.Approvers{Users: []string{"alice", "bob"}}}
	})
	h := newHoldHarness(t, broker.Options{Policy: pol, HoldWait: -1})
	api := newAPI(t, h)
	done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
	a := h.Held()
	var e struct{ Error string }
	for _, body := range []string{`{"verdict":"approve"}`, `{"verdict":"approve","approver":"alice"}`, `{"verdict":"deny","reason":"no"}`} {
		e.Error = ""
		if code := api.do("POST", "/api/v1/approvals/"+a.ID+"/decision", body, &e); code != 403 ||
			!strings.Contains(e.Error, "not an approver for this call: the policy names who may decide it (alice, bob), and this decision is admin's") {
			t.Errorf("%s: %d %q, want 403 naming the approvers", body, code, e.Error)
		}
	}
	if _, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "mallory", Channel: "web", Verdict: broker.Approve}); !errors.Is(err, broker.ErrNotApprover) {
		t.Errorf("a web vote by someone not named: %v", err)
	}
	if _, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "web", Verdict: broker.Approve}); err != nil {
		t.Fatalf("alice, named by the policy: %v", err)
	}
	<-done
}

func TestAPIEventStream(t *testing.T) {
	h := newHoldHarness(t, broker.Options{HoldWait: -1})
	api := newAPI(t, h)
	req, _ := http.NewRequest(http.MethodGet, api.url+"/api/v1/events", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
	er := wire.NewEventReader(resp.Body, 0)
	ev, err := er.Next()
	if err != nil || ev.Type != "held" {
		t.Fatalf("first event: %+v %v", ev, err)
	}
	var a broker.Approval
	json.Unmarshal(ev.Data, &a)
	h.Vote(a.ID, "alice", broker.Approve, "")
	for {
		ev, err = er.Next()
		if err != nil {
			t.Fatal(err)
		}
		if ev.Type == "decided" {
			break
		}
	}
	json.Unmarshal(ev.Data, &a)
	if a.Status != broker.StatusApproved || a.DecidedBy != "alice" {
		t.Errorf("decided event: %+v", a)
	}
	<-done
}

func TestAPIGrants(t *testing.T) {
	h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
	api := newAPI(t, h)
	done := h.Call(context.Background(), "write", map[string]any{"path": "/a"})
	a := h.Held()
	var e struct{ Error string }
	if code := api.do("POST", "/api/v1/approvals/"+a.ID+"/decision", `{"verdict":"approve","grant":{"scope":"everything","ttl":"1h"}}`, &e); code != 403 || !strings.Contains(e.Error, "does not allow that scope") {
		t.Errorf("a scope the policy does not offer: %d %q", code, e.Error)
	}
	var got broker.Approval
	if code := api.do("POST", "/api/v1/approvals/"+a.ID+"/decision", `{"verdict":"approve","grant":{"scope":"arguments","ttl":"30m"}}`, &got); code != 200 || got.GrantID == "" {
		t.Fatalf("approve with a grant: %d %+v", code, got)
	}
	<-done
	var list struct{ Grants []*broker.Grant }
	if code := api.do("GET", "/api/v1/grants?status=active", "", &list); code != 200 || len(list.Grants) != 1 || list.Grants[0].ID != got.GrantID ||
		list.Grants[0].Scope != "arguments" || string(list.Grants[0].KeyArguments["path"]) != `"/a"` {
		t.Fatalf("grants: %d %+v", code, list.Grants)
	}
	var g broker.Grant
	if code := api.do("DELETE", "/api/v1/grants/"+got.GrantID+"?by=bob", "", &g); code != 200 || g.Status != broker.GrantRevoked || g.EndedBy != "bob" {
		t.Errorf("revoke: %d %+v", code, g)
	}
	if code := api.do("DELETE", "/api/v1/grants/"+got.GrantID, "", &e); code != 409 {
		t.Errorf("revoking twice: %d", code)
	}
	if code := api.do("POST", "/api/v1/grants", `{"server":"test","tool":"write","scope":"tool"}`, &e); code != 400 || !strings.Contains(e.Error, "needs a ttl") {
		t.Errorf("a grant without a ttl: %d %q", code, e.Error)
	}
	if code := api.do("POST", "/api/v1/grants", `{"server":"test","tool":"write","scope":"tool","ttl":"2h","created_by":"ops"}`, &g); code != 201 || g.CreatedBy != "ops" {
		t.Errorf("create: %d %+v", code, g)
	}
}

// The web login ("admin") and a Slack user without an Airlock identity
// counted as two people; the Slack account may be the admin's own.
func TestQuorumDoesNotAddUpRealms(t *testing.T) {
	h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 2), HoldWait: -1})
	done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
	a := h.Held()
	ctx := context.Background()
	vote := func(who, realm string) (*broker.Approval, error) {
		return h.Broker.Vote(ctx, a.ID, broker.Vote{Approver: who, Realm: realm, Channel: "test", Verdict: broker.Approve})
	}
	if _, err := vote("admin", ""); err != nil {
		t.Fatal(err)
	}
	got, err := vote("slack:U1", "slack")
	if err != nil || got.Status != broker.StatusPending || got.Approvals() != 1 {
		t.Fatalf("admin and an unmapped Slack user: %v, %s with %d approvals; want pending with 1", err, got.Status, got.Approvals())
	}
	_, err = h.Broker.Vote(ctx, a.ID, broker.Vote{Approver: "slack:U2", Realm: "slack", Channel: "test", Verdict: broker.Approve,
		Grant: &broker.GrantRequest{Scope: "exact", TTL: policy.Duration(time.Hour)}})
	if err != nil {
		t.Fatalf("the vote that completes the quorum, with a grant: %v", err)
	}
	if got, err = h.Broker.Approval(ctx, a.ID); err != nil || got.Status != broker.StatusApproved {
		t.Fatalf("two Slack accounts: %v, %s; want approved", err, got.Status)
	}
	<-done

	// A Slack user mapped to an Airlock name has their account: an
	// unmapped account is someone else.
	done = h.Call(context.Background(), "write", map[string]any{"path": "/y"})
	a = h.Held()
	h.Broker.Vote(ctx, a.ID, broker.Vote{Approver: "alice", Channel: "slack", Verdict: broker.Approve})
	if got, err = vote("slack:U1", "slack"); err != nil || got.Status != broker.StatusApproved {
		t.Fatalf("a mapped and an unmapped Slack user: %v, %s; want approved", err, got.Status)
	}
	<-done
}

// The vote's answer says whether the call runs now (its caller waits) or
// when the agent calls again, until when.
func TestAPIVoteSaysWhetherTheCallRuns(t *testing.T) {
	// An HTTP server is no part of a synctest bubble: real time, short.
	h := newHoldHarness(t, broker.Options{HoldWait: time.Second})
	api := newAPI(t, h)
	done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
	a := h.Held()
	var got map[string]any
	if code := api.do("POST", "/api/v1/approvals/"+a.ID+"/decision", `{"verdict":"approve"}`, &got); code != 200 || got["caller_waiting"] != true {
		t.Errorf("approved while waited for: %d %v", code, got)
	}
	<-done
	if o := <-h.Call(context.Background(), "write", map[string]any{"path": "/y"}); o.Forward {
		t.Fatalf("told pending: %+v", o)
	}
	b := h.Held()
	got = nil
	if code := api.do("POST", "/api/v1/approvals/"+b.ID+"/decision", `{"verdict":"approve"}`, &got); code != 200 || got["caller_waiting"] != nil || got["retry_until"] == nil {
		t.Errorf("approved after its caller was told pending: %d %v", code, got)
	}
}
