package main

import (
	"fmt"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// grantLasts says until when a new grant lasts and, when it is shorter
// than asked for, that it was capped and by whom: an approver who asked
// for 48h must not believe they got it.
func grantLasts(g *broker.Grant) string {
	s := fmt.Sprintf("until %s", g.ExpiresAt.Local().Format(time.RFC3339))
	c := g.Capped
	if c == nil {
		return s
	}
	asked, got := broker.HumanDuration(time.Duration(c.Requested)), broker.HumanDuration(time.Duration(c.Max))
	var why string
	switch c.By {
	case broker.CapByPolicy:
		why = "the policy's max_ttl for this call"
	case broker.CapByDefault:
		why = "Airlock's cap when the policy names no max_ttl"
	case broker.CapByDirect:
		why = "the cap on grants made without an approval"
	default:
		why = "capped by " + termSafe(c.By)
	}
	return fmt.Sprintf("%s (%s, not the %s asked for: %s)", s, got, asked, why)
}
