package airlock.examples.github_test

import data.airlock.examples.github

call(tool, arguments) := {
	"server": {"name": "github", "transport": "http", "trust_annotations": true},
	"tool": {"name": tool, "changed": false},
	"arguments": arguments,
	"grants": [],
	"time": "2026-11-20T10:00:00Z",
}

test_merge_is_held_for_release_managers if {
	d := github.decision with input as call("merge_pull_request", {"owner": "acme", "repo": "api", "pullNumber": 42})
	d.action == "hold"
	d.approvers.slack_groups == ["S0RELEASEMGRS"]
	d.timeout == "30m"
	d.grantable.scopes == ["exact"]
	d.reason == "Merging pull request #42 into acme/api needs a release manager."
}

test_push_to_protected_branch_is_held if {
	d := github.decision with input as call("push_files", {"owner": "acme", "repo": "api", "branch": "main", "files": []})
	d.action == "hold"
	d.approvers.slack_groups == ["S0RELEASEMGRS"]
	d.reason == `push_files writes to the branch "main" of acme/api; it needs a release manager.`
}

test_push_to_release_branch_pattern_is_held if {
	d := github.decision with input as call("create_or_update_file", {"owner": "acme", "repo": "api", "branch": "release/1.2", "path": "x"})
	d.action == "hold"
}

test_push_without_branch_goes_to_default_and_is_held if {
	d := github.decision with input as call("delete_file", {"owner": "acme", "repo": "api", "path": "x"})
	d.action == "hold"
	contains(d.reason, "the default branch")
}

test_push_to_feature_branch_is_allowed if {
	d := github.decision with input as call("push_files", {"owner": "acme", "repo": "api", "branch": "agent/fix-123"})
	d.action == "allow"
	d.reason == `push_files writes to the branch "agent/fix-123" of acme/api, which is not protected.`
}

test_nested_name_does_not_match_single_segment_pattern if {
	d := github.decision with input as call("push_files", {"owner": "acme", "repo": "api", "branch": "release/1.2/hotfix"})
	d.action == "allow"
}

test_deleting_a_repository_is_denied if {
	d := github.decision with input as call("delete_repository", {"owner": "acme", "repo": "api"})
	d.action == "deny"
	d.reason == "Deleting repositories is not allowed through an agent (acme/api). Ask a person with admin rights."
}

test_deleting_is_denied_even_when_tool_changed if {
	c := object.union(call("delete_repo", {"owner": "acme", "repo": "api"}), {"tool": {"changed": true}})
	d := github.decision with input as c
	d.action == "deny"
}

test_changed_tool_falls_back_to_baseline if {
	c := object.union(call("push_files", {"owner": "acme", "repo": "api", "branch": "agent/x"}), {"tool": {"changed": true}})
	d := github.decision with input as c
	contains(d.reason, "changed its definition")
}

test_other_tools_fall_back_to_baseline if {
	c := object.union(call("get_issue", {"owner": "acme", "repo": "api", "issue_number": 1}), {"tool": {"annotations": {"readOnlyHint": true}}})
	d := github.decision with input as c
	d.action == "allow"
}

test_other_servers_fall_back_to_baseline if {
	c := object.union(call("delete_repository", {"owner": "acme", "repo": "api"}), {"server": {"name": "gitlab"}})
	d := github.decision with input as c
	d.action == "hold"
}
