package airlock.examples.routing_test

import data.airlock.examples.routing

call(overrides) := object.union(
	{
		"server": {"name": "staging-db", "transport": "stdio", "trust_annotations": true},
		"tool": {"name": "run_migration", "changed": false},
		"arguments": {},
		"grants": [],
		"time": "2026-11-20T10:00:00Z",
	},
	overrides,
)

destructive := {"tool": {"annotations": {"destructiveHint": true}}}

production := {"server": {"name": "prod-db"}}

valid_grant := {"grants": [{"id": "g1", "scope": "tool", "created_by": "bob", "expires_at": "2026-11-21T00:00:00Z"}]}

test_medium_risk_goes_to_team_leads if {
	d := routing.decision with input as call({})
	d.action == "hold"
	d.risk == "medium"
	d.approvers.slack_groups == ["S0TEAMLEADS"]
	d.timeout == "1h"
	d.quorum == 1
	d.grantable.max_ttl == "24h" # the rest of the baseline's hold stays
}

test_high_risk_goes_to_security if {
	d := routing.decision with input as call(destructive)
	d.risk == "high"
	d.approvers.slack_groups == ["S0SECURITY"]
	d.timeout == "15m"
}

test_changed_tool_is_routed_by_its_risk if {
	d := routing.decision with input as call({"tool": {"changed": true}})
	d.risk == "high"
	d.approvers.slack_groups == ["S0SECURITY"]
	contains(d.reason, "changed its definition")
}

test_destructive_on_production_is_critical if {
	d := routing.decision with input as call(object.union(destructive, production))
	d.action == "hold"
	d.risk == "critical"
	d.quorum == 2
	d.timeout == "5m"
	d.approvers == {"slack_groups": ["S0SECURITY"], "users": ["oncall-lead"]}
	not d.grantable
	d.reason == `"run_migration" on production server "prod-db" is annotated destructive; it needs 2 approvals, and grants do not apply.`
}

test_critical_ignores_grants if {
	d := routing.decision with input as call(object.union(object.union(destructive, production), valid_grant))
	d.action == "hold"
	not d.grant
}

test_critical_ignores_read_only_hint if {
	c := call(object.union(production, {"tool": {"annotations": {"destructiveHint": true, "readOnlyHint": true}}}))
	d := routing.decision with input as c
	d.risk == "critical"
}

test_non_destructive_on_production_follows_baseline if {
	c := call(object.union(production, {"tool": {"annotations": {"readOnlyHint": true}}}))
	d := routing.decision with input as c
	d.action == "allow"
}

test_grants_still_work_below_critical if {
	d := routing.decision with input as call(object.union(destructive, valid_grant))
	d.action == "allow"
	d.grant == "g1"
}

test_unrouted_risk_keeps_the_baseline_hold if {
	d := routing.decision with input as call({}) with routing.routes as {}
	d.action == "hold"
	not d.approvers
}
