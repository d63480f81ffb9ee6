package main

import (
	"encoding/json"
	"testing"
)

// A short run of every workload and of the held-calls measurement, so that
// the bench cannot rot.
func TestBenchRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("starts many processes")
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
	if want := len(benchWorkloads) * 2 * 2 * 2; len(rs) != want {
		t.Fatalf("got %d results, want %d (workloads × transports × callers × direct and airlock)", len(rs), want)
	}
	for _, r := range rs {
		if r.Calls == 0 || r.PerSecond <= 0 || r.P50 <= 0 || r.P99 < r.P50 || (r.Path == "airlock") != (r.PeakRSS > 0) {
			t.Errorf("implausible result %+v", r)
		}
	}

	cmd = airlockCmd(t, "bench", "--held", "200", "--json")
	cmd.Stderr = stderr
	if out, err = cmd.Output(); err != nil {
		t.Fatalf("bench --held: %v\n%s", err, stderr)
	}
	var held struct {
		Held       int     `json:"held"`
		HeldRSS    int64   `json:"held_rss_kib"`
		PerCallKiB float64 `json:"kib_per_held_call"`
		Released   int     `json:"released"`
		ReleaseP99 float64 `json:"approve_to_result_p99_us"`
	}
	if err := json.Unmarshal(out, &held); err != nil || held.Held != 200 || held.HeldRSS <= 0 || held.Released != 200 || held.ReleaseP99 <= 0 {
		t.Errorf("bench --held: %s (%v)", out, err)
	}
}

// Audit cost pairs each audited case through Airlock with the unaudited
// one of the same transport and callers, and nothing else.
func TestAuditCostsPairs(t *testing.T) {
	rs := []benchResult{
		{Workload: "allowed", Transport: "stdio", Callers: 8, Path: "direct", PerSecond: 1000},
		{Workload: "allowed", Transport: "stdio", Callers: 8, Path: "airlock", PerSecond: 900},
		{Workload: "allowed-unaudited", Transport: "stdio", Callers: 8, Path: "airlock", PerSecond: 1000},
		{Workload: "allowed-unaudited", Transport: "http", Callers: 8, Path: "airlock", PerSecond: 5},
		{Workload: "allowed", Transport: "http", Callers: 32, Path: "airlock", PerSecond: 7},
	}
	cs := auditCosts(rs)
	if len(cs) != 1 || cs[0] != (auditCost{"stdio", 8, 900, 1000}) {
		t.Errorf("auditCosts = %+v, want the stdio/8 pair alone", cs)
	}
}

// Repeated runs fold into medians (the mean of the middle two for an even
// count), with calls summed and the highest peak memory kept.
func TestMedianResult(t *testing.T) {
	rs := []benchResult{
		{Workload: "allowed", Calls: 10, PerSecond: 300, P50: 9, P99: 90, PeakRSS: 5, CPUPerCall: 3},
		{Workload: "allowed", Calls: 20, PerSecond: 100, P50: 1, P99: 10, PeakRSS: 7, CPUPerCall: 1},
		{Workload: "allowed", Calls: 30, PerSecond: 200, P50: 5, P99: 50, PeakRSS: 6, CPUPerCall: 2},
	}
	got := medianResult(rs)
	want := benchResult{Workload: "allowed", Calls: 60, Runs: 3, PerSecond: 200, P50: 5, P99: 50, PeakRSS: 7, CPUPerCall: 2}
	if got != want {
		t.Errorf("medianResult = %+v, want %+v", got, want)
	}
	if got := medianResult(rs[:2]); got.PerSecond != 200 || got.P99 != 50 || got.Runs != 2 {
		t.Errorf("medianResult of two = %+v, want the mean of both", got)
	}
}
