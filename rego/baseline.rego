# The baseline policy: what Airlock does before anyone writes a rule.
#
# Airlock guards against the agent (a model that may be confused or
# prompt-injected) misusing a server the operator chose. Tool annotations
# (readOnlyHint, destructiveHint) come from that server: they are hints, not
# truth, but the operator chose the server, so by default we believe a tool
# that says it only reads. Config can withdraw that trust per server
# (trust_annotations: false).
#
# The rules, in order of precedence:
#   0. with the setting deny_anonymous, a caller without an identity is
#      refused (off by default);
#   1. a tool whose definition changed since Airlock first saw it is held,
#      and no grant applies (a server must not swap a tool under us);
#   2. a tool annotated read-only is allowed;
#   3. a call covered by a valid grant is allowed, unless its risk is critical;
#   4. everything else is held until a person approves it.
package airlock.baseline

# How long a held call waits for a person before it expires.
hold_timeout := "10m"

# The longest "always allow" an approver may give from a held call.
grant_max_ttl := "24h"

# Whether a caller without an identity (principal.source "anonymous": the
# door let it in with auth: {anonymous: true}, or on loopback with no auth)
# is refused. Off by default, so that loopback use keeps working. Turn it on
# in a data file of the policy directory, such as settings.json:
#
#     {"settings": {"baseline": {"deny_anonymous": true}}}
#
# Any value but false turns it on: a mistyped setting refuses, not allows.
default deny_anonymous := false

deny_anonymous := data.settings.baseline.deny_anonymous

# decision is what data.airlock.decision returns by default. `else` makes the
# precedence explicit: the first branch whose condition holds wins.
decision := deny_anonymous_caller if {
	refuse_anonymous
} else := hold_changed if {
	input.tool.changed
} else := allow_read_only if {
	read_only
} else := allow_granted if {
	count(valid_grant_ids) > 0
	risk != "critical"
} else := hold_for_approval

# --- who asks -----------------------------------------------------------------

# A caller is identified when the door established who it is: an agent
# token, an OAuth access token, or the OS user of a stdio client. Anything
# else, an unknown source included, counts as anonymous.
identified if {
	input.principal.source in {"token", "oauth", "os"}
	input.principal.id != ""
}

refuse_anonymous if {
	deny_anonymous
	not identified
}

# --- risk ---------------------------------------------------------------------

# A tool that says it is destructive is high risk even when the server is not
# trusted: a hint that asks for more caution is safe to believe from anyone.
# No annotation at all is medium: most servers do not annotate.
risk := "high" if {
	input.tool.annotations.destructiveHint == true
} else := "medium"

# Believing readOnlyHint lets a call through without a person, so it needs a
# trusted server.
read_only if {
	input.server.trust_annotations == true
	input.tool.annotations.readOnlyHint == true
}

# --- grants -------------------------------------------------------------------

# The broker passes only grants it already matched to this call (server, tool,
# and the exact arguments or key arguments for those scopes). Here we check
# the grant is still valid at the time of the call.
valid_grant_ids contains grant.id if {
	some grant in input.grants
	time.parse_rfc3339_ns(grant.expires_at) > now
}

now := time.parse_rfc3339_ns(input.time)

# When several grants match, the audit names the same one every time.
grant_id := min(valid_grant_ids)

grant := [g | some g in input.grants; g.id == grant_id][0]

# --- decisions ----------------------------------------------------------------

deny_anonymous_caller := {
	"action": "deny",
	"risk": "high",
	"reason": sprintf(
		"Airlock refuses %q on server %q: the call comes without an identity, and this policy refuses anonymous callers (deny_anonymous). Connect with an agent token or an OAuth access token.",
		[input.tool.name, input.server.name],
	),
}

hold_changed := {
	"action": "hold",
	"risk": "high",
	"reason": sprintf(
		"The tool %q on server %q changed its definition since Airlock first saw it; a person must review it before it runs, and earlier grants do not apply.",
		[input.tool.name, input.server.name],
	),
	"quorum": 1,
	"timeout": hold_timeout,
}

allow_read_only := {
	"action": "allow",
	"risk": "low",
	"reason": sprintf("%q on server %q is annotated read-only.", [input.tool.name, input.server.name]),
}

allow_granted := {
	"action": "allow",
	"risk": risk,
	"reason": sprintf("Allowed by grant %s from %s.", [grant.id, grant.created_by]),
	"grant": grant.id,
}

hold_for_approval := {
	"action": "hold",
	"risk": risk,
	"reason": hold_reason,
	"quorum": 1,
	"timeout": hold_timeout,
	# An "arguments" grant needs to know which arguments matter (a repo, a
	# path), which only a policy for a particular server does: see the
	# filesystem example. The baseline offers the same call again (exact)
	# or the whole tool.
	"grantable": {"scopes": ["exact", "tool"], "max_ttl": grant_max_ttl},
}

hold_reason := sprintf("%q on server %q %s; it waits for a person to approve it.", [input.tool.name, input.server.name, why_held])

why_held := "is annotated destructive" if {
	risk == "high"
} else := "says it only reads, but this server's annotations are not trusted (trust_annotations: false)" if {
	input.tool.annotations.readOnlyHint == true
} else := "is not annotated read-only"
