package broker

import "time"

// pool runs work on goroutines it keeps for a while after they finish.
//
// A new goroutine starts with a small stack. Decoding a call, building the
// policy's input and writing an HTTP response need a deeper one, which Go
// grows by copying, several times over: on a goroutine per call that was
// a tenth of Airlock's CPU under load. A kept goroutine grew its stack
// already. Idle ones exit after keepIdle, so a burst leaves none behind,
// and when stop closes.
type pool struct {
	work chan func()
	stop <-chan struct{}
}

const keepIdle = 10 * time.Second

func newPool(stop <-chan struct{}) pool { return pool{work: make(chan func()), stop: stop} }

// Go runs f on an idle kept goroutine, or on a new one that will be kept.
func (p pool) Go(f func()) {
	select {
	case p.work <- f:
	default:
		go p.keep(f)
	}
}

func (p pool) keep(f func()) {
	idle := time.NewTimer(keepIdle)
	defer idle.Stop()
	for {
		f()
		idle.Reset(keepIdle)
		select {
		case f = <-p.work:
		case <-idle.C:
			return
		case <-p.stop:
			return
		}
	}
}
