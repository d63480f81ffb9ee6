// Package policy decides every MCP tool call with Rego, and never lets a call
// through by mistake.
//
// Policy authors say in plain Rego (OPA v1 syntax) which calls pass, which
// are refused and which wait for a person. This package loads their files
// (or the library embedded from package rego), compiles them strictly with
// a sandboxed set of built-ins, prepares data.airlock.decision once per
// revision, swaps revisions atomically on reload, and evaluates each call
// against the Input contract. Anything but a well-formed decision — an
// undefined result, conflicting rules, a wrong type, an error, a panic, a
// timeout — becomes a deny whose reference id is logged with the detail.
package policy

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/topdown"
	"github.com/open-policy-agent/opa/v1/topdown/print"
)

// Query is the rule Airlock evaluates for every call.
const Query = "data.airlock.decision"

// DefaultTimeout bounds one evaluation when Options.Timeout is zero. Policies
// run in microseconds; one that takes this long is broken, and the call
// waiting on it is denied.
const DefaultTimeout = time.Second

// Options configure an Engine. The zero value serves the embedded library.
type Options struct {
	Dir     string        // policy directory; "" = the library embedded from package rego
	Logger  *slog.Logger  // nil = discard
	Timeout time.Duration // per evaluation; 0 = DefaultTimeout
	// ProtectedPaths are Airlock's own files and directories (state,
	// config, policy, secrets). Every call whose arguments name a path
	// under one is denied ahead of the policy, and the policy sees them as
	// input.airlock.protected_paths. See protect.go.
	ProtectedPaths []string
	// WorkDirs are the directories a relative path in the arguments may be
	// relative to (Airlock's own, the servers' cwd).
	WorkDirs []string
}

// Engine evaluates the current policy revision. It is safe for concurrent
// use; Decide never waits for a reload.
type Engine struct {
	src     source
	log     *slog.Logger
	timeout time.Duration
	prot    *protected

	cur  atomic.Pointer[revision]
	memo memo // parsed tool annotations and schemas
	// Evaluations run on a few long-lived workers (see Decide): jobs
	// hands them over; closed stops them.
	jobs      chan *job
	closed    chan struct{}
	closeOnce sync.Once

	reloadMu sync.Mutex // one reload at a time, so revisions never go backwards

	mu        sync.Mutex // guards the fields below
	lastErr   string
	lastErrAt time.Time
}

// revision is one compiled policy, immutable once built.
type revision struct {
	id        string
	query     rego.PreparedEvalQuery
	modules   []string
	loadedAt  time.Time
	decisions *decisions // nil when the policy's decisions cannot be reused
}

// Status describes what the engine is serving, for /healthz and the UI.
type Status struct {
	Revision    string    `json:"revision"`
	Modules     []string  `json:"modules"`
	Source      string    `json:"source"` // the directory, or "embedded"
	LoadedAt    time.Time `json:"loaded_at"`
	LastError   string    `json:"last_error,omitempty"` // why the last reload failed, as file:row:col lines; cleared by a good reload
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
}

// New loads, compiles and prepares the policy, and starts the workers that
// evaluate it (Close stops them). Its error names file:row:col for every
// problem, so the operator can fix the policy before starting.
func New(ctx context.Context, opts Options) (*Engine, error) {
	e := &Engine{
		src:     sourceFor(opts.Dir),
		log:     opts.Logger,
		timeout: opts.Timeout,
		jobs:    make(chan *job),
		closed:  make(chan struct{}),
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if e.timeout <= 0 {
		e.timeout = DefaultTimeout
	}
	var err error
	if e.prot, err = newProtected(opts.ProtectedPaths, opts.WorkDirs); err != nil {
		return nil, err
	}
	rev, err := e.build(ctx)
	if err != nil {
		return nil, err
	}
	e.cur.Store(rev)
	for range 2 * runtime.GOMAXPROCS(0) {
		go e.worker()
	}
	e.log.Info("policy loaded", "revision", rev.id, "source", e.src.String(), "modules", len(rev.modules))
	return e, nil
}

// build loads and compiles the source and prepares the query.
func (e *Engine) build(ctx context.Context) (*revision, error) {
	l, err := load(e.src, false)
	if err != nil {
		return nil, err
	}
	if cur := e.cur.Load(); cur != nil && cur.id == l.revision {
		return cur, nil
	}
	c, err := l.compile()
	if err != nil {
		return nil, err
	}
	pq, err := rego.New(
		rego.Query(Query),
		rego.Compiler(c),
		rego.Store(l.store()),
		rego.Capabilities(capabilities()),
		rego.StrictBuiltinErrors(true), // a built-in error must not quietly make a rule undefined
		rego.EnablePrintStatements(true),
		rego.PrintHook(printHook{e.log}),
		rego.GenerateJSON(keepValue),
	).PrepareForEval(ctx)
	if err != nil {
		return nil, fmt.Errorf("policy: prepare %s:\n%s", Query, describe(err))
	}
	return &revision{id: l.revision, query: pq, modules: l.names, loadedAt: time.Now(), decisions: newDecisions(c)}, nil
}

// keepValue hands back OPA's own value instead of converting it to
// interface{}; parseDecision reads it directly.
func keepValue(t *ast.Term, _ *rego.EvalContext) (any, error) { return t.Value, nil }

// printHook sends Rego print() output to the log, for debugging a policy.
type printHook struct{ log *slog.Logger }

func (h printHook) Print(pctx print.Context, msg string) error {
	var loc string
	if pctx.Location != nil {
		loc = pctx.Location.String()
	}
	h.log.Debug("policy print", "location", loc, "output", msg)
	return nil
}

// Reload loads the source again and, if it compiles, serves it from the next
// decision on. A failing reload keeps the previous revision serving, is
// logged with file:row:col, and is reported by Status until a reload works.
func (e *Engine) Reload(ctx context.Context) error {
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	prev := e.cur.Load()
	rev, err := e.build(ctx)
	if err != nil {
		e.mu.Lock()
		e.lastErr, e.lastErrAt = err.Error(), time.Now()
		e.mu.Unlock()
		e.log.Error("policy reload failed; still serving the previous revision", "revision", prev.id, "source", e.src.String(), "err", err)
		return err
	}
	e.mu.Lock()
	e.lastErr, e.lastErrAt = "", time.Time{}
	e.mu.Unlock()
	if rev == prev {
		e.log.Debug("policy unchanged", "revision", rev.id)
		return nil
	}
	e.cur.Store(rev)
	e.log.Info("policy reloaded", "revision", rev.id, "previous_revision", prev.id, "source", e.src.String(), "modules", len(rev.modules))
	return nil
}

// Status reports the revision being served and the last reload error.
func (e *Engine) Status() Status {
	rev := e.cur.Load()
	e.mu.Lock()
	defer e.mu.Unlock()
	return Status{
		Revision:    rev.id,
		Modules:     append([]string(nil), rev.modules...),
		Source:      e.src.String(),
		LoadedAt:    rev.loadedAt,
		LastError:   e.lastErr,
		LastErrorAt: e.lastErrAt,
	}
}

// Decide evaluates the policy for one call. It never fails open: whatever
// goes wrong, the result is a deny whose Reason carries a reference id (also
// in Ref) and whose detail is logged under that id.
func (e *Engine) Decide(ctx context.Context, in *Input) (d Decision) {
	rev := e.cur.Load()
	id := newID()
	defer func() {
		if r := recover(); r != nil {
			d = e.failClosed(rev, id, "panic", fmt.Errorf("policy: panic: %v", r))
		}
	}()
	if err := ctx.Err(); err != nil {
		return e.failClosed(rev, id, "cancelled", fmt.Errorf("policy: %w", err))
	}
	select {
	case <-e.closed:
		return e.failClosed(rev, id, "closed", errors.New("policy: the engine is closed"))
	default:
	}
	v, err := in.value(&e.memo)
	if err != nil {
		return e.failClosed(rev, id, "input", err)
	}
	if obj, ok := v.(ast.Object); ok {
		if len(e.prot.paths) > 0 {
			// A fixed rule, ahead of the policy, so that no policy can drop it.
			if h, ok := e.prot.check(obj.Get(kArguments).Value); ok {
				e.log.Warn("call names a protected path", "decision_id", id, "tool", in.Tool.Name, "path", h.path)
				return e.decided(ctx, rev, id, Decision{Action: Deny, Reason: protectedReason(h), Risk: RiskCritical})
			}
		}
		obj.Insert(kAirlock, e.prot.term)
	}
	var tracer *ruleTracer
	if rev.decisions != nil {
		if d, ok := rev.decisions.lookup(v, in); ok {
			return e.decided(ctx, rev, id, d)
		}
		tracer = rev.decisions.tracer()
	}
	// The evaluation runs on one of a few long-lived workers, a couple per
	// CPU. OPA's evaluation needs a deep stack: on the caller's goroutine,
	// often a fresh one per call, Go would grow it by copying it several
	// times for every decision, which cost a fifth of Airlock's CPU. And
	// the time limit counts the policy's work, not the wait for a turn
	// among thousands of calls that arrived at once.
	j := &job{ctx: ctx, rev: rev, input: v, in: in, tracer: tracer, done: make(chan struct{})}
	select {
	case e.jobs <- j:
	case <-ctx.Done():
		return e.failClosed(rev, id, "cancelled", fmt.Errorf("policy: %w", ctx.Err()))
	case <-e.closed:
		return e.failClosed(rev, id, "closed", errors.New("policy: the engine is closed"))
	}
	<-j.done // a worker always finishes: the evaluation watches ctx and the time limit
	if j.err != nil {
		kind := failure(j.err)
		if j.panicked {
			kind = "panic"
		}
		return e.failClosed(rev, id, kind, j.err)
	}
	if tracer != nil {
		rev.decisions.add(v, in, tracer, j.d)
	}
	return e.decided(ctx, rev, id, j.d)
}

// decided stamps a decision with its id and revision.
func (e *Engine) decided(ctx context.Context, rev *revision, id string, d Decision) Decision {
	d.ID, d.Revision = id, rev.id
	if e.log.Enabled(ctx, slog.LevelDebug) {
		e.log.Debug("policy decided", "decision_id", id, "revision", rev.id, "action", string(d.Action), "risk", d.Risk, "reason", d.Reason)
	}
	return d
}

// job is one evaluation handed to a worker.
type job struct {
	ctx    context.Context
	rev    *revision
	input  ast.Value
	in     *Input
	tracer *ruleTracer // nil: evaluate untraced

	d        Decision
	err      error
	panicked bool
	done     chan struct{}
}

// worker evaluates jobs until the engine is closed; its stack, grown once
// by the first evaluation, serves every later one.
func (e *Engine) worker() {
	for {
		select {
		case j := <-e.jobs:
			e.run(j)
			close(j.done)
		case <-e.closed:
			return
		}
	}
}

// run evaluates one job; a panic fails the job, not the worker.
func (e *Engine) run(j *job) {
	defer func() {
		if r := recover(); r != nil {
			j.err, j.panicked = fmt.Errorf("policy: panic: %v", r), true
		}
	}()
	j.d, j.err = e.eval(j.ctx, j.rev, j.input, j.in, j.tracer)
}

// Close stops the engine's workers; later decisions fail closed. It is
// safe to call more than once.
func (e *Engine) Close() {
	e.closeOnce.Do(func() { close(e.closed) })
}

func (e *Engine) eval(ctx context.Context, rev *revision, input ast.Value, in *Input, tracer *ruleTracer) (Decision, error) {
	// One cancel serves both the time limit and the caller's ctx, without
	// the goroutine OPA would otherwise start per evaluation.
	cancel := topdown.NewCancel()
	var timedOut atomic.Bool
	timer := time.AfterFunc(e.timeout, func() {
		timedOut.Store(true)
		cancel.Cancel()
	})
	defer timer.Stop()
	if ctx.Done() != nil {
		defer context.AfterFunc(ctx, cancel.Cancel)()
	}
	opts := []rego.EvalOption{
		rego.EvalParsedInput(input),
		rego.EvalExternalCancel(cancel),
		rego.EvalMetrics(metrics.NoOp()),
	}
	if !in.Time.IsZero() {
		// Built-ins that need a clock (io.jwt.decode_verify) use the call's.
		opts = append(opts, rego.EvalTime(in.Time))
	}
	if tracer != nil {
		opts = append(opts, rego.EvalQueryTracer(tracer))
	}
	rs, err := rev.query.Eval(ctx, opts...)
	switch {
	case err != nil && timedOut.Load():
		return Decision{}, fmt.Errorf("policy: evaluation took longer than %v: %w: %w", e.timeout, context.DeadlineExceeded, err)
	case err != nil && ctx.Err() != nil:
		return Decision{}, fmt.Errorf("policy: evaluation stopped: %w: %w", ctx.Err(), err)
	case err != nil:
		return Decision{}, fmt.Errorf("policy: evaluate: %w", err)
	case len(rs) == 0 || len(rs[0].Expressions) == 0:
		return Decision{}, errUndefined
	case len(rs) > 1:
		return Decision{}, malformed("%s has %d results", Query, len(rs))
	}
	v, ok := rs[0].Expressions[0].Value.(ast.Value)
	if !ok {
		return Decision{}, malformed("unexpected result %T", rs[0].Expressions[0].Value)
	}
	return parseDecision(v, in)
}

// failure names the kind of failure for the log, so an operator can grep
// for timeouts or conflicts without reading every message.
func failure(err error) string {
	var te *topdown.Error
	var de *decisionError
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "cancelled"
	case errors.Is(err, errUndefined):
		return "undefined"
	case errors.As(err, &de):
		return "malformed"
	case errors.As(err, &te) && te.Code == topdown.ConflictErr:
		return "conflict"
	default:
		return "error"
	}
}

// failClosed turns any failure into a deny. The user-facing reason carries
// only the reference; the detail goes to the log under the same id.
func (e *Engine) failClosed(rev *revision, id, kind string, err error) Decision {
	level := slog.LevelError
	if kind == "cancelled" {
		level = slog.LevelWarn // the caller gave up; the policy is fine
	}
	e.log.Log(context.Background(), level, "policy failed closed", "ref", id, "failure", kind, "revision", rev.id, "err", err)
	return Decision{
		Action:   Deny,
		Reason:   "policy error (ref " + id + ")",
		ID:       id,
		Revision: rev.id,
		Ref:      id,
	}
}

// DecideJSON decides for an input written as JSON, as the UI form and
// `airlock policy eval` do. It fills what a hand-written input usually
// lacks: trust_annotations defaults to true, arguments_digest is computed
// when empty, and a zero time becomes now. The error is only for input that
// cannot be read; a policy failure is a deny, as with Decide.
func (e *Engine) DecideJSON(ctx context.Context, input []byte) (Decision, error) {
	// A struct is safe here: the input is written by an operator (the
	// policy page, `airlock policy eval`), and its arguments are parsed
	// strictly below. A call from an agent takes Decide, never this.
	in := Input{Server: Server{TrustAnnotations: true}}
	if err := json.Unmarshal(input, &in); err != nil {
		return Decision{}, fmt.Errorf("policy: input: %w", err)
	}
	if in.ArgumentsDigest == "" && len(in.Arguments) > 0 {
		digest, err := Digest(in.Arguments)
		if err != nil {
			return Decision{}, fmt.Errorf("policy: input arguments: %w", err)
		}
		in.ArgumentsDigest = digest
	}
	if in.Time.IsZero() {
		in.Time = time.Now().UTC()
	}
	if _, err := in.value(nil); err != nil {
		return Decision{}, err
	}
	return e.Decide(ctx, &in), nil
}

// newID returns a unique, time-ordered id: 48 bits of milliseconds and 80
// random bits, in hex. math/rand/v2's generator is unpredictable and does
// not need a syscall per call.
func newID() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], uint64(time.Now().UnixMilli())<<16|rand.Uint64()&0xffff)
	binary.BigEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
}
