package airlock_test

import data.airlock

test_decision_comes_from_the_baseline if {
	call := {
		"server": {"name": "filesystem", "trust_annotations": true},
		"tool": {"name": "read_file", "annotations": {"readOnlyHint": true}, "changed": false},
		"grants": [],
		"time": "2026-11-20T10:00:00Z",
	}
	d := airlock.decision with input as call
	d == data.airlock.baseline.decision with input as call
	d.action == "allow"
}
