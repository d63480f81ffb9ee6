package main

import (
	"encoding/json"
	"testing"
)

// A short run of the bench, so that it cannot rot.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts several processes")
	}
	cmd := airlockCmd(t, "bench", "--duration", "200ms", "--callers", "1,2", "--json")
	stderr := &syncBuffer{}
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, stderr)
	}
	var rs []benchResult
	if err := json.Unmarshal(out, &rs); err != nil {
		t.Fatalf("bench output: %v\n%s", err, out)
	}
	if len(rs) != 8 {
		t.Fatalf("got %d results, want 8 (2 transports × 2 caller counts × direct and airlock)", len(rs))
	}
	for _, r := range rs {
		if r.Calls == 0 || r.PerSecond <= 0 || r.P50 <= 0 || r.P99 < r.P50 {
			t.Errorf("implausible result %+v", r)
		}
	}
}
