# Example: the MCP filesystem server (@modelcontextprotocol/server-filesystem).
#
# Reads inside the roots pass, writes inside a scratch directory pass, other
# writes wait for a person, and a path that leaves the roots is refused
# outright, for example with "../" traversal. Calls to other servers, and
# tools this file does not know, fall back to the baseline.
#
# Paths are checked as text. The server resolves symlinks itself and refuses
# paths outside its own allowed directories; this policy is the layer that
# explains the refusal to the agent and asks a person about writes.
#
# To adopt it, see "Examples, and adopting one" in docs/policy.md, then set
# the settings below: edit the defaults here, or leave this file as it is and
# give them in a data file of your policy directory, such as settings.json:
#
#     {"settings": {"filesystem": {"roots": ["/home/me/work"], "scratch": "/home/me/work/tmp"}}}
package airlock.examples.filesystem

import data.airlock.baseline

# --- settings -----------------------------------------------------------------

# The server's name in Airlock's config.
default server := "filesystem"

server := data.settings.filesystem.server

# The directories the server was started with.
default roots := ["/srv/data"]

roots := data.settings.filesystem.roots

# Writes below this directory pass without asking.
default scratch := "/srv/data/tmp"

scratch := data.settings.filesystem.scratch

read_tools := {
	"read_file", "read_text_file", "read_media_file", "read_multiple_files",
	"list_directory", "list_directory_with_sizes", "directory_tree",
	"search_files", "get_file_info", "list_allowed_directories",
}

write_tools := {"write_file", "edit_file", "create_directory", "move_file"}

# --- decision -----------------------------------------------------------------

decision := baseline.decision if {
	input.server.name != server
} else := {
	"action": "deny",
	"risk": "high",
	"reason": sprintf(
		"%s refused: %s %s outside the allowed directories (%s), or uses \"..\". Use an absolute path inside them.",
		[input.tool.name, concat(", ", sort(escaping)), verb, concat(", ", roots)],
	),
} if {
	count(escaping) > 0
} else := baseline.decision if {
	# A changed tool is held by the baseline whatever it claims to do.
	input.tool.changed
} else := {
	"action": "allow",
	"risk": "low",
	"reason": sprintf("%s only reads inside %s.", [input.tool.name, concat(", ", roots)]),
} if {
	input.tool.name in read_tools
} else := {
	"action": "allow",
	"risk": "low",
	"reason": sprintf("%s writes only inside the scratch directory %s.", [input.tool.name, scratch]),
} if {
	input.tool.name in write_tools
	every path in paths {
		within(path, scratch)
	}
} else := {
	"action": "hold",
	"risk": "high",
	"reason": sprintf(
		"%s writes outside the scratch directory %s (%s); it waits for a person to approve it.",
		[input.tool.name, scratch, concat(", ", sort(paths))],
	),
	"quorum": 1,
	"timeout": baseline.hold_timeout,
	"grantable": {"scopes": ["exact", "arguments"], "max_ttl": "8h", "key_arguments": ["path"]},
} if {
	input.tool.name in write_tools
} else := baseline.decision

# --- paths --------------------------------------------------------------------

# Every argument that names a file: path, paths (read_multiple_files),
# source and destination (move_file).
paths contains input.arguments.path

paths contains path if {
	some path in input.arguments.paths
}

paths contains input.arguments.source

paths contains input.arguments.destination

# sprintf shows a non-string path too, instead of failing on it.
escaping := {sprintf("%v", [path]) | some path in paths; not inside_roots(path)}

verb := "is" if {
	count(escaping) == 1
} else := "are"

inside_roots(path) if {
	some root in roots
	within(path, root)
}

# within is true when path is dir or below it. Only clean absolute paths
# qualify, so "/srv/data/../../etc/passwd" cannot pass the prefix test.
within(path, dir) if {
	clean(path)
	path == dir
}

within(path, dir) if {
	clean(path)
	startswith(path, concat("", [trim_right(dir, "/"), "/"]))
}

clean(path) if {
	is_string(path)
	startswith(path, "/")
	not ".." in split(path, "/")
}
