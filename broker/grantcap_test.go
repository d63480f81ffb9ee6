package broker_test

import (
	"context"
	"testing"
	"testing/synctest"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// A grant cut short says so, with what was asked and whose cap applied,
// and the stored grant keeps it; a grant that got what it asked for says
// nothing.
func TestGrantCapIsReported(t *testing.T) {
	for name, tc := range map[string]struct {
		policyMax, asked time.Duration
		want             *broker.GrantCap
		lasts            time.Duration
	}{
		"policy cap":  {24 * time.Hour, 48 * time.Hour, &broker.GrantCap{Requested: policy.Duration(48 * time.Hour), Max: policy.Duration(24 * time.Hour), By: broker.CapByPolicy}, 24 * time.Hour},
		"default cap": {0, 90 * 24 * time.Hour, &broker.GrantCap{Requested: policy.Duration(90 * 24 * time.Hour), Max: policy.Duration(broker.DefaultGrantTTL), By: broker.CapByDefault}, broker.DefaultGrantTTL},
		"within":      {24 * time.Hour, time.Hour, nil, time.Hour},
		"exactly max": {24 * time.Hour, 24 * time.Hour, nil, 24 * time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				h := newHoldHarness(t, broker.Options{Policy: grantPolicy(tc.policyMax, 1), HoldWait: -1})
				_, g := approveWithGrant(h, map[string]any{"path": "/a"}, broker.GrantRequest{Scope: broker.ScopeTool, TTL: policy.Duration(tc.asked)})
				if d := g.ExpiresAt.Sub(g.CreatedAt); d != tc.lasts {
					t.Errorf("grant lasts %s, want %s", d, tc.lasts)
				}
				if (g.Capped == nil) != (tc.want == nil) || (g.Capped != nil && *g.Capped != *tc.want) {
					t.Errorf("Capped = %+v, want %+v", g.Capped, tc.want)
				}
			})
		})
	}
}

func TestDirectGrantCapIsReported(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHoldHarness(t, broker.Options{Policy: grantPolicy(time.Hour, 1), HoldWait: -1})
		listAll(h)
		synctest.Wait()
		g, err := h.Broker.CreateGrant(context.Background(), broker.GrantSpec{Server: "test", Tool: "write", Scope: broker.ScopeTool,
			TTL: policy.Duration(90 * 24 * time.Hour), CreatedBy: "ops"})
		if err != nil {
			t.Fatal(err)
		}
		want := broker.GrantCap{Requested: policy.Duration(90 * 24 * time.Hour), Max: policy.Duration(broker.MaxDirectGrantTTL), By: broker.CapByDirect}
		if g.Capped == nil || *g.Capped != want || g.ExpiresAt.Sub(g.CreatedAt) != broker.MaxDirectGrantTTL {
			t.Errorf("grant = %+v, capped %+v; want %+v", g, g.Capped, want)
		}
	})
}
