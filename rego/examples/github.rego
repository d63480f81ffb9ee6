# Example: a GitHub MCP server (github/github-mcp-server and similar).
#
# Merging a pull request, and pushing to a protected branch, wait for a
# release manager; deleting a repository is refused; pushing to any other
# branch passes, so an agent can work on its own branch freely. Everything
# else falls back to the baseline.
#
# To adopt it, see "Adopting an example" in docs/policy.md, then edit the
# settings below.
package airlock.examples.github

import data.airlock.baseline

# --- settings -----------------------------------------------------------------

# The server's name in Airlock's config.
server := "github"

# Branches that need a release manager. Patterns use glob syntax, with "/"
# as the separator, so "release/*" matches "release/1.2".
protected_branches := ["main", "master", "release/*"]

# The Slack user group whose members approve merges and protected pushes.
# Find its ID in Slack: open the group, then "Copy group ID".
release_managers := "S0RELEASEMGRS"

merge_tools := {"merge_pull_request"}

# Tools that write commits, and take the target branch in "branch".
push_tools := {"push_files", "create_or_update_file", "delete_file"}

delete_repository_tools := {"delete_repository", "delete_repo"}

# --- decision -----------------------------------------------------------------

decision := baseline.decision if {
	input.server.name != server
} else := {
	"action": "deny",
	"risk": "critical",
	"reason": sprintf("Deleting repositories is not allowed through an agent (%s). Ask a person with admin rights.", [repo]),
} if {
	input.tool.name in delete_repository_tools
} else := baseline.decision if {
	# A changed tool is held by the baseline whatever it claims to do.
	input.tool.changed
} else := release_manager_hold(sprintf(
	"Merging pull request #%v into %s needs a release manager.",
	[pull_number, repo],
)) if {
	input.tool.name in merge_tools
} else := release_manager_hold(sprintf(
	"%s writes to %s of %s; it needs a release manager.",
	[input.tool.name, target, repo],
)) if {
	input.tool.name in push_tools
	protected_target
} else := {
	"action": "allow",
	"risk": "medium",
	"reason": sprintf("%s writes to %s of %s, which is not protected.", [input.tool.name, target, repo]),
} if {
	input.tool.name in push_tools
} else := baseline.decision

release_manager_hold(reason) := {
	"action": "hold",
	"risk": "high",
	"reason": reason,
	"approvers": {"slack_groups": [release_managers]},
	"quorum": 1,
	"timeout": "30m",
	# A merge is a one-off: an approver may allow this exact call again, no more.
	"grantable": {"scopes": ["exact"], "max_ttl": "1h"},
}

# --- arguments ----------------------------------------------------------------

repo := sprintf("%v/%v", [object.get(input.arguments, "owner", "?"), object.get(input.arguments, "repo", "?")])

pull_number := object.get(input.arguments, "pullNumber", "?")

branch := object.get(input.arguments, "branch", "")

target := "the default branch" if {
	branch == ""
} else := sprintf("the branch %q", [branch])

# Without a branch the server writes to the default branch, which is
# usually protected: treat it as such.
protected_target if branch == ""

protected_target if {
	some pattern in protected_branches
	glob.match(pattern, ["/"], branch)
}
