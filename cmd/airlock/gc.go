package main

import (
	"os"
	goruntime "runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync/atomic"
)

// gcHeadroom is how much the heap may grow between collections at least.
//
// Go collects when the heap has grown by GOGC percent (100) of what the
// last collection left live. Airlock's live heap is tiny (about 2 MiB with
// the compiled policy) while every call allocates a few dozen KiB: under
// load the default collected dozens of times a second, which cost a tenth
// of Airlock's CPU and most of the policy's p99 (docs/benchmarks.md). A
// fixed headroom makes collections rare while the heap is small, for some
// 30 MiB more memory; once the live heap outgrows the headroom (thousands
// of held calls), Go's default applies again, so memory stays
// proportional to what is held.
const gcHeadroom = 32 << 20

// tuneGC keeps at least headroom bytes of growth between collections,
// unless the operator chose GOGC or GOMEMLIMIT, which then win. It
// adjusts after every collection, from the live heap that collection
// measured.
func tuneGC(headroom uint64) {
	if os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	newGCTuner(headroom).adjust()
}

func newGCTuner(headroom uint64) *gcTuner {
	return &gcTuner{headroom: headroom, percent: 100, sample: []metrics.Sample{
		{Name: "/gc/heap/live:bytes"}, {Name: "/gc/scan/stack:bytes"}, {Name: "/gc/scan/globals:bytes"},
	}}
}

type gcTuner struct {
	headroom uint64
	percent  int
	sample   []metrics.Sample
	// For tests: adjusted sees each adjustment; stop ends the tuning.
	adjusted func(percent int)
	stop     atomic.Bool
}

// gcSentinel is garbage on purpose: its cleanup runs after the collection
// that finds it unreachable. It holds a pointer so that it is a heap
// object of its own, not batched with other tiny allocations.
type gcSentinel struct{ _ *int }

// adjust sets GOGC for the live heap now and arranges to run again after
// the next collection. GOGC is a percentage of the live heap and the
// roots the collector scans (stacks and globals), so all three count.
func (t *gcTuner) adjust() {
	if t.stop.Load() {
		return
	}
	metrics.Read(t.sample)
	var base uint64
	for _, s := range t.sample {
		if s.Value.Kind() == metrics.KindUint64 {
			base += s.Value.Uint64()
		}
	}
	if p := gcPercent(base, t.headroom); p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
	if t.adjusted != nil {
		t.adjusted(t.percent)
	}
	goruntime.AddCleanup(new(gcSentinel), func(t *gcTuner) { t.adjust() }, t)
}

// gcPercent is the GOGC that lets the heap grow by headroom past base
// (the live heap and the roots), and never less than Go's default of 100.
//
// The runtime never aims below a minimum heap of 4 MiB scaled by GOGC/100,
// which for a tiny live heap would be far more than base+headroom; the
// second bound keeps that minimum within base+headroom too.
func gcPercent(base, headroom uint64) int {
	const heapMinimum = 4 << 20
	p := (base + headroom) * 100 / heapMinimum
	if base > 0 {
		p = min(p, headroom*100/base)
	}
	return int(max(100, min(p, 10000)))
}
