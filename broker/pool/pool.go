// Package pool runs short work on goroutines it keeps for a while: the
// relay and the approval core both start one per call, and a kept
// goroutine has grown its stack already.
package pool

import (
	"sync/atomic"
	"time"
)

// Pool runs work on goroutines it keeps for a while after they finish.
//
// A new goroutine starts with a small stack. Decoding a call, building the
// policy's input and writing an HTTP response need a deeper one, which Go
// grows by copying, several times over: on a goroutine per call that was
// a tenth of Airlock's CPU under load. A kept goroutine grew its stack
// already. Idle ones exit after keepIdle, and when stop closes; at most
// maxIdle wait at once, so that a burst (ten thousand held calls arriving
// together) does not leave its goroutines' stacks behind.
type Pool struct {
	work chan func()
	stop <-chan struct{}
	idle *atomic.Int64
}

const (
	keepIdle = 10 * time.Second
	// maxIdle is well above the calls in flight under steady load; a
	// kept goroutine holds a stack of some 8 to 32 KiB.
	maxIdle = 256
)

// New returns a pool whose idle goroutines exit when stop closes.
func New(stop <-chan struct{}) Pool {
	return Pool{work: make(chan func()), stop: stop, idle: new(atomic.Int64)}
}

// Go runs f on an idle kept goroutine, or on a new one that may be kept.
func (p Pool) Go(f func()) {
	select {
	case p.work <- f:
	default:
		go p.keep(f)
	}
}

func (p Pool) keep(f func()) {
	timer := time.NewTimer(keepIdle)
	defer timer.Stop()
	for {
		f()
		if p.idle.Add(1) > maxIdle {
			p.idle.Add(-1)
			return
		}
		timer.Reset(keepIdle)
		select {
		case f = <-p.work:
			p.idle.Add(-1)
		case <-timer.C:
			p.idle.Add(-1)
			return
		case <-p.stop:
			p.idle.Add(-1)
			return
		}
	}
}
