package airlock.examples.filesystem_test

import data.airlock.examples.filesystem

call(tool, arguments) := {
	"server": {"name": "filesystem", "transport": "stdio", "trust_annotations": true},
	"tool": {"name": tool, "changed": false},
	"arguments": arguments,
	"grants": [],
	"time": "2026-11-20T10:00:00Z",
}

test_read_inside_roots_is_allowed if {
	d := filesystem.decision with input as call("read_text_file", {"path": "/srv/data/notes.md"})
	d.action == "allow"
	d.reason == "read_text_file only reads inside /srv/data."
}

test_read_of_the_root_itself_is_allowed if {
	d := filesystem.decision with input as call("list_directory", {"path": "/srv/data"})
	d.action == "allow"
}

test_read_multiple_files_checks_every_path if {
	d := filesystem.decision with input as call("read_multiple_files", {"paths": ["/srv/data/a", "/etc/shadow"]})
	d.action == "deny"
	d.reason == `read_multiple_files refused: /etc/shadow is outside the allowed directories (/srv/data), or uses "..". Use an absolute path inside them.`
}

test_traversal_is_denied if {
	d := filesystem.decision with input as call("read_file", {"path": "/srv/data/../../etc/passwd"})
	d.action == "deny"
	contains(d.reason, "/srv/data/../../etc/passwd is outside")
}

test_sibling_with_common_prefix_is_denied if {
	d := filesystem.decision with input as call("read_file", {"path": "/srv/database/secrets"})
	d.action == "deny"
}

test_relative_and_home_paths_are_denied if {
	every path in ["notes.md", "~/notes.md", "./notes.md"] {
		d := filesystem.decision with input as call("read_file", {"path": path})
		d.action == "deny"
	}
}

test_non_string_path_is_denied if {
	d := filesystem.decision with input as call("read_file", {"path": 42})
	d.action == "deny"
	contains(d.reason, "42 is outside")
}

test_two_escaping_paths_are_both_named if {
	d := filesystem.decision with input as call("move_file", {"source": "/etc/a", "destination": "/etc/b"})
	d.action == "deny"
	contains(d.reason, "/etc/a, /etc/b are outside")
}

test_write_in_scratch_is_allowed if {
	d := filesystem.decision with input as call("write_file", {"path": "/srv/data/tmp/out.txt", "content": "x"})
	d.action == "allow"
	d.reason == "write_file writes only inside the scratch directory /srv/data/tmp."
}

test_move_within_scratch_is_allowed if {
	d := filesystem.decision with input as call("move_file", {"source": "/srv/data/tmp/a", "destination": "/srv/data/tmp/b"})
	d.action == "allow"
}

test_write_outside_scratch_is_held if {
	d := filesystem.decision with input as call("write_file", {"path": "/srv/data/report.txt", "content": "x"})
	d.action == "hold"
	d.risk == "high"
	d.grantable.key_arguments == ["path"]
	d.reason == "write_file writes outside the scratch directory /srv/data/tmp (/srv/data/report.txt); it waits for a person to approve it."
}

test_move_out_of_scratch_is_held if {
	d := filesystem.decision with input as call("move_file", {"source": "/srv/data/tmp/a", "destination": "/srv/data/a"})
	d.action == "hold"
}

test_changed_tool_falls_back_to_baseline if {
	c := object.union(call("read_file", {"path": "/srv/data/a"}), {"tool": {"changed": true}})
	d := filesystem.decision with input as c
	d.action == "hold"
	contains(d.reason, "changed its definition")
}

test_escape_is_denied_even_when_tool_changed if {
	c := object.union(call("read_file", {"path": "/etc/passwd"}), {"tool": {"changed": true}})
	d := filesystem.decision with input as c
	d.action == "deny"
}

test_unknown_tool_falls_back_to_baseline if {
	d := filesystem.decision with input as call("chmod", {"path": "/srv/data/a"})
	d == data.airlock.baseline.decision with input as call("chmod", {"path": "/srv/data/a"})
}

test_other_servers_fall_back_to_baseline if {
	c := object.union(call("read_file", {"path": "/etc/passwd"}), {"server": {"name": "other"}})
	d := filesystem.decision with input as c
	d.action == "hold"
}

test_settings_can_be_changed if {
	d := filesystem.decision with input as call("write_file", {"path": "/home/me/out/x"})
		with filesystem.roots as ["/home/me"]
		with filesystem.scratch as "/home/me/out/"
	d.action == "allow"
}

settings := {"server": "sandbox", "roots": ["/tmp/demo"], "scratch": "/tmp/demo/scratch"}

test_settings_can_come_from_data if {
	c := object.union(call("write_file", {"path": "/tmp/demo/scratch/x"}), {"server": {"name": "sandbox"}})
	d := filesystem.decision with input as c with data.settings.filesystem as settings
	d.action == "allow"
	d.reason == "write_file writes only inside the scratch directory /tmp/demo/scratch."
}

test_settings_from_data_replace_the_defaults if {
	c := object.union(call("read_text_file", {"path": "/srv/data/notes.md"}), {"server": {"name": "sandbox"}})
	d := filesystem.decision with input as c with data.settings.filesystem as settings
	d.action == "deny"
	contains(d.reason, "outside the allowed directories (/tmp/demo)")
}

test_settings_left_out_of_data_keep_their_defaults if {
	d := filesystem.decision with input as call("read_text_file", {"path": "/tmp/demo/a"})
		with data.settings.filesystem as {"roots": ["/tmp/demo"]}
	d.action == "allow"
	filesystem.scratch == "/srv/data/tmp" with data.settings.filesystem as {"roots": ["/tmp/demo"]}
}
