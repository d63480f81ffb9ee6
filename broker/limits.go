package broker

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// Defaults for Limits, sized so that a flood of unauthenticated requests
// cannot exhaust a laptop. A stdio server's child costs tens of MB (about
// 65 MB for a Node.js server), and a held call keeps its arguments in
// memory and in the store until it is decided.
const (
	// DefaultMaxSessions bounds HTTP sessions in all: each one holds an
	// upstream session, a child process for a stdio server.
	DefaultMaxSessions = 64
	// DefaultMaxSessionsPerPrincipal leaves room for other callers when
	// one fills its share.
	DefaultMaxSessionsPerPrincipal = 32
	// DefaultMaxChildrenPerServer bounds the upstream sessions of one
	// stdio server, hence its child processes: 16 Node.js servers are
	// about 1 GB.
	DefaultMaxChildrenPerServer = 16
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

// Limits bound what callers can make Airlock keep. For each field 0 means
// its default and a negative value means no limit.
type Limits struct {
	// Sessions and SessionsPerPrincipal bound open streamable HTTP
	// sessions, in all and for each principal. A stdio client (wrap) has
	// one session and is not counted.
	Sessions, SessionsPerPrincipal int
	// ChildrenPerServer bounds the open upstream sessions of each stdio
	// server, which are its child processes, over every transport.
	ChildrenPerServer int
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
	// airlock_limit_refusals_total metric: sessions, children_per_server…
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
	// Children counts the open upstream sessions of each stdio server.
	Children map[string]int
}

func (l Limits) withDefaults() Limits {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&l.Sessions, DefaultMaxSessions)
	def(&l.SessionsPerPrincipal, DefaultMaxSessionsPerPrincipal)
	def(&l.ChildrenPerServer, DefaultMaxChildrenPerServer)
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

	mu          sync.Mutex
	sessions    int
	byPrincipal map[principalKey]int
	children    map[string]int
	held        int
	heldBytes   int64
	heldBy      map[principalKey]int
}

// principalKey tells principals apart by source as well as id: today every
// HTTP client is the anonymous principal, whose id is empty.
type principalKey struct{ source, id string }

func keyOf(p Principal) principalKey { return principalKey{p.Source, p.ID} }

func newLimiter(l Limits, m Metrics) *limiter {
	return &limiter{l: l.withDefaults(), metrics: m,
		byPrincipal: map[principalKey]int{}, children: map[string]int{}, heldBy: map[principalKey]int{}}
}

func (lm *limiter) refuse(limit string, max int64, what string) error {
	if m, ok := lm.metrics.(LimitMetrics); ok {
		m.LimitRefused(limit)
	}
	return &LimitError{Limit: limit, Max: max, What: what}
}

// session counts a new HTTP session for p; release gives it back.
func (lm *limiter) session(p Principal) (release func(), err error) {
	k := keyOf(p)
	lm.mu.Lock()
	defer lm.mu.Unlock()
	switch {
	case over(lm.sessions, 1, lm.l.Sessions):
		return nil, lm.refuse("sessions", int64(lm.l.Sessions), "open sessions")
	case over(lm.byPrincipal[k], 1, lm.l.SessionsPerPrincipal):
		return nil, lm.refuse("sessions_per_principal", int64(lm.l.SessionsPerPrincipal), "open sessions for one principal")
	}
	lm.sessions++
	lm.byPrincipal[k]++
	return sync.OnceFunc(func() {
		lm.mu.Lock()
		defer lm.mu.Unlock()
		lm.sessions--
		if lm.byPrincipal[k]--; lm.byPrincipal[k] == 0 {
			delete(lm.byPrincipal, k)
		}
	}), nil
}

// child counts a new upstream session of a stdio server. Other transports
// start no process and are not counted.
func (lm *limiter) child(up *Upstream) (release func(), err error) {
	if up.Transport != "stdio" {
		return func() {}, nil
	}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	if over(lm.children[up.Name], 1, lm.l.ChildrenPerServer) {
		return nil, lm.refuse("children_per_server", int64(lm.l.ChildrenPerServer), "child processes for server "+up.Name)
	}
	lm.children[up.Name]++
	return sync.OnceFunc(func() {
		lm.mu.Lock()
		defer lm.mu.Unlock()
		if lm.children[up.Name]--; lm.children[up.Name] == 0 {
			delete(lm.children, up.Name)
		}
	}), nil
}

// hold counts a new held call of p with size bytes of arguments.
func (lm *limiter) hold(p Principal, size int) (release func(), err error) {
	k, n := keyOf(p), int64(size)
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
	u := Usage{Held: lm.held, HeldBytes: lm.heldBytes, Children: make(map[string]int, len(lm.children))}
	for name, n := range lm.children {
		u.Children[name] = n
	}
	return u
}

// Usage reports what the limits count now, for metrics.
func (b *Broker) Usage() Usage { return b.limits.usage() }

// limitRetryAfter is what a client refused at a limit is told to wait, in
// seconds: sessions end when their clients close them or go idle.
const limitRetryAfter = "60"

// refuseAtLimit answers 503 with Retry-After when err is a LimitError, and
// reports whether it did.
func refuseAtLimit(w http.ResponseWriter, err error) bool {
	var le *LimitError
	if !errors.As(err, &le) {
		return false
	}
	w.Header().Set("Retry-After", limitRetryAfter)
	httpError(w, http.StatusServiceUnavailable, jsonrpc.CodeInternalError, le.Error())
	return true
}
