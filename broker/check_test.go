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
			}
		})
	}
}
