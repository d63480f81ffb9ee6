# Example: a SQL database server (Postgres, SQLite, MySQL MCP servers).
#
# A single SELECT passes; anything else waits for a person, at high risk when
# it drops, truncates, deletes or changes permissions. Tools without SQL
# (list_tables, describe_table) and other servers fall back to the baseline.
#
# This is a check of the statement's text, not a SQL parser. It errs towards
# holding (any ";" inside, SELECT ... INTO, SELECT ... FOR UPDATE), but a
# SELECT can still call a function with side effects. Give the server a
# read-only database role as well; this policy is the layer that asks a
# person before anything else runs.
#
# To adopt it, see "Adopting an example" in docs/policy.md, then edit the
# settings below.
package airlock.examples.sql

import data.airlock.baseline

# --- settings -----------------------------------------------------------------

# The server's name in Airlock's config.
server := "postgres"

# The arguments that carry SQL in common servers ("sql" for Postgres,
# "query" for SQLite and MySQL).
sql_arguments := ["sql", "query"]

# --- decision -----------------------------------------------------------------

decision := baseline.decision if {
	input.server.name != server
} else := baseline.decision if {
	# A changed tool is held by the baseline whatever it claims to do.
	input.tool.changed
} else := baseline.decision if {
	count(statements) == 0
} else := {
	"action": "allow",
	"risk": "low",
	"reason": "A single SELECT only reads.",
} if {
	every s in statements {
		plain_select(s)
	}
} else := {
	"action": "hold",
	"risk": risk,
	"reason": hold_reason,
	"quorum": 1,
	"timeout": baseline.hold_timeout,
	"grantable": {"scopes": ["exact"], "max_ttl": "1h"},
}

# --- statements ---------------------------------------------------------------

statements := [s |
	some name in sql_arguments
	s := input.arguments[name]
]

# A plain select starts with SELECT, has no ";" before its end, and neither
# writes a table (INTO) nor locks rows (FOR UPDATE/SHARE). Text is matched
# case-insensitively; a non-string is never plain.
plain_select(s) if {
	is_string(s)
	sql := lower(trim_right(trim_space(s), "; \t\r\n"))
	regex.match(`^select\s`, sql)
	not contains(sql, ";")
	not regex.match(`\binto\b`, sql)
	not regex.match(`\bfor\s+(update|share|no\s+key\s+update|key\s+share)\b`, sql)
}

hold_reason := "Only a single SELECT runs without approval. This statement may drop, truncate, delete or change permissions; it waits for a person." if {
	risk == "high"
} else := "Only a single SELECT runs without approval; this statement waits for a person."

risk := "high" if {
	some s in statements
	regex.match(`(?i)\b(drop|truncate|delete|alter|grant|revoke)\b`, sprintf("%v", [s]))
} else := "medium"
