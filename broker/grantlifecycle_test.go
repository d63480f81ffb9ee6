package broker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
)

// grantPolicy holds writes, lets an approver make any kind of grant for at
// most maxTTL keyed on "path", and honours the grants it is offered, as the
// default library does.
func grantPolicy(maxTTL time.Duration, quorum int) brokertest.PolicyFunc {
	return func(in *policy.Input) policy.Decision {
		if in.Tool.Name != "write" {
			return policy.Decision{Action: policy.Allow}
		}
		if len(in.Grants) > 0 {
			return policy.Decision{Action: policy.Allow, Reason: "granted", Grant: in.Grants[0].ID}
		}
		return policy.Decision{Action: policy.Hold, Reason: "writes need a person", Quorum: quorum,
			Grantable: &policy.Grantable{Scopes: []string{policy.ScopeExact, policy.ScopeArguments, policy.ScopeTool},
				MaxTTL: policy.Duration(maxTTL), KeyArguments: []string{"path"}}}
	}
}

// writeHeld calls the write tool as the harness's principal and reports
// whether it was held, approving nothing: a held call is denied at once so
// that the test goes on.
func writeHeld(h *brokertest.Harness, args map[string]any) bool {
	h.T.Helper()
	return writeHeldAs(h, h.Principal, args)
}

// writeHeldAs is writeHeld for a call made as p.
func writeHeldAs(h *brokertest.Harness, p broker.Principal, args map[string]any) bool {
	h.T.Helper()
	call := h.NewCall("write", args)
	call.Principal = p
	out := h.Check(context.Background(), call)
	for {
		select {
		case o := <-out:
			if !o.Forward {
				h.T.Fatalf("write %v: %+v", args, o)
			}
			return false
		case ev := <-h.Events:
			if ev.Type != "held" {
				continue // earlier approvals' news
			}
			h.Vote(ev.Approval.ID, "alice", broker.Deny, "test")
			<-out
			return true
		}
	}
}

// listAll tells the broker the tools the server lists, as a client's
// tools/list through the relay does.
func listAll(h *brokertest.Harness) { h.Broker.Listed("test", h.Caller.Tools()) }

// approveWithGrant holds a write and approves it with an "always allow".
func approveWithGrant(h *brokertest.Harness, args map[string]any, req broker.GrantRequest) (*broker.Approval, *broker.Grant) {
	h.T.Helper()
	done := h.Call(context.Background(), "write", args)
	a := h.Held()
	a, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "test", Verdict: broker.Approve, Grant: &req})
	if err != nil {
		h.T.Fatalf("approve with a grant: %v", err)
	}
	if o := <-done; !o.Forward {
		h.T.Fatalf("the call that prompted the grant: %+v", o)
	}
	g, err := h.Broker.Grant(context.Background(), a.GrantID)
	if err != nil {
		h.T.Fatal(err)
	}
	return a, g
}

func TestGrantScopes(t *testing.T) {
	hour := policy.Duration(time.Hour)
	tests := map[string]struct {
		scope  string
		passes []map[string]any
		held   []map[string]any
	}{
		"exact": {broker.ScopeExact,
			[]map[string]any{{"content": "x", "path": "/a"}}, // key order does not matter
			[]map[string]any{{"path": "/a", "content": "y"}}},
		"arguments": {broker.ScopeArguments,
			[]map[string]any{{"path": "/a", "content": "y"}},
			[]map[string]any{{"path": "/b", "content": "x"}, {"content": "no path"}}},
		"tool": {broker.ScopeTool,
			[]map[string]any{{"path": "/b"}, {"anything": true}},
			nil},
	}
	for name, tc := range tests {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
				a, g := approveWithGrant(h, map[string]any{"path": "/a", "content": "x"}, broker.GrantRequest{Scope: tc.scope, TTL: hour})
				if g.Status != broker.GrantActive || g.ApprovalID != a.ID || g.Principal != "tester" || g.CreatedBy != "alice" {
					t.Fatalf("grant = %+v", g)
				}
				for _, args := range tc.passes {
					if writeHeld(h, args) {
						t.Errorf("%v was held despite the %s grant", args, tc.scope)
					}
				}
				for _, args := range tc.held {
					if !writeHeld(h, args) {
						t.Errorf("%v passed on a %s grant", args, tc.scope)
					}
				}
				recs, _ := h.Store.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventAllowed)})
				if len(recs) != len(tc.passes) {
					t.Fatalf("%d allowed records, want %d", len(recs), len(tc.passes))
				}
				want := "allowed by grant " + g.ID + " (made by alice on approval " + a.ID + ")"
				if recs[0].GrantID != g.ID || recs[0].Reason != want {
					t.Errorf("audit = %+v, want reason %q", recs[0], want)
				}
				got, _ := h.Broker.Grant(context.Background(), g.ID)
				if got.Uses != len(tc.passes) {
					t.Errorf("uses = %d, want %d", got.Uses, len(tc.passes))
				}
			})
		})
	}
}

func TestGrantPrincipals(t *testing.T) {
	for _, anyone := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
			approveWithGrant(h, map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour), Anyone: anyone})
			other := broker.Principal{ID: "mallory", Source: "token"}
			if held := writeHeldAs(h, other, map[string]any{"path": "/a"}); held == anyone {
				t.Errorf("anyone=%v: another principal's call held=%v", anyone, held)
			}
		})
	}
}

// A grant "for the requester" binds to how the requester was identified
// as well as the name: the same name from another source is someone else,
// and an anonymous requester's grant covers only anonymous callers (not,
// as a grant for the empty name once did, everyone).
func TestGrantBindsToSourceAndID(t *testing.T) {
	// alice approves (approveWithGrant), so the requesters are others.
	tom := broker.Principal{ID: "tom", Source: "os"}
	anon := broker.Principal{Source: "anonymous"}
	tokenTom := broker.Principal{ID: "tom", Source: "token"}
	ciBot := broker.Principal{ID: "ci-bot", Source: "token"}
	for name, tc := range map[string]struct {
		requester broker.Principal
		covered   []broker.Principal
		held      []broker.Principal
	}{
		"os user":   {requester: tom, covered: []broker.Principal{tom}, held: []broker.Principal{tokenTom, ciBot, anon, {}}},
		"token":     {requester: tokenTom, covered: []broker.Principal{tokenTom}, held: []broker.Principal{tom, ciBot, anon}},
		"anonymous": {requester: anon, covered: []broker.Principal{anon, {}}, held: []broker.Principal{tom, tokenTom, ciBot}},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
				h.Principal = tc.requester
				_, g := approveWithGrant(h, map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)})
				if source, id, anyone := g.Covers(); anyone || source != tc.requester.Source || id != tc.requester.ID {
					t.Fatalf("grant covers (%q, %q, anyone=%v), want the requester %+v", source, id, anyone, tc.requester)
				}
				for _, p := range tc.covered {
					if writeHeldAs(h, p, map[string]any{"path": "/b"}) {
						t.Errorf("%+v was held: the grant should cover them", p)
					}
				}
				for _, p := range tc.held {
					if !writeHeldAs(h, p, map[string]any{"path": "/b"}) {
						t.Errorf("%+v was let through by %s's grant", p, tc.requester.Describe())
					}
				}
			})
		})
	}
}

// Grants stored before grants named their principal's source still load,
// read failing closed: a name covers that OS user only, a grant made from
// an approval for no name covers only anonymous callers, and only a
// direct grant for no name covers anyone.
func TestGrantsStoredWithoutSource(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		listAll(h)
		synctest.Wait()
		g, err := h.Broker.CreateGrant(context.Background(), broker.GrantSpec{Server: "test", Tool: "write", Scope: broker.ScopeTool,
			TTL: policy.Duration(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		// It was made for the fingerprint; it must not cover the calls below.
		if _, err := h.Broker.RevokeGrant(context.Background(), g.ID, "test"); err != nil {
			t.Fatal(err)
		}
		h.Broker.Close()
		fp := g.ToolFingerprint
		now := time.Now()
		old := func(id, path, principal, approval string) {
			t.Helper()
			digest, _ := policy.Digest([]byte(`{"path":"` + path + `"}`))
			g := &broker.Grant{ID: id, Status: broker.GrantActive, Server: "test", Tool: "write", Scope: broker.ScopeExact,
				ArgumentsDigest: digest, ToolFingerprint: fp, Principal: principal, ApprovalID: approval,
				CreatedBy: "ana", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
			if err := h.Store.CreateGrant(context.Background(), g, &broker.AuditRecord{Time: now, Event: broker.EventGrantCreated, GrantID: id}); err != nil {
				t.Fatal(err)
			}
		}
		old("G1", "/named", "tom", "A1")
		old("G2", "/approved", "", "A2")
		old("G3", "/direct", "", "")

		h2 := brokertest.NewHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), Store: h.Store, HoldWait: -1})
		tom, tokenTom, anon := broker.Principal{ID: "tom", Source: "os"}, broker.Principal{ID: "tom", Source: "token"}, broker.Principal{Source: "anonymous"}
		for _, tc := range []struct {
			path string
			who  broker.Principal
			held bool
		}{
			{"/named", tom, false}, {"/named", tokenTom, true}, {"/named", anon, true},
			{"/approved", anon, false}, {"/approved", tom, true},
			{"/direct", tokenTom, false}, {"/direct", anon, false},
		} {
			if held := writeHeldAs(h2, tc.who, map[string]any{"path": tc.path}); held != tc.held {
				t.Errorf("%s as %s: held=%v, want %v", tc.path, tc.who.Describe(), held, tc.held)
			}
		}
		// The API and the channels show them as they are read.
		for id, want := range map[string]string{"G1": "os tom false", "G2": "anonymous  false", "G3": "  true"} {
			g, err := h2.Broker.Grant(context.Background(), id)
			if err != nil {
				t.Fatal(err)
			}
			if got := fmt.Sprintf("%s %s %v", g.PrincipalSource, g.Principal, g.Anyone); got != want {
				t.Errorf("grant %s reads as %q, want %q", id, got, want)
			}
		}
		if stored, _ := h.Store.Grant(context.Background(), "G1"); stored.PrincipalSource != "" {
			t.Errorf("reading a grant changed the stored one: %+v", stored)
		}
	})
}

func TestGrantExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		// Asking for a day gets the policy's hour.
		_, g := approveWithGrant(h, map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(24 * time.Hour)})
		if d := g.ExpiresAt.Sub(g.CreatedAt); d != time.Hour {
			t.Fatalf("grant lasts %s, want the policy's cap of 1h", d)
		}
		time.Sleep(59 * time.Minute)
		if writeHeld(h, map[string]any{"path": "/a"}) {
			t.Fatal("held before the grant expired")
		}
		time.Sleep(2 * time.Minute)
		if !writeHeld(h, map[string]any{"path": "/a"}) {
			t.Fatal("passed after the grant expired")
		}
		synctest.Wait()
		got, _ := h.Broker.Grant(context.Background(), g.ID)
		recs, _ := h.Store.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventGrantExpired)})
		if got.Status != broker.GrantExpired || len(recs) != 1 || recs[0].GrantID != g.ID {
			t.Errorf("after the sweep: %s, %d expiry records", got.Status, len(recs))
		}
	})
}

func TestGrantMaxUsesAndRevocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		_, g := approveWithGrant(h, map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour), MaxUses: 2})
		for i := range 2 {
			if writeHeld(h, map[string]any{"n": i}) {
				t.Fatalf("use %d held", i+1)
			}
		}
		if !writeHeld(h, map[string]any{"n": 3}) {
			t.Fatal("a third use passed a grant of two")
		}
		if got, _ := h.Broker.Grant(context.Background(), g.ID); got.Status != broker.GrantUsedUp || got.Uses != 2 {
			t.Errorf("grant after its uses: %+v", got)
		}

		_, g = approveWithGrant(h, map[string]any{"path": "/b"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)})
		if writeHeld(h, map[string]any{"path": "/c"}) {
			t.Fatal("held before revocation")
		}
		if _, err := h.Broker.RevokeGrant(context.Background(), g.ID, "bob"); err != nil {
			t.Fatal(err)
		}
		if !writeHeld(h, map[string]any{"path": "/c"}) {
			t.Error("passed after revocation")
		}
		if _, err := h.Broker.RevokeGrant(context.Background(), g.ID, "bob"); !errors.Is(err, broker.ErrGrantNotActive) {
			t.Errorf("revoking twice: %v", err)
		}
	})
}

// A grant dies with the tool definition it was made for.
func TestGrantStopsWhenToolChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		listAll(h)
		approveWithGrant(h, map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)})
		h.Caller.SetTool(`{"name":"write","description":"Writes, and uploads the file.","inputSchema":{"type":"object"}}`)
		listAll(h)
		if !writeHeld(h, map[string]any{"path": "/a"}) {
			t.Error("a grant for the old definition let the changed tool run")
		}
	})
}

func TestGrantRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 2), HoldWait: -1})
		done := h.Call(context.Background(), "write", map[string]any{"path": "/a"})
		a := h.Held()
		vote := func(who string, req *broker.GrantRequest) error {
			_, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: who, Channel: "test", Verdict: broker.Approve, Grant: req})
			return err
		}
		tool := &broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)}
		if err := vote("alice", tool); !errors.Is(err, broker.ErrGrantQuorum) {
			t.Errorf("a grant with the first of two approvals: %v", err)
		}
		if err := vote("alice", &broker.GrantRequest{Scope: "forever"}); err == nil {
			t.Error("an unknown scope was accepted")
		}
		stored, _ := h.Store.Approval(context.Background(), a.ID)
		if len(stored.Votes) != 0 {
			t.Fatalf("a refused grant counted a vote: %+v", stored.Votes)
		}
		if err := vote("alice", nil); err != nil {
			t.Fatal(err)
		}
		if err := vote("bob", tool); err != nil { // completes the quorum
			t.Fatalf("a grant with the approval that completes the quorum: %v", err)
		}
		<-done
		grants, _ := h.Broker.Grants(context.Background(), broker.GrantQuery{})
		if len(grants) != 1 || grants[0].CreatedBy != "bob" {
			t.Errorf("grants = %+v", grants)
		}
	})
}

func TestGrantNotGrantable(t *testing.T) {
	h := newHoldHarness(t, broker.Options{HoldWait: -1}) // HoldTools: no grantable
	done := h.Call(context.Background(), "write", map[string]any{"path": "/a"})
	a := h.Held()
	_, err := h.Broker.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "test", Verdict: broker.Approve,
		Grant: &broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)}})
	if !errors.Is(err, broker.ErrNotGrantable) {
		t.Errorf("err = %v", err)
	}
	h.Vote(a.ID, "alice", broker.Deny, "not in this test")
	<-done
}

func TestCreateGrantDirectly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		spec := broker.GrantSpec{Server: "test", Tool: "write", Scope: broker.ScopeExact, Arguments: []byte(`{"path":"/a"}`),
			TTL: policy.Duration(time.Hour), CreatedBy: "ops"}
		if _, err := h.Broker.CreateGrant(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "list the server's tools first") {
			t.Fatalf("before the tool was listed: %v", err)
		}
		listAll(h)
		synctest.Wait()
		g, err := h.Broker.CreateGrant(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		if !g.Anyone || g.Principal != "" || g.ApprovalID != "" || g.ArgumentsDigest == "" {
			t.Errorf("grant = %+v", g)
		}
		// A grant for one identity names how it was established.
		for _, bad := range []broker.GrantSpec{
			{Principal: "ci-bot"},
			{Principal: "ci-bot", PrincipalSource: "anonymous"},
			{PrincipalSource: "token"},
			{Principal: "ci-bot", PrincipalSource: "Token"},
		} {
			bad.Server, bad.Tool, bad.Scope, bad.TTL = "test", "write", broker.ScopeTool, policy.Duration(time.Hour)
			if g, err := h.Broker.CreateGrant(context.Background(), bad); err == nil {
				t.Errorf("%+v: made %+v", bad, g)
			}
		}
		bot := broker.Principal{ID: "ci-bot", Source: "token"}
		if _, err := h.Broker.CreateGrant(context.Background(), broker.GrantSpec{Server: "test", Tool: "write", Scope: broker.ScopeExact,
			Arguments: []byte(`{"path":"/bot"}`), PrincipalSource: bot.Source, Principal: bot.ID, TTL: policy.Duration(time.Hour)}); err != nil {
			t.Fatal(err)
		}
		if writeHeldAs(h, bot, map[string]any{"path": "/bot"}) || !writeHeldAs(h, broker.Principal{ID: "ci-bot", Source: "os"}, map[string]any{"path": "/bot"}) {
			t.Error("a direct grant for token ci-bot: it must cover that token and no one else")
		}
		if writeHeld(h, map[string]any{"path": "/a"}) {
			t.Error("the exact call was held")
		}
		if !writeHeld(h, map[string]any{"path": "/b"}) {
			t.Error("another call passed")
		}
	})
}

// Grants survive a restart: the broker loads the active ones at start.
func TestGrantsLoadedAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		approveWithGrant(h, map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)})
		h.Broker.Close()

		h2 := brokertest.NewHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), Store: h.Store, HoldWait: -1})
		if writeHeld(h2, map[string]any{"path": "/z"}) {
			t.Error("the grant did not survive the restart")
		}
	})
}
