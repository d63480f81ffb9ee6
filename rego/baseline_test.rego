package airlock.baseline_test

import data.airlock.baseline

# call builds an input like the broker's. Tests override what they care about
# with object.union, so each test says only what makes it different.
call(overrides) := object.union(
	{
		"server": {"name": "filesystem", "transport": "stdio", "trust_annotations": true},
		"tool": {
			"name": "write_file",
			"description": "Write a file",
			"fingerprint": "sha256:00",
			"first_seen": "2026-11-01T00:00:00Z",
			"changed": false,
		},
		"arguments": {"path": "/srv/data/report.txt", "content": "hello"},
		"arguments_digest": "sha256:11",
		"principal": {"id": "alice", "source": "os", "client": {"name": "claude-code", "version": "2.1"}},
		"session": {"id": "s1"},
		"grants": [],
		"time": "2026-11-20T10:00:00Z",
	},
	overrides,
)

read_only := {"tool": {"name": "read_file", "annotations": {"readOnlyHint": true}}}

destructive := {"tool": {"annotations": {"destructiveHint": true}}}

grant(id, expires_at) := {"id": id, "scope": "tool", "created_by": "bob", "expires_at": expires_at}

test_read_only_tool_is_allowed if {
	d := baseline.decision with input as call(read_only)
	d.action == "allow"
	d.risk == "low"
	d.reason == `"read_file" on server "filesystem" is annotated read-only.`
}

test_read_only_hint_ignored_when_server_untrusted if {
	d := baseline.decision with input as call(object.union(read_only, {"server": {"trust_annotations": false}}))
	d.action == "hold"
	d.risk == "medium"
	contains(d.reason, "annotations are not trusted")
}

test_read_only_hint_must_be_true if {
	d := baseline.decision with input as call({"tool": {"annotations": {"readOnlyHint": "yes"}}})
	d.action == "hold"
}

test_unannotated_tool_is_held_at_medium_risk if {
	d := baseline.decision with input as call({})
	d.action == "hold"
	d.risk == "medium"
	d.quorum == 1
	d.timeout == "10m"
	d.grantable == {"scopes": ["exact", "tool"], "max_ttl": "24h"}
	d.reason == `"write_file" on server "filesystem" is not annotated read-only; it waits for a person to approve it.`
}

test_destructive_tool_is_held_at_high_risk if {
	d := baseline.decision with input as call(destructive)
	d.action == "hold"
	d.risk == "high"
	contains(d.reason, "annotated destructive")
}

test_destructive_hint_counts_even_when_untrusted if {
	d := baseline.decision with input as call(object.union(destructive, {"server": {"trust_annotations": false}}))
	d.risk == "high"
}

test_changed_tool_is_held_even_when_read_only if {
	d := baseline.decision with input as call(object.union(read_only, {"tool": {"changed": true}}))
	d.action == "hold"
	d.risk == "high"
	not d.grantable
	contains(d.reason, "changed its definition")
}

test_changed_tool_ignores_grants if {
	d := baseline.decision with input as call({
		"tool": {"changed": true},
		"grants": [grant("g1", "2026-11-21T00:00:00Z")],
	})
	d.action == "hold"
	not d.grant
}

test_valid_grant_allows if {
	d := baseline.decision with input as call({"grants": [grant("g1", "2026-11-21T00:00:00Z")]})
	d.action == "allow"
	d.grant == "g1"
	d.risk == "medium"
	d.reason == "Allowed by grant g1 from bob."
}

test_grant_keeps_the_risk if {
	d := baseline.decision with input as call(object.union(destructive, {"grants": [grant("g1", "2026-11-21T00:00:00Z")]}))
	d.action == "allow"
	d.risk == "high"
}

test_expired_grant_is_ignored if {
	d := baseline.decision with input as call({"grants": [grant("g1", "2026-11-20T09:59:59Z")]})
	d.action == "hold"
}

test_grant_times_compare_as_instants if {
	# 11:30 in UTC+2 is 09:30 UTC, before the call at 10:00 UTC.
	d := baseline.decision with input as call({"grants": [grant("g1", "2026-11-20T11:30:00+02:00")]})
	d.action == "hold"
}

test_lowest_valid_grant_id_is_named if {
	d := baseline.decision with input as call({"grants": [
		grant("g3", "2026-11-21T00:00:00Z"),
		grant("g1", "2026-11-20T00:00:00Z"), # expired
		grant("g2", "2026-11-21T00:00:00Z"),
	]})
	d.grant == "g2"
}

test_critical_risk_ignores_grants if {
	d := baseline.decision with input as call({"grants": [grant("g1", "2026-11-21T00:00:00Z")]})
		with baseline.risk as "critical"
	d.action == "hold"
	d.risk == "critical"
}

anonymous := {"principal": {"id": "", "source": "anonymous", "groups": [], "client_id": "", "claims": {}, "client": {"name": "x", "version": "1"}}}

test_anonymous_caller_decided_as_any_other_by_default if {
	d := baseline.decision with input as call(object.union(read_only, anonymous))
	d.action == "allow"
}

test_deny_anonymous_refuses_a_caller_without_an_identity if {
	d := baseline.decision with input as call(object.union(read_only, anonymous))
		with data.settings.baseline.deny_anonymous as true
	d.action == "deny"
	contains(d.reason, "without an identity")
}

test_deny_anonymous_refuses_before_grants if {
	d := baseline.decision with input as call(object.union(anonymous, {"grants": [grant("g1", "2026-11-21T00:00:00Z")]}))
		with data.settings.baseline.deny_anonymous as true
	d.action == "deny"
	not d.grant
}

test_deny_anonymous_fails_closed_on_an_unknown_source_or_no_id if {
	every principal in [
		{"id": "ci-bot", "source": "magic"},
		{"id": "", "source": "token"},
		{"id": "", "source": "os"},
	] {
		d := baseline.decision with input as call(object.union(read_only, {"principal": principal}))
			with data.settings.baseline.deny_anonymous as true
		d.action == "deny"
	}
}

test_deny_anonymous_lets_identified_callers_through if {
	every principal in [
		{"id": "ci-bot", "source": "token", "groups": ["ci"]},
		{"id": "alice@example.com", "source": "oauth", "client_id": "claude-code"},
		{"id": "alice", "source": "os"},
	] {
		d := baseline.decision with input as call(object.union(read_only, {"principal": principal}))
			with data.settings.baseline.deny_anonymous as true
		d.action == "allow"
	}
}

test_deny_anonymous_mistyped_still_refuses if {
	d := baseline.decision with input as call(object.union(read_only, anonymous))
		with data.settings.baseline.deny_anonymous as "false"
	d.action == "deny"
}

test_deny_anonymous_false_is_off if {
	d := baseline.decision with input as call(object.union(read_only, anonymous))
		with data.settings.baseline.deny_anonymous as false
	d.action == "allow"
}
