# Example: route held calls to different approvers by risk.
#
# The baseline decides whether a call is held; this policy decides who is
# asked, how many must agree and how long the call waits. A destructive tool
# on a production server becomes critical: two approvals, a short timeout,
# and no grant or annotation can let it through without a person.
#
# To adopt it, see "Adopting an example" in docs/policy.md, then edit the
# settings below.
package airlock.examples.routing

import data.airlock.baseline

# --- settings -----------------------------------------------------------------

# Who approves by risk. Each entry is merged into the held decision, so it
# may set approvers, quorum and timeout. Slack user group IDs look like
# S0123ABCD; users are Airlock user names for the web UI.
routes := {
	"medium": {"approvers": {"slack_groups": ["S0TEAMLEADS"]}, "timeout": "1h"},
	"high": {"approvers": {"slack_groups": ["S0SECURITY"]}, "timeout": "15m"},
	"critical": {
		"approvers": {"slack_groups": ["S0SECURITY"], "users": ["oncall-lead"]},
		"quorum": 2,
		"timeout": "5m",
	},
}

# Servers that reach production, by their names in Airlock's config.
production_servers := {"prod-db", "prod-k8s"}

# --- decision -----------------------------------------------------------------

decision := critical_hold if {
	critical
} else := object.union(baseline.decision, routes[baseline.decision.risk]) if {
	baseline.decision.action == "hold"
} else := baseline.decision

critical if {
	input.server.name in production_servers
	baseline.risk == "high"
}

# Built from scratch rather than from the baseline's decision, so that no
# grant, read-only hint or grantable setting can carry over.
critical_hold := object.union(routes.critical, {
	"action": "hold",
	"risk": "critical",
	"reason": sprintf(
		"%q on production server %q is annotated destructive; it needs %d approvals, and grants do not apply.",
		[input.tool.name, input.server.name, routes.critical.quorum],
	),
})
