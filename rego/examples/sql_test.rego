package airlock.examples.sql_test

import data.airlock.examples.sql

call(tool, arguments) := {
	"server": {"name": "postgres", "transport": "stdio", "trust_annotations": true},
	"tool": {"name": tool, "changed": false},
	"arguments": arguments,
	"grants": [],
	"time": "2026-11-20T10:00:00Z",
}

test_selects_are_allowed if {
	every q in [
		"SELECT * FROM users WHERE id = 1",
		"  select count(*)\nfrom orders;  ",
	] {
		d := sql.decision with input as call("query", {"sql": q})
		d.action == "allow"
	}
}

test_query_argument_is_checked_too if {
	d := sql.decision with input as call("read_query", {"query": "select 1 "})
	d.action == "allow"
}

test_anything_but_a_select_is_held if {
	every q in [
		"INSERT INTO users VALUES (1)",
		"UPDATE users SET admin = true",
		"WITH x AS (DELETE FROM users RETURNING *) SELECT * FROM x",
		"EXPLAIN ANALYZE DELETE FROM users",
		"select 1; drop table users",
		"SELECT * INTO backup FROM users",
		"select * from jobs for update",
		"selectx from t",
		"select note from t where note = 'into the night'", # a text check errs towards holding
	] {
		d := sql.decision with input as call("query", {"sql": q})
		d.action == "hold"
	}
}

test_destructive_statements_are_high_risk if {
	d := sql.decision with input as call("query", {"sql": "DROP TABLE users"})
	d.action == "hold"
	d.risk == "high"
	contains(d.reason, "may drop, truncate, delete")
	d.grantable.scopes == ["exact"]
}

test_other_statements_are_medium_risk if {
	d := sql.decision with input as call("write_query", {"query": "INSERT INTO t VALUES (1)"})
	d.risk == "medium"
	d.reason == "Only a single SELECT runs without approval; this statement waits for a person."
}

test_both_arguments_must_be_selects if {
	d := sql.decision with input as call("query", {"sql": "select 1", "query": "delete from t"})
	d.action == "hold"
	d.risk == "high"
}

test_non_string_sql_is_held if {
	d := sql.decision with input as call("query", {"sql": ["select 1"]})
	d.action == "hold"
}

test_tools_without_sql_fall_back_to_baseline if {
	d := sql.decision with input as call("list_tables", {})
	contains(d.reason, "not annotated read-only")
}

test_changed_tool_falls_back_to_baseline if {
	c := object.union(call("query", {"sql": "select 1"}), {"tool": {"changed": true}})
	d := sql.decision with input as c
	contains(d.reason, "changed its definition")
}

test_other_servers_fall_back_to_baseline if {
	c := object.union(call("query", {"sql": "select 1"}), {"server": {"name": "mysql"}})
	d := sql.decision with input as c
	d.action == "hold"
}
