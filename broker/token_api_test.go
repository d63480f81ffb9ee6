package broker_test

import (
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
	"github.com/airlock-mcp/airlock/policy"
)

// raw calls the API with the bearer token given.
func (c apiClient) raw(bearer, method, path, body string) (int, string) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.url+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+bearer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(data)
}

func TestAPITokens(t *testing.T) {
	h := brokertest.NewHarness(t, broker.Options{Servers: []string{"github", "files"}})
	api := newAPI(t, h)
	var made broker.TokenView
	if code := api.do("POST", "/api/v1/tokens", `{"name":"builder","servers":["github"],"groups":["ci"],"ttl":"720h"}`, &made); code != 201 {
		t.Fatalf("create: %d %+v", code, made)
	}
	if !strings.HasPrefix(made.Secret, broker.AgentTokenPrefix) || made.Kind != "agent" || made.Status != "active" || made.Name != "builder" ||
		made.CreatedBy != "admin" || made.ExpiresAt.Sub(made.CreatedAt) != 720*60*60*1e9 || made.Hash != "" {
		t.Errorf("created: %+v", made)
	}
	if _, err := h.Broker.TokenPrincipal(t.Context(), made.Secret, "github"); err != nil {
		t.Errorf("the token the API made: %v", err)
	}
	var e struct{ Error string }
	for body, want := range map[string]int{
		`{"name":"builder"}`:                           409,
		`{"name":"bad name"}`:                          400,
		`{"name":"x","servers":["nope"]}`:              400,
		`{"name":"x","ttl":"soon"}`:                    400,
		`{"name":"x","extra":1}`:                       400,
		`{"name":"x","approver":true,"groups":["ci"]}`: 400,
	} {
		if code := api.do("POST", "/api/v1/tokens", body, &e); code != want {
			t.Errorf("%s: %d %q, want %d", body, code, e.Error, want)
		}
	}
	var never broker.TokenView
	if code := api.do("POST", "/api/v1/tokens", `{"name":"alice","approver":true,"ttl":"0s"}`, &never); code != 201 || !never.ExpiresAt.IsZero() || never.Kind != "approver" {
		t.Errorf("an approver token that never expires: %d %+v", code, never)
	}
	code, body := api.raw(testToken, "GET", "/api/v1/tokens", "")
	if code != 200 || strings.Contains(body, made.Secret[len(made.Secret)-43:]) || strings.Contains(body, `"hash"`) || !strings.Contains(body, `"builder"`) {
		t.Errorf("list: %d %s", code, body)
	}
	var revoked broker.TokenView
	if code := api.do("DELETE", "/api/v1/tokens/builder", "", &revoked); code != 200 || revoked.Status != "revoked" || revoked.RevokedBy != "admin" {
		t.Errorf("revoke: %d %+v", code, revoked)
	}
	if code := api.do("DELETE", "/api/v1/tokens/builder", "", &e); code != 404 {
		t.Errorf("revoke again: %d %q", code, e.Error)
	}
}

// A person's approver token decides as that person, under every rule of
// the one decision authority; it does nothing but read and decide
// approvals. An agent token is no key to the API.
func TestAPIApproverToken(t *testing.T) {
	pol := brokertest.PolicyFunc(func(in *policy.Input) policy.Decision {
		return policy.Decision{Action: policy.Hold, Reason: "held", Quorum: 2, Approvers: policy.Approvers{Users: []string{"alice", "bob", "dave"}}}
	})
	h := brokertest.NewHarness(t, broker.Options{Policy: pol, HoldWait: -1,
		People: broker.People{broker.PersonKey("token", "builder"): "alice", broker.PersonKey("token", "alice-laptop"): "alice"}})
	h.Principal = broker.Principal{ID: "builder", Source: "token"}
	api := newAPI(t, h)
	mk := func(name string, approver bool) string {
		return createToken(t, h.Broker, broker.TokenSpec{Name: name, Approver: approver})
	}
	alice, bob, carol, dave, agent := mk("alice-laptop", true), mk("bob", true), mk("carol", true), mk("dave", true), mk("builder", false)

	done := h.Call(context.Background(), "write", map[string]any{"path": "/x"})
	a := h.Held()
	decide := "/api/v1/approvals/" + a.ID + "/decision"
	approve := `{"verdict":"approve","channel":"cli"}`
	check := func(who, tok, method, path, body string, want int, wantIn string) {
		t.Helper()
		code, got := api.raw(tok, method, path, body)
		if code != want || !strings.Contains(got, wantIn) {
			t.Errorf("%s: %s %s: %d %s, want %d with %q", who, method, path, code, got, want, wantIn)
		}
	}
	check("alice", alice, "GET", "/api/v1/approvals?status=pending", "", 200, a.ID)
	check("alice", alice, "GET", "/api/v1/approvals/"+a.ID, "", 200, a.ID)
	// builder is alice's agent: she may not approve its call, under any
	// token of hers.
	check("alice", alice, "POST", decide, approve, 403, `"self_approval"`)
	check("carol", carol, "POST", decide, approve, 403, `"not_an_approver"`)
	check("admin", testToken, "POST", decide, approve, 403, `"not_an_approver"`)
	check("bob as mallory", bob, "POST", decide, `{"verdict":"approve","approver":"mallory"}`, 400, "decides as bob")
	check("bob", bob, "POST", decide, approve, 200, `"approver": "bob"`)
	check("bob again", bob, "POST", decide, approve, 403, `"already_voted"`)
	for _, p := range []string{"GET /api/v1/audit", "GET /api/v1/audit/verify", "GET /api/v1/grants", "POST /api/v1/grants", "GET /api/v1/tokens", "POST /api/v1/tokens", "DELETE /api/v1/tokens/bob", "DELETE /api/v1/grants/x"} {
		method, path, _ := strings.Cut(p, " ")
		check("bob", bob, method, path, "{}", 403, "approver token may list, read and decide approvals only")
	}
	check("agent", agent, "GET", "/api/v1/approvals", "", 403, "agent token is for the MCP endpoints")
	check("agent", agent, "POST", decide, approve, 403, "agent token is for the MCP endpoints")
	check("garbage", broker.ApproverTokenPrefix+"nope", "GET", "/api/v1/approvals", "", 401, "unknown, expired or revoked")
	if _, err := h.Broker.RevokeToken(t.Context(), "carol", ""); err != nil {
		t.Fatal(err)
	}
	check("carol revoked", carol, "GET", "/api/v1/approvals", "", 401, "unknown, expired or revoked")

	check("dave", dave, "POST", decide, approve, 200, `"status": "approved"`)
	if cur, _ := h.Broker.Approval(t.Context(), a.ID); cur.Status != broker.StatusApproved {
		t.Fatalf("after bob and dave approved: %s", cur.Status) // the broker's Close answers the call
	}
	if o := <-done; !released(o) {
		t.Fatalf("the call after bob and dave approved: %+v", o)
	}
	var audit struct{ Records []*broker.AuditRecord }
	api.do("GET", "/api/v1/audit?approval="+a.ID+"&event=approval.", "", &audit)
	var actors []string
	for _, r := range audit.Records {
		actors = append(actors, string(r.Event)+":"+r.Actor+":"+r.Channel)
	}
	if got := strings.Join(actors, " "); got != "approval.approved:dave:cli approval.vote:bob:cli" {
		t.Errorf("audit: %s", got)
	}
}

// An event stream opened with an approver token ends at the keep-alive
// after the token is revoked.
func TestAPIEventStreamEndsWithItsToken(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := brokertest.NewHarness(t, broker.Options{})
		tok := createToken(t, h.Broker, broker.TokenSpec{Name: "alice", Approver: true})
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req := httptest.NewRequestWithContext(ctx, "GET", "/api/v1/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		rec := httptest.NewRecorder()
		done := make(chan struct{})
		go func() {
			h.Broker.APIHandler(testToken).ServeHTTP(rec, req)
			close(done)
		}()
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case <-done:
			t.Fatal("the stream ended with its token good")
		default:
		}
		if _, err := h.Broker.RevokeToken(context.Background(), "alice", ""); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		select {
		case <-done:
		default:
			t.Error("the stream outlived its revoked token")
			cancel()
			<-done
		}
	})
}
