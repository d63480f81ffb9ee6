package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
)

// voteBroker is a real broker core behind the real API, in this process,
// with approvals put in its store as the gate would; it returns the state
// directory that points at it.
func voteBroker(t *testing.T, store broker.Store) (*broker.Broker, string) {
	t.Helper()
	b, err := broker.New(broker.Options{Policy: brokertest.AllowAll(), Store: store})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	srv := httptest.NewServer(b.APIHandler("tok"))
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	if err := writeAPIInfo(dir, apiInfo{URL: srv.URL, PID: os.Getpid()}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, tokenFile), []byte("tok\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return b, dir
}

var cliApprovals atomic.Int64

func pendingIn(t *testing.T, store broker.Store, edit func(*broker.Approval)) string {
	t.Helper()
	now := time.Now()
	a := &broker.Approval{ID: fmt.Sprintf("01CLI%010d", cliApprovals.Add(1)), Status: broker.StatusPending, Server: "fs", Tool: "write_file",
		Arguments: json.RawMessage(`{"path":"/x"}`), ArgumentsDigest: "sha256:x", ToolFingerprint: "sha256:t",
		Principal: broker.Principal{ID: "tester", Source: "os"}, RequestedAt: now, ExpiresAt: now.Add(time.Hour),
		Decision: policy.Decision{Action: policy.Hold, Reason: "held", Quorum: 1}}
	if edit != nil {
		edit(a)
	}
	if err := store.CreateApproval(context.Background(), a, &broker.AuditRecord{Time: now, Event: broker.EventHeld, ApprovalID: a.ID}); err != nil {
		t.Fatal(err)
	}
	return a.ID
}

// airlock approve and deny name the refusal: what its code means, the code,
// and the broker's words. approvers.users binds the admin token too.
func TestApproveRefusals(t *testing.T) {
	store := brokertest.NewMemStore()
	b, dir := voteBroker(t, store)
	decided := pendingIn(t, store, nil)
	if _, err := b.Vote(context.Background(), decided, broker.Vote{Approver: "bob", Channel: "web", Verdict: broker.Approve}); err != nil {
		t.Fatal(err)
	}
	grantable := func(a *broker.Approval) {
		a.Decision.Grantable = &policy.Grantable{Scopes: []string{policy.ScopeExact}, MaxTTL: policy.Duration(time.Hour)}
	}
	tests := map[string]struct {
		edit func(*broker.Approval)
		id   string
		args []string
		want string
	}{
		"a non-approver": {edit: func(a *broker.Approval) { a.Decision.Approvers.Users = []string{"alice"} },
			want: "not an approver for this call (not_an_approver): not an approver for this call: the policy names who may decide it (alice), and this decision is admin's"},
		"a non-approver denying": {edit: func(a *broker.Approval) { a.Decision.Approvers.Users = []string{"alice"} }, args: []string{"deny", "--reason", "no"},
			want: "deny %s: not an approver for this call (not_an_approver)"},
		"no such approval": {id: "01NOPE", want: "no such approval (not_found): no approval 01NOPE"},
		"decided already":  {id: decided, want: "already decided (already_decided): already decided by bob at "},
		"time ran out":     {edit: func(a *broker.Approval) { a.ExpiresAt = time.Now().Add(-time.Minute) }, want: "too late, its time ran out (expired): "},
		"the requester":    {edit: func(a *broker.Approval) { a.Principal.ID = broker.AdminIdentity }, want: "the requester cannot approve their own call (self_approval)"},
		"twice": {edit: func(a *broker.Approval) {
			a.Decision.Quorum = 2
			a.Votes = []broker.Vote{{Approver: "admin", Verdict: broker.Approve}}
		}, want: "already voted; a quorum needs different people (already_voted)"},
		"a grant not offered": {args: []string{"approve", "--grant", "tool"}, want: "the policy does not allow that grant (not_grantable): the policy does not allow an \"always allow\" for this call"},
		"a bad grant":         {edit: grantable, args: []string{"approve", "--grant", "exact", "--max-uses", "-1"}, want: "not a valid vote (bad_vote): max_uses must not be negative"},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			id := tc.id
			if id == "" {
				id = pendingIn(t, store, tc.edit)
			}
			args := tc.args
			if args == nil {
				args = []string{"approve"}
			}
			args = append([]string{args[0], id}, args[1:]...)
			out, _, err := run(t, "", append(args, "--state-dir", dir)...)
			want := tc.want
			if strings.Contains(want, "%s") {
				want = fmt.Sprintf(want, id)
			}
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("airlock %s: %q %v, want an error saying %q", strings.Join(args, " "), out, err, want)
			}
			if a, err := b.Approval(context.Background(), id); err == nil && id != decided && a.Status != broker.StatusPending {
				t.Errorf("a refused vote decided it: %s", a.Status)
			}
		})
	}
}

// Approved, but the grant was not stored: the CLI says the call was
// approved, and fails naming the grant. Nobody waits for this call (it was
// put in the store), so the CLI says it runs when the agent calls again.
func TestApproveGrantNotStored(t *testing.T) {
	store := brokertest.FailGrants(brokertest.NewMemStore())
	_, dir := voteBroker(t, store)
	id := pendingIn(t, store, func(a *broker.Approval) {
		a.Decision.Grantable = &policy.Grantable{Scopes: []string{policy.ScopeExact}, MaxTTL: policy.Duration(time.Hour)}
	})
	out, _, err := run(t, "", "approve", id, "--grant", "exact", "--state-dir", dir)
	if !strings.Contains(out, "Approved "+id+": the call to write_file on fs runs when the agent calls again (until ") || strings.Contains(out, "Grant ") {
		t.Errorf("stdout: %q", out)
	}
	if err == nil || !strings.Contains(err.Error(), "approved, but the grant was not stored (grant_not_stored): the call was approved, but the grant could not be stored (ref ") {
		t.Errorf("err = %v", err)
	}
}
