package relay

import (
	"errors"
	"net/http"
	"sync"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/airlock-mcp/airlock/broker"
)

// Defaults for Limits, sized so that a flood of unauthenticated requests
// cannot exhaust a laptop: a stdio server's child costs tens of MB (about
// 65 MB for a Node.js server).
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
)

// Limits bound the sessions and child processes callers can make Airlock
// keep. For each field 0 means its default and a negative value means no
// limit. (The broker bounds held calls.)
type Limits struct {
	// Sessions and SessionsPerPrincipal bound open streamable HTTP
	// sessions, in all and for each principal. A stdio client (wrap) has
	// one session and is not counted.
	Sessions, SessionsPerPrincipal int
	// ChildrenPerServer bounds the open upstream sessions of each stdio
	// server, which are its child processes, over every transport.
	ChildrenPerServer int
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
	return l
}

// over reports whether one more would pass limit (negative: no limit).
func over(cur, limit int) bool { return limit >= 0 && cur+1 > limit }

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
}

// principalKey tells principals apart by source as well as id: every
// anonymous HTTP client has the empty id.
type principalKey struct{ source, id string }

func newLimiter(l Limits, m Metrics) *limiter {
	return &limiter{l: l.withDefaults(), metrics: m, byPrincipal: map[principalKey]int{}, children: map[string]int{}}
}

func (lm *limiter) refuse(limit string, max int, what string) error {
	if lm.metrics != nil {
		lm.metrics.LimitRefused(limit)
	}
	return &broker.LimitError{Limit: limit, Max: int64(max), What: what}
}

// session counts a new HTTP session for p; release gives it back.
func (lm *limiter) session(p broker.Principal) (release func(), err error) {
	k := principalKey{p.Source, p.ID}
	lm.mu.Lock()
	defer lm.mu.Unlock()
	switch {
	case over(lm.sessions, lm.l.Sessions):
		return nil, lm.refuse("sessions", lm.l.Sessions, "open sessions")
	case over(lm.byPrincipal[k], lm.l.SessionsPerPrincipal):
		return nil, lm.refuse("sessions_per_principal", lm.l.SessionsPerPrincipal, "open sessions for one principal")
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
	if over(lm.children[up.Name], lm.l.ChildrenPerServer) {
		return nil, lm.refuse("children_per_server", lm.l.ChildrenPerServer, "child processes for server "+up.Name)
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

// Children counts the open upstream sessions of each stdio server, for
// metrics.
func (r *Relay) Children() map[string]int {
	lm := r.limits
	lm.mu.Lock()
	defer lm.mu.Unlock()
	out := make(map[string]int, len(lm.children))
	for name, n := range lm.children {
		out[name] = n
	}
	return out
}

// limitRetryAfter is what a client refused at a limit is told to wait, in
// seconds: sessions end when their clients close them or go idle.
const limitRetryAfter = "60"

// refuseAtLimit answers 503 with Retry-After when err is a LimitError, and
// reports whether it did.
func refuseAtLimit(w http.ResponseWriter, err error) bool {
	var le *broker.LimitError
	if !errors.As(err, &le) {
		return false
	}
	w.Header().Set("Retry-After", limitRetryAfter)
	httpError(w, http.StatusServiceUnavailable, jsonrpc.CodeInternalError, le.Error())
	return true
}
