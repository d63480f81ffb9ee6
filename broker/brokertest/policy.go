package brokertest

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/airlock-mcp/airlock/policy"
)

// PolicyFunc is a broker.Policy that decides with a Go function, for tests
// that are about the broker rather than about Rego. It stamps each
// decision with an id and the revision "test".
type PolicyFunc func(in *policy.Input) policy.Decision

var decisions atomic.Int64

func (f PolicyFunc) Decide(_ context.Context, in *policy.Input) policy.Decision {
	d := f(in)
	d.ID = fmt.Sprintf("test-decision-%d", decisions.Add(1))
	d.Revision = "test"
	return d
}

// AllowAll allows every call.
func AllowAll() PolicyFunc {
	return func(*policy.Input) policy.Decision {
		return policy.Decision{Action: policy.Allow, Reason: "tests allow everything"}
	}
}

// HoldTools holds calls to the named tools and allows the rest.
func HoldTools(quorum int, tools ...string) PolicyFunc {
	return func(in *policy.Input) policy.Decision {
		for _, t := range tools {
			if in.Tool.Name == t {
				return policy.Decision{Action: policy.Hold, Reason: "tests hold " + t, Risk: policy.RiskHigh, Quorum: quorum}
			}
		}
		return policy.Decision{Action: policy.Allow, Reason: "not held in this test"}
	}
}
