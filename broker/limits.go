package broker

import (
	"fmt"
	"strconv"
	"sync"
)

// Defaults for Limits, sized so that a flood of unauthenticated requests
// cannot exhaust a laptop: a held call keeps its arguments in memory and
// in the store until it is decided. (The relay bounds sessions and child
// processes the same way.)
const (
	// DefaultMaxHeld bounds the calls waiting for a decision: more than
	// people can review.
	DefaultMaxHeld = 100
	// DefaultMaxHeldPerPrincipal: an agent with this many calls waiting is
	// looping, and a refusal tells it so without crowding out the others.
	DefaultMaxHeldPerPrincipal = 20
	// DefaultMaxHeldBytes bounds the arguments of the calls waiting: four
	// messages of the largest size (wire.DefaultMaxMessage).
	DefaultMaxHeldBytes = 64 << 20
)

// Limits bound the calls callers can make Airlock hold. For each field 0
// means its default and a negative value means no limit.
type Limits struct {
	// Held and HeldPerPrincipal bound the calls waiting for a decision, in
	// all and for each principal; HeldBytes bounds the bytes of their
	// arguments. A retry that joins its call's approval is not counted
	// again.
	Held, HeldPerPrincipal int
	HeldBytes              int64
}

// LimitError says which limit refused a request. Its message names the
// limit and the config key that raises it.
type LimitError struct {
	// Limit names the limit, as in the limits config section and the
	// airlock_limit_refusals_total metric: held_calls, sessions…
	Limit string
	Max   int64
	What  string // what was counted, for the message
}

func (e *LimitError) Error() string {
	return fmt.Sprintf("Airlock is at its limit of %s %s (limits.%s in the config)", strconv.FormatInt(e.Max, 10), e.What, e.Limit)
}

// LimitMetrics is an optional ability of Metrics: counting the requests a
// limit refused.
type LimitMetrics interface {
	LimitRefused(limit string)
}

// Usage is what the limits count now.
type Usage struct {
	Held      int
	HeldBytes int64
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.Held, DefaultMaxHeld)
	def(&l.HeldPerPrincipal, DefaultMaxHeldPerPrincipal)
	if l.HeldBytes == 0 {
		l.HeldBytes = DefaultMaxHeldBytes
	}
	return l
}

// over reports whether n more would pass limit (negative: no limit).
func over[N int | int64](cur, n, limit N) bool { return limit >= 0 && cur+n > limit }

// limiter counts what Limits bound. Each count is taken before the thing
// it counts exists and given back when it is gone, so that concurrent
// requests cannot slip past a limit together.
type limiter struct {
	l       Limits
	metrics Metrics

	mu        sync.Mutex
	held      int
	heldBytes int64
	heldBy    map[principalKey]int
}

// principalKey tells principals apart by source as well as id: two
// sources may know the same name, and every anonymous HTTP client has the
// empty id.
type principalKey struct{ source, id string }

func newLimiter(l Limits, m Metrics) *limiter {
	return &limiter{l: l.withDefaults(), metrics: m, heldBy: map[principalKey]int{}}
}

func (lm *limiter) refuse(limit string, max int64, what string) error {
	if m, ok := lm.metrics.(LimitMetrics); ok {
		m.LimitRefused(limit)
	}
	return &LimitError{Limit: limit, Max: max, What: what}
}

// hold counts a new held call of p with size bytes of arguments.
func (lm *limiter) hold(p Principal, size int) (release func(), err error) {
	k, n := principalKey{p.Source, p.ID}, int64(size)
	lm.mu.Lock()
	defer lm.mu.Unlock()
	switch {
	case over(lm.held, 1, lm.l.Held):
		return nil, lm.refuse("held_calls", int64(lm.l.Held), "calls waiting for approval")
	case over(lm.heldBy[k], 1, lm.l.HeldPerPrincipal):
		return nil, lm.refuse("held_calls_per_principal", int64(lm.l.HeldPerPrincipal), "calls waiting for approval for one principal")
	case over(0, n, lm.l.HeldBytes):
		return nil, lm.refuse("held_bytes", lm.l.HeldBytes, fmt.Sprintf("bytes of arguments in calls waiting for approval, which this call's %d bytes pass alone", n))
	case over(lm.heldBytes, n, lm.l.HeldBytes):
		return nil, lm.refuse("held_bytes", lm.l.HeldBytes, "bytes of arguments in calls waiting for approval")
	}
	lm.held++
	lm.heldBytes += n
	lm.heldBy[k]++
	return sync.OnceFunc(func() {
		lm.mu.Lock()
		defer lm.mu.Unlock()
		lm.held--
		lm.heldBytes -= n
		if lm.heldBy[k]--; lm.heldBy[k] == 0 {
			delete(lm.heldBy, k)
		}
	}), nil
}

func (lm *limiter) usage() Usage {
	lm.mu.Lock()
	defer lm.mu.Unlock()
	return Usage{Held: lm.held, HeldBytes: lm.heldBytes}
}

// Usage reports what the limits count now, for metrics.
func (b *Broker) Usage() Usage { return b.limits.usage() }
