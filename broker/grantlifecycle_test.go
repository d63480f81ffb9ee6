package broker_test

import (
	"context"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/relay/relaytest"

	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/relay/wire"
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

// write calls the write tool and reports whether it was held, approving
// nothing: a held call is denied at once so that the test goes on.
func (h *holdHarness) writeHeld(cs *mcp.ClientSession, args map[string]any) bool {
	h.t.Helper()
	out := make(chan callResult, 1)
	go func() {
		res, err := cs.CallTool(context.Background(), &mcp.CallToolParams{Name: "write", Arguments: args})
		out <- callResult{res, err}
	}()
	for {
		select {
		case r := <-out:
			if r.err != nil || r.res.IsError {
				h.t.Fatalf("write %v: %s", args, text(r))
			}
			return false
		case ev := <-h.events:
			if ev.Type != "held" {
				continue // earlier approvals' news
			}
			h.decide(ev.Approval.ID, "alice", broker.Deny, "test")
			<-out
			return true
		}
	}
}

// listAll lists every page of tools, as clients do.
func listAll(t *testing.T, cs *mcp.ClientSession) {
	for _, err := range cs.Tools(context.Background(), nil) {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// approveWithGrant holds a write and approves it with an "always allow".
func (h *holdHarness) approveWithGrant(args map[string]any, req broker.GrantRequest) (*broker.Approval, *broker.Grant) {
	h.t.Helper()
	done := h.call(context.Background(), "write", args, nil)
	a := h.held()
	a, err := h.b.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "test", Verdict: broker.Approve, Grant: &req})
	if err != nil {
		h.t.Fatalf("approve with a grant: %v", err)
	}
	if r := <-done; r.err != nil || r.res.IsError {
		h.t.Fatalf("the call that prompted the grant: %s", text(r))
	}
	g, err := h.b.Grant(context.Background(), a.GrantID)
	if err != nil {
		h.t.Fatal(err)
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
				a, g := h.approveWithGrant(map[string]any{"path": "/a", "content": "x"}, broker.GrantRequest{Scope: tc.scope, TTL: hour})
				if g.Status != broker.GrantActive || g.ApprovalID != a.ID || g.Principal != "tester" || g.CreatedBy != "alice" {
					t.Fatalf("grant = %+v", g)
				}
				for _, args := range tc.passes {
					if h.writeHeld(h.cs, args) {
						t.Errorf("%v was held despite the %s grant", args, tc.scope)
					}
				}
				for _, args := range tc.held {
					if !h.writeHeld(h.cs, args) {
						t.Errorf("%v passed on a %s grant", args, tc.scope)
					}
				}
				recs, _ := h.store.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventAllowed)})
				if len(recs) != len(tc.passes) {
					t.Fatalf("%d allowed records, want %d", len(recs), len(tc.passes))
				}
				want := "allowed by grant " + g.ID + " (made by alice on approval " + a.ID + ")"
				if recs[0].GrantID != g.ID || recs[0].Reason != want {
					t.Errorf("audit = %+v, want reason %q", recs[0], want)
				}
				got, _ := h.b.Grant(context.Background(), g.ID)
				if got.Uses != len(tc.passes) {
					t.Errorf("uses = %d, want %d", got.Uses, len(tc.passes))
				}
			})
		})
	}
}

// connectAs connects another stdio client to the harness's broker under
// principal p.
func (h *holdHarness) connectAs(p string) *mcp.ClientSession {
	cr, bw := io.Pipe()
	br, cw := io.Pipe()
	ctx, cancel := context.WithCancel(context.Background())
	go h.b.ServeConn(ctx, "test", wire.NewLineConn(br, bw, br, 0), broker.Principal{ID: p, Source: "token"})
	cs, err := relaytest.NewClient(relaytest.NewEvents()).Connect(context.Background(), &mcp.IOTransport{Reader: cr, Writer: cw}, nil)
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { cs.Close(); cw.Close(); cancel() })
	return cs
}

func TestGrantPrincipals(t *testing.T) {
	for _, anyone := range []bool{false, true} {
		synctest.Test(t, func(t *testing.T) {
			h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
			h.approveWithGrant(map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour), Anyone: anyone})
			other := h.connectAs("mallory")
			if held := h.writeHeld(other, map[string]any{"path": "/a"}); held == anyone {
				t.Errorf("anyone=%v: another principal's call held=%v", anyone, held)
			}
		})
	}
}

func TestGrantExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		// Asking for a day gets the policy's hour.
		_, g := h.approveWithGrant(map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(24 * time.Hour)})
		if d := g.ExpiresAt.Sub(g.CreatedAt); d != time.Hour {
			t.Fatalf("grant lasts %s, want the policy's cap of 1h", d)
		}
		time.Sleep(59 * time.Minute)
		if h.writeHeld(h.cs, map[string]any{"path": "/a"}) {
			t.Fatal("held before the grant expired")
		}
		time.Sleep(2 * time.Minute)
		if !h.writeHeld(h.cs, map[string]any{"path": "/a"}) {
			t.Fatal("passed after the grant expired")
		}
		synctest.Wait()
		got, _ := h.b.Grant(context.Background(), g.ID)
		recs, _ := h.store.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventGrantExpired)})
		if got.Status != broker.GrantExpired || len(recs) != 1 || recs[0].GrantID != g.ID {
			t.Errorf("after the sweep: %s, %d expiry records", got.Status, len(recs))
		}
	})
}

func TestGrantMaxUsesAndRevocation(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		_, g := h.approveWithGrant(map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour), MaxUses: 2})
		for i := range 2 {
			if h.writeHeld(h.cs, map[string]any{"n": i}) {
				t.Fatalf("use %d held", i+1)
			}
		}
		if !h.writeHeld(h.cs, map[string]any{"n": 3}) {
			t.Fatal("a third use passed a grant of two")
		}
		if got, _ := h.b.Grant(context.Background(), g.ID); got.Status != broker.GrantUsedUp || got.Uses != 2 {
			t.Errorf("grant after its uses: %+v", got)
		}

		_, g = h.approveWithGrant(map[string]any{"path": "/b"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)})
		if h.writeHeld(h.cs, map[string]any{"path": "/c"}) {
			t.Fatal("held before revocation")
		}
		if _, err := h.b.RevokeGrant(context.Background(), g.ID, "bob"); err != nil {
			t.Fatal(err)
		}
		if !h.writeHeld(h.cs, map[string]any{"path": "/c"}) {
			t.Error("passed after revocation")
		}
		if _, err := h.b.RevokeGrant(context.Background(), g.ID, "bob"); !errors.Is(err, broker.ErrGrantNotActive) {
			t.Errorf("revoking twice: %v", err)
		}
	})
}

// A grant dies with the tool definition it was made for.
func TestGrantStopsWhenToolChanges(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		if _, err := h.cs.ListTools(context.Background(), nil); err != nil {
			t.Fatal(err)
		}
		h.approveWithGrant(map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)})
		h.srv.AddTool(&mcp.Tool{Name: "write", Description: "Writes, and uploads the file.", InputSchema: map[string]any{"type": "object"}},
			func(context.Context, *mcp.CallToolRequest) (*mcp.CallToolResult, error) {
				return &mcp.CallToolResult{}, nil
			})
		time.Sleep(time.Second) // the SDK debounces list_changed
		synctest.Wait()
		if !h.writeHeld(h.cs, map[string]any{"path": "/a"}) {
			t.Error("a grant for the old definition let the changed tool run")
		}
	})
}

func TestGrantRefusals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 2), HoldWait: -1})
		done := h.call(context.Background(), "write", map[string]any{"path": "/a"}, nil)
		a := h.held()
		vote := func(who string, req *broker.GrantRequest) error {
			_, err := h.b.Vote(context.Background(), a.ID, broker.Vote{Approver: who, Channel: "test", Verdict: broker.Approve, Grant: req})
			return err
		}
		tool := &broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)}
		if err := vote("alice", tool); !errors.Is(err, broker.ErrGrantQuorum) {
			t.Errorf("a grant with the first of two approvals: %v", err)
		}
		if err := vote("alice", &broker.GrantRequest{Scope: "forever"}); err == nil {
			t.Error("an unknown scope was accepted")
		}
		stored, _ := h.store.Approval(context.Background(), a.ID)
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
		grants, _ := h.b.Grants(context.Background(), broker.GrantQuery{})
		if len(grants) != 1 || grants[0].CreatedBy != "bob" {
			t.Errorf("grants = %+v", grants)
		}
	})
}

func TestGrantNotGrantable(t *testing.T) {
	h := newHoldHarness(t, broker.Options{HoldWait: -1}) // HoldTools: no grantable
	done := h.call(context.Background(), "write", map[string]any{"path": "/a"}, nil)
	a := h.held()
	_, err := h.b.Vote(context.Background(), a.ID, broker.Vote{Approver: "alice", Channel: "test", Verdict: broker.Approve,
		Grant: &broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)}})
	if !errors.Is(err, broker.ErrNotGrantable) {
		t.Errorf("err = %v", err)
	}
	h.decide(a.ID, "alice", broker.Deny, "")
	<-done
}

func TestCreateGrantDirectly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		spec := broker.GrantSpec{Server: "test", Tool: "write", Scope: broker.ScopeExact, Arguments: []byte(`{"path":"/a"}`),
			TTL: policy.Duration(time.Hour), CreatedBy: "ops"}
		if _, err := h.b.CreateGrant(context.Background(), spec); err == nil || !strings.Contains(err.Error(), "list the server's tools first") {
			t.Fatalf("before the tool was listed: %v", err)
		}
		listAll(t, h.cs)
		synctest.Wait()
		g, err := h.b.CreateGrant(context.Background(), spec)
		if err != nil {
			t.Fatal(err)
		}
		if g.Principal != "" || g.ApprovalID != "" || g.ArgumentsDigest == "" {
			t.Errorf("grant = %+v", g)
		}
		if h.writeHeld(h.cs, map[string]any{"path": "/a"}) {
			t.Error("the exact call was held")
		}
		if !h.writeHeld(h.cs, map[string]any{"path": "/b"}) {
			t.Error("another call passed")
		}
	})
}

// Grants survive a restart: the broker loads the active ones at start.
func TestGrantsLoadedAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		h.approveWithGrant(map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(time.Hour)})
		h.b.Close()

		srv := relaytest.NewServer()
		b := relaytest.New(t, broker.Options{Policy: grantPolicy(time.Hour, 1), Store: h.store, HoldWait: -1}, srv.Upstream("test"))
		if err := b.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		h2 := &holdHarness{t: t, srv: srv, store: h.store, b: b}
		var stop func()
		h2.events, stop = b.Subscribe()
		t.Cleanup(stop)
		h2.cs = relaytest.StdioClient(t, b, relaytest.NewClient(relaytest.NewEvents()))
		if h2.writeHeld(h2.cs, map[string]any{"path": "/z"}) {
			t.Error("the grant did not survive the restart")
		}
	})
}
