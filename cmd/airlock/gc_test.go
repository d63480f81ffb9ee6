package main

import (
	goruntime "runtime"
	"runtime/debug"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	tests := []struct {
		name           string
		base, headroom uint64
		want           int
	}{
		// A tiny heap: the runtime's 4 MiB minimum, scaled, would pass
		// base+headroom, so that bound decides: 4 MiB × 8.25 = 33 MiB.
		{"tiny heap", 1 * mib, 32 * mib, 825},
		{"nothing measured yet", 0, 32 * mib, 800},
		// Past the minimum's reach, headroom/base decides: 8 + 32 MiB.
		{"small heap", 8 * mib, 32 * mib, 400},
		// A heap larger than the headroom grows as Go's default lets it.
		{"large heap", 200 * mib, 32 * mib, 100},
		{"headroom zero", 8 * mib, 0, 100},
	}
	for _, tt := range tests {
		if got := gcPercent(tt.base, tt.headroom); got != tt.want {
			t.Errorf("%s: gcPercent(%d MiB, %d MiB) = %d, want %d", tt.name, tt.base/mib, tt.headroom/mib, got, tt.want)
		}
	}
}

// The tuner follows the live heap from one collection to the next: when
// the live heap grows past the headroom, it hands back Go's default.
func TestGCTunerFollowsLiveHeap(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(100))
	const headroom = 16 << 20
	seen := make(chan int, 100)
	tuner := newGCTuner(headroom)
	tuner.adjusted = func(p int) {
		select {
		case seen <- p:
		default:
		}
	}
	defer tuner.stop.Store(true)
	tuner.adjust()
	if p := <-seen; p <= 100 {
		t.Fatalf("with this test's small heap, GOGC = %d, want above 100", p)
	}
	// 64 MiB kept live, four times the headroom.
	live := make([][]byte, 64)
	for i := range live {
		live[i] = make([]byte, 1<<20)
		live[i][0] = 1
	}
	deadline := time.After(10 * time.Second)
	for {
		goruntime.GC()
		select {
		case p := <-seen:
			if p == 100 {
				goruntime.KeepAlive(live)
				return
			}
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			t.Fatal("the tuner did not return to GOGC=100 after collections found 64 MiB live")
		}
	}
}
