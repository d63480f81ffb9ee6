package boltstore

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/airlock-mcp/airlock/broker"
)

// The benchmarks measure group commit against a baseline taken in the same
// run, on the same disk, minutes apart at most, and report the ratio: on a
// shared machine absolute rates drift from run to run, ratios much less.
// The baseline ("plain") commits each write in its own db.Update, fsynced
// like every commit here.
//
//	go test -run '^$' -bench . -benchtime 20000x ./broker/boltstore/

// benchOp is one durable write of a benchmark; i counts from 0.
type benchOp struct {
	seed func(b *testing.B, s *Store, n int) // before the clock starts
	do   func(s *Store, i int) error
}

// decision is the broker's: a compare-and-set from pending to approved with
// its audit record, on one of n seeded approvals.
var decision = benchOp{
	seed: seedPending,
	do: func(s *Store, i int) error {
		_, err := s.UpdateApproval(context.Background(), benchID(i), approve("bob"))
		return err
	},
}

// auditRecord appends one record, as an allowed call does.
var auditRecord = benchOp{
	seed: func(*testing.B, *Store, int) {},
	do: func(s *Store, i int) error {
		return s.AppendAudit(context.Background(), &broker.AuditRecord{Time: time.Now(), Event: broker.EventAllowed,
			Server: "fs", Tool: "read_file", ArgumentsDigest: "sha256:0a1b", Principal: "alice", Actor: broker.Airlock})
	},
}

func benchID(i int) string { return fmt.Sprintf("01BENCH%09d", i) }

// seedPending stores n pending approvals, a thousand per transaction.
func seedPending(b *testing.B, s *Store, n int) {
	for start := 0; start < n; start += 1000 {
		err := s.db.Update(func(tx *bolt.Tx) error {
			for i := start; i < min(start+1000, n); i++ {
				a := approval(benchID(i), broker.StatusPending)
				data, err := json.Marshal(a)
				if err != nil {
					return err
				}
				if err := tx.Bucket(bucketApprovals).Put([]byte(a.ID), data); err != nil {
					return err
				}
				if err := tx.Bucket(bucketPending).Put(approvals.indexKey(a), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// benchStore opens a store in mode and seeds it for n ops.
func benchStore(b *testing.B, mode commitMode, op benchOp, n int) *Store {
	s, err := Open(filepath.Join(b.TempDir(), "bench.db"), Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	s.mode = mode
	op.seed(b, s, n)
	return s
}

// runOps does ops 0..n-1 from writers goroutines and returns the rate in
// ops per second. With timed, the benchmark's clock runs during the ops
// (and only then).
func runOps(b *testing.B, s *Store, op benchOp, writers, n int, timed bool) float64 {
	var next atomic.Int64
	var wg sync.WaitGroup
	if timed {
		b.StartTimer()
	}
	start := time.Now()
	for range writers {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := op.do(s, i); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	if timed {
		b.StopTimer()
	}
	return float64(n) / elapsed.Seconds()
}

// benchThroughput reports durable ops per second with group commit and
// its ratio to plain commits measured just before.
func benchThroughput(b *testing.B, op benchOp, writers int) {
	b.StopTimer()
	// A few thousand plain commits take seconds; they are enough for a
	// rate.
	// Both stores hold as many approvals, so that their files are alike.
	plain := runOps(b, benchStore(b, updateEach, op, b.N), op, writers, min(b.N, 3000), false)
	group := runOps(b, benchStore(b, groupCommit, op, b.N), op, writers, b.N, true)
	b.ReportMetric(group, "ops/s")
	b.ReportMetric(plain, "plain_ops/s")
	b.ReportMetric(group/plain, "x_plain")
}

// BenchmarkDecisions is durable decisions per second (a compare-and-set
// with its audit record) from 1, 8 and 64 concurrent deciders.
func BenchmarkDecisions(b *testing.B) {
	for _, writers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchThroughput(b, decision, writers) })
	}
}

// BenchmarkAuditAppends is durable audit records per second from 8 and 64
// concurrent callers (64: the figure DESIGN.md quotes).
func BenchmarkAuditAppends(b *testing.B) {
	for _, writers := range []int{8, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) { benchThroughput(b, auditRecord, writers) })
	}
}

// latencies does decisions from..to-1 one after the other and appends how
// long each took to ds.
func latencies(s *Store, from, to int, ds []time.Duration) ([]time.Duration, error) {
	for i := from; i < to; i++ {
		start := time.Now()
		if err := decision.do(s, i); err != nil {
			return ds, err
		}
		ds = append(ds, time.Since(start))
	}
	return ds, nil
}

func quantile(ds []time.Duration, q float64) float64 {
	ds = slices.Sorted(slices.Values(ds))
	return float64(ds[int(q*float64(len(ds)-1))].Microseconds())
}

// BenchmarkLoneCaller is the latency of a decision when nobody else
// writes: group commit must not make a lone caller wait for company, as
// db.Batch does (measured too, with its default 10 ms delay). Plain and
// group commits take turns in blocks of 100, so that both see the same
// moments of a noisy machine.
func BenchmarkLoneCaller(b *testing.B) {
	b.StopTimer()
	batch, err := latencies(benchStore(b, boltBatch, decision, 100), 0, 100, nil)
	if err != nil {
		b.Fatal(err)
	}
	plainStore, groupStore := benchStore(b, updateEach, decision, b.N), benchStore(b, groupCommit, decision, b.N)
	var plain, group []time.Duration
	for from := 0; from < b.N; from += 100 {
		to := min(from+100, b.N)
		if plain, err = latencies(plainStore, from, to, plain); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		group, err = latencies(groupStore, from, to, group)
		b.StopTimer()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(quantile(group, 0.5), "p50_us")
	b.ReportMetric(quantile(group, 0.99), "p99_us")
	b.ReportMetric(quantile(plain, 0.5), "plain_p50_us")
	b.ReportMetric(quantile(plain, 0.99), "plain_p99_us")
	b.ReportMetric(quantile(batch, 0.5), "batch_p50_us")
	b.ReportMetric(quantile(group, 0.5)/quantile(plain, 0.5), "p50_x_plain")
	b.ReportMetric(quantile(group, 0.99)/quantile(plain, 0.99), "p99_x_plain")
}

// BenchmarkLoneAudit is the latency of a lone caller's audit append, the
// wait an allowed call's result may add, against its floor measured in the
// same run: appending a frame of the same size to a file in the same
// directory and fdatasyncing it. The two take turns in blocks of 100.
func BenchmarkLoneAudit(b *testing.B) {
	b.StopTimer()
	s := benchStore(b, groupCommit, auditRecord, 0)
	floorFile, err := os.Create(filepath.Join(b.TempDir(), "floor"))
	if err != nil {
		b.Fatal(err)
	}
	defer floorFile.Close()
	frame := appendFrame(nil, make([]byte, 330)) // about an allowed call's record
	var size int64
	var lone, floor []time.Duration
	for from := 0; from < b.N; from += 100 {
		for range min(100, b.N-from) {
			start := time.Now()
			if _, err := floorFile.WriteAt(frame, size); err != nil {
				b.Fatal(err)
			}
			if err := fdatasync(floorFile); err != nil {
				b.Fatal(err)
			}
			floor = append(floor, time.Since(start))
			size += int64(len(frame))
		}
		b.StartTimer()
		for i := from; i < min(from+100, b.N); i++ {
			start := time.Now()
			if err := auditRecord.do(s, i); err != nil {
				b.Fatal(err)
			}
			lone = append(lone, time.Since(start))
		}
		b.StopTimer()
	}
	b.ReportMetric(quantile(lone, 0.5), "p50_us")
	b.ReportMetric(quantile(lone, 0.99), "p99_us")
	b.ReportMetric(quantile(floor, 0.5), "floor_p50_us")
	b.ReportMetric(quantile(lone, 0.5)/quantile(floor, 0.5), "p50_x_floor")
}
