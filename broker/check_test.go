package broker_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/policy"
)

// A tools/call whose params name the tool twice (or carry its arguments
// twice) is refused before the policy: a server whose JSON parser keeps the
// first member would run a tool the policy never judged.
func TestDuplicateParamsRefused(t *testing.T) {
	for name, params := range map[string]string{
		"name twice":      `{"name":"echo","name":"write","arguments":{"path":"/x"}}`,
		"escaped twin":    `{"name":"echo","\u006eame":"write","arguments":{"path":"/x"}}`,
		"arguments twice": `{"name":"write","arguments":{"path":"/ok"},"arguments":{"path":"/etc/x"}}`,
	} {
		t.Run(name, func(t *testing.T) {
			var decided atomic.Int64
			h := brokertest.NewHarness(t, broker.Options{Policy: brokertest.PolicyFunc(func(*policy.Input) policy.Decision {
				decided.Add(1)
				return policy.Decision{Action: policy.Allow}
			})})
			call := h.NewCall("echo", nil)
			call.Params = []byte(params)
			call.Principal = broker.Principal{ID: "ci-bot", Source: "token", Groups: []string{"ci"}}
			o := <-h.Check(context.Background(), call)
			if o.Forward || !strings.Contains(o.Malformed, "duplicate") || !strings.Contains(o.Malformed, "Airlock did not run it (ref ") {
				t.Fatalf("outcome %+v, want an invalid-params refusal naming the duplicate", o)
			}
			if n := decided.Load(); n != 0 {
				t.Errorf("the policy decided %d times", n)
			}
			recs, _ := h.Broker.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventRefused)})
			if len(recs) != 1 || !strings.Contains(recs[0].Reason, "duplicate") {
				t.Errorf("refusal audit = %+v", recs)
			} else if r := recs[0]; r.Principal != "ci-bot" || r.PrincipalSource != "token" || strings.Join(r.PrincipalGroups, ",") != "ci" {
				t.Errorf("the refusal's record does not say who asked: %+v", r)
			}
		})
	}
}

// The policy sees the whole identity the door established: groups, the
// OAuth client and the selected claims, not only the id.
func TestPolicySeesPrincipal(t *testing.T) {
	var got policy.Principal
	h := brokertest.NewHarness(t, broker.Options{Policy: brokertest.PolicyFunc(func(in *policy.Input) policy.Decision {
		got = in.Principal
		return policy.Decision{Action: policy.Allow}
	})})
	h.Principal = broker.Principal{ID: "alice@example.com", Source: "oauth", Groups: []string{"dev", "ops"},
		ClientID: "claude-code", Claims: []byte(`{"email":"alice@example.com"}`)}
	if o := <-h.Call(context.Background(), "echo", nil); !o.Forward {
		t.Fatalf("outcome %+v", o)
	}
	if got.ID != "alice@example.com" || got.Source != "oauth" || strings.Join(got.Groups, ",") != "dev,ops" ||
		got.ClientID != "claude-code" || string(got.Claims) != `{"email":"alice@example.com"}` {
		t.Errorf("the policy saw %+v", got)
	}
	recs, err := h.Broker.Audit(context.Background(), broker.AuditQuery{Event: string(broker.EventAllowed)})
	if err != nil || len(recs) != 1 {
		t.Fatalf("audit %+v, %v", recs, err)
	}
	if r := recs[0]; r.Principal != "alice@example.com" || r.PrincipalSource != "oauth" ||
		strings.Join(r.PrincipalGroups, ",") != "dev,ops" || r.ClientID != "claude-code" {
		t.Errorf("audit record %+v", r)
	}
}
