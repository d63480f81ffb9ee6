package airlock_test

# The entry point must decide every call. These tests keep passing when
# decision points at an example or at your own policy; test the policy
# itself in its own _test.rego file.

calls := [
	{"server": {"name": "filesystem", "trust_annotations": true}, "tool": {"name": "read_file", "annotations": {"readOnlyHint": true}}},
	{"server": {"name": "github", "trust_annotations": true}, "tool": {"name": "merge_pull_request"}, "arguments": {"owner": "acme", "repo": "api", "pullNumber": 1}},
	{"server": {"name": "postgres", "trust_annotations": false}, "tool": {"name": "query", "changed": true}, "arguments": {"sql": "DROP TABLE users"}},
]

test_every_call_gets_a_decision if {
	every call in calls {
		data.airlock.decision.action in {"allow", "deny", "hold"} with input as object.union(call, {"grants": [], "time": "2026-11-20T10:00:00Z"})
	}
}
