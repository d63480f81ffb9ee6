package main

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"
)

// Allowed calls through one broker on bbolt, one replica on PostgreSQL and
// three on PostgreSQL, in one run: calls/s and each call's p50 and p99,
// from one session and from 24 at once (spread evenly over the replicas).
// The upstream is one streamable HTTP server in this process; the client
// is rawClient, which costs far less than what it measures. Figures:
// docs/benchmarks.md.
func BenchmarkReplicas(b *testing.B) {
	up := fmt.Sprintf("    url: %s\n", upstreamHTTP(b))
	configs := []struct {
		name     string
		replicas int
		postgres bool
	}{{"bbolt", 1, false}, {"postgres-1", 1, true}, {"postgres-3", 3, true}}
	for _, c := range configs {
		var bases []string
		var stop func()
		if c.postgres {
			rs := startReplicas(b, c.replicas, allowAllPolicy(b), up)
			for _, s := range rs.serve {
				bases = append(bases, s.base)
			}
			stop = func() {
				for _, s := range rs.serve {
					s.stop(b)
				}
			}
		} else {
			s := startPGServe(b, fmt.Sprintf("state_dir: %s\npolicy: {dir: %s}\nlimits: {sessions: 1024, sessions_per_principal: 1024}\nservers:\n  up:\n%s",
				b.TempDir(), allowAllPolicy(b), up))
			bases, stop = []string{s.base}, func() { s.stop(b) }
		}
		for _, callers := range []int{1, 24} {
			b.Run(fmt.Sprintf("%s/callers=%d", c.name, callers), func(b *testing.B) { driveAllowed(b, bases, callers) })
		}
		stop()
	}
}

// driveAllowed makes b.N echo calls from callers sessions spread over the
// brokers at bases, and reports calls/s and the calls' p50 and p99.
func driveAllowed(b *testing.B, bases []string, callers int) {
	ctx := context.Background()
	sessions := make([]*rawSession, callers)
	for i := range sessions {
		rc := &rawClient{http: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: callers}}, endpoint: bases[i%len(bases)] + "/mcp/up"}
		s, err := rc.open(ctx)
		if err != nil {
			b.Fatal(err)
		}
		defer s.close(ctx)
		sessions[i] = s
	}
	lat := make([][]time.Duration, callers)
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for i, s := range sessions {
		n := b.N / callers
		if i < b.N%callers {
			n++
		}
		wg.Go(func() {
			for range n {
				t0 := time.Now()
				res, err := s.call(ctx, "echo", []byte(`{"k":1}`))
				if err != nil || res.IsError {
					b.Errorf("echo: %+v %v", res, err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "calls/s")
	reportPercentiles(b, slices.Concat(lat...), time.Microsecond, "µs")
}

// reportPercentiles reports the p50 and p99 of lat in unit.
func reportPercentiles(b *testing.B, lat []time.Duration, unit time.Duration, name string) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	at := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(unit) }
	b.ReportMetric(at(0.50), "p50-"+name)
	b.ReportMetric(at(0.99), "p99-"+name)
}

// Approve-to-result: a call held on replica A is approved through the API
// of replica B (across), or of A itself (same, the baseline of the same
// run); the time from sending the decision to the client on A reading
// the result. Figures: docs/benchmarks.md.
func BenchmarkApproveToResult(b *testing.B) {
	rs := startReplicas(b, 2, replicasPolicy(b), stdioUp("echo"))
	rc := &rawClient{http: &http.Client{}, endpoint: rs.serve[0].base + "/mcp/up"}
	sess, err := rc.open(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	defer sess.close(context.Background())
	for _, via := range []struct {
		name    string
		replica int
	}{{"same", 0}, {"across", 1}} {
		b.Run(via.name, func(b *testing.B) {
			var lat []time.Duration
			for i := range b.N {
				done := make(chan error, 1)
				go func() {
					res, err := sess.call(context.Background(), "write", fmt.Appendf(nil, `{"%s":%d}`, via.name, i))
					if err == nil && res.IsError {
						err = fmt.Errorf("tool error: %s", res.Text)
					}
					done <- err
				}()
				held := rs.pendingOn(b, via.replica, 1)[0]
				t0 := time.Now()
				if code := rs.api(b, via.replica, "POST", "/api/v1/approvals/"+held.ID+"/decision", map[string]string{"verdict": "approve"}, nil); code != http.StatusOK {
					b.Fatalf("approve: HTTP %d", code)
				}
				if err := <-done; err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			reportPercentiles(b, lat, time.Microsecond, "µs")
		})
	}
}
