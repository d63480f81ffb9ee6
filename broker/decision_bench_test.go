package broker

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/metrics"
	"slices"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/policy"
)

// BenchmarkDecision measures the gate's decision for one call — matching
// grants in Go, then the default policy library — with 0, 10,000 and
// 100,000 active grants stored. The grants are for other tools, other
// arguments and other paths, so that every case reaches the same decision
// and only the cost of having the grants shows. Each case reports p50 and
// p99 in µs, and the heap the grants take (grants-MiB) and how much of it
// every collection scans (scanned-MiB); compare them within one run:
//
//	go test -run '^$' -bench Decision -benchtime 20000x ./broker
func BenchmarkDecision(b *testing.B) {
	// Protected paths as `airlock serve` sets them, so that their check on
	// the path argument is part of the cost.
	state := b.TempDir()
	engine, err := policy.New(context.Background(), policy.Options{
		ProtectedPaths: []string{state, state + "/admin-token", b.TempDir() + "/airlock.yaml"},
		WorkDirs:       []string{b.TempDir()},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer engine.Close()
	args := json.RawMessage(`{"path":"/srv/data/report.md","content":"quarterly numbers"}`)
	parsed, _ := policy.ParseArguments(args)
	rawTool := json.RawMessage(`{"name":"write_file","description":"Write a file.","inputSchema":{"type":"object"},"annotations":{"destructiveHint":true}}`)
	fp, _ := policy.Fingerprint(rawTool)
	now := time.Now()

	for _, n := range []int{0, 10_000, 100_000} {
		b.Run(fmt.Sprintf("grants=%d", n), func(b *testing.B) {
			var ix grantIndex
			heap0, scan0 := liveHeap()
			fillGrants(&ix, n, fp, now)
			heap1, scan1 := liveHeap()
			in := &policy.Input{
				Server:    policy.Server{Name: "filesystem", Transport: "stdio", TrustAnnotations: true},
				Tool:      policy.Tool{Name: "write_file", Description: "Write a file.", Annotations: json.RawMessage(`{"destructiveHint":true}`), Fingerprint: fp, FirstSeen: now},
				Principal: policy.Principal{ID: "alice", Source: "os"},
				Time:      now,
			}
			in.SetArguments(parsed) // as the gate does
			lat := make([]time.Duration, 0, b.N)
			ctx := context.Background()
			b.ResetTimer()
			for range b.N {
				t0 := time.Now()
				gs := ix.matching("filesystem", "write_file", Principal{ID: "alice", Source: "os"}, fp, parsed, now)
				in.Grants = policyGrants(gs)
				d := engine.Decide(ctx, in)
				lat = append(lat, time.Since(t0))
				if d.Action != policy.Hold || len(gs) != 0 {
					b.Fatalf("decision %s with %d grants; the case must not change it", d.Action, len(gs))
				}
			}
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
			b.ReportMetric(float64(heap1-heap0)/(1<<20), "grants-MiB")
			b.ReportMetric(float64(scan1-scan0)/(1<<20), "scanned-MiB")
			runtime.KeepAlive(&ix)
		})
	}
}

// liveHeap returns the bytes of live heap after a collection, and how many
// of them the collector scans for pointers.
func liveHeap() (heap, scanned int64) {
	runtime.GC()
	m := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/heap:bytes"}}
	metrics.Read(m)
	return int64(m[0].Value.Uint64()), int64(m[1].Value.Uint64())
}

// fillGrants adds n active grants that do not cover the benchmarked call:
// a third for other tools, a third exact grants for other arguments of the
// same tool, a third arguments grants for other paths.
func fillGrants(ix *grantIndex, n int, fp string, now time.Time) {
	for i := range n {
		g := &Grant{ID: fmt.Sprintf("G%08d", i), Status: GrantActive, Server: "filesystem", Tool: "write_file",
			ToolFingerprint: fp, Principal: "alice", CreatedBy: "bob", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
		switch i % 3 {
		case 0:
			g.Tool, g.Scope = fmt.Sprintf("tool_%d", i), ScopeTool
		case 1:
			g.Scope, g.ArgumentsDigest = ScopeExact, fmt.Sprintf("sha256:%064d", i)
		case 2:
			g.Scope = ScopeArguments
			g.KeyArguments = map[string]json.RawMessage{"path": json.RawMessage(fmt.Sprintf(`"/srv/other/%d"`, i))}
		}
		ix.put(g)
	}
}
