package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
)

// Airlock's own tasks (MCP's tasks utility, spec 2025-11-25). A tools/call
// that asks for a task (params.task) and that the gate holds is answered at
// once with a task of Airlock's, which ends with the call's outcome: the
// upstream's result once approved, the refusal otherwise. The client polls
// it (tasks/get, tasks/result) instead of holding a request open for as
// long as a person takes. Tasks of the upstream's pass through untouched.

const (
	// taskIDPrefix marks Airlock's task ids, so that a person reading a
	// log can tell them from the upstream's; what routes a request is the
	// session's table, not the prefix.
	taskIDPrefix = "airlock-"
	// maxLiveTasks bounds a session's unfinished tasks: each is a call held
	// or running, which a client could otherwise open without end.
	maxLiveTasks = 64
	// maxTasks bounds the tasks a session keeps, finished ones included;
	// past it the oldest finished one is forgotten early.
	maxTasks = 256
	// taskKeep is how long a finished task's result stays to be fetched,
	// beyond the time the approval may wait.
	taskKeep = 10 * time.Minute
	// taskPollInterval is what Airlock suggests to clients, and how often
	// it polls an upstream task that suggests nothing.
	taskPollInterval = time.Second
	// relatedTaskKey is the _meta key that ties a result to its task.
	relatedTaskKey = "io.modelcontextprotocol/related-task"
)

// Task statuses.
const (
	taskWorking   = "working"
	taskCompleted = "completed"
	taskFailed    = "failed"
	taskCancelled = "cancelled"
)

// terminalStatus says whether a task in status s is finished.
func terminalStatus(s string) bool {
	return s == taskCompleted || s == taskFailed || s == taskCancelled
}

// A task is one of Airlock's tasks: one held tools/call answered through it.
type task struct {
	id      string
	created time.Time
	ttl     time.Duration
	// cancel ends the call's context: at the gate the approval is
	// withdrawn with the cause, upstream the call is cancelled.
	cancel context.CancelCauseFunc
	done   chan struct{} // closed once the task is finished

	// Guarded by taskTable.mu.
	status    string
	message   string
	updated   time.Time
	forwarded bool            // the call went upstream: cancelling it may come too late
	result    json.RawMessage // a finished task's CallToolResult
	rpcErr    error           // or the upstream's error instead (a *jsonrpc.Error)
	forget    *time.Timer
}

// taskJSON is a task as MCP's Task type has it.
type taskJSON struct {
	TaskID        string `json:"taskId"`
	Status        string `json:"status"`
	StatusMessage string `json:"statusMessage,omitempty"`
	CreatedAt     string `json:"createdAt"`
	LastUpdatedAt string `json:"lastUpdatedAt"`
	TTL           int64  `json:"ttl"`
	PollInterval  int64  `json:"pollInterval"`
}

// taskTable is a session's tasks, in memory only: a task lives with its
// session, whose held call it is.
type taskTable struct {
	mu     sync.Mutex
	byID   map[string]*task
	order  []*task // by creation, for tasks/list and for forgetting the oldest
	live   int     // unfinished tasks, and calls at the gate that may become one
	closed bool
}

// errTooManyTasks refuses a task past maxLiveTasks.
var errTooManyTasks = fmt.Errorf("Airlock keeps at most %d unfinished tasks per session; wait for one to finish, or cancel one (tasks/cancel)", maxLiveTasks)

// reserve counts a call that may become a live task, before the gate sees
// it: a call over the limit is refused before anyone is asked to approve it.
func (tt *taskTable) reserve() error {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if tt.live >= maxLiveTasks {
		return errTooManyTasks
	}
	tt.live++
	return nil
}

// unreserve gives back a reservation that did not become a task.
func (tt *taskTable) unreserve() {
	tt.mu.Lock()
	tt.live--
	tt.mu.Unlock()
}

// newTaskID is 130 random bits: a task id is all a client needs to read
// the call's result or cancel it.
func newTaskID() string { return taskIDPrefix + rand.Text() }

// add keeps t, which is live (it takes a reservation's place) or finished
// already, forgetting the oldest finished task past maxTasks.
func (tt *taskTable) add(t *task) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if tt.byID == nil {
		tt.byID = make(map[string]*task)
	}
	if len(tt.order) >= maxTasks {
		if i := slices.IndexFunc(tt.order, func(o *task) bool { return terminalStatus(o.status) }); i >= 0 {
			tt.removeLocked(tt.order[i])
		}
	}
	tt.byID[t.id] = t
	tt.order = append(tt.order, t)
	if terminalStatus(t.status) {
		close(t.done)
		tt.forgetLaterLocked(t)
	}
}

func (tt *taskTable) removeLocked(t *task) {
	if t.forget != nil {
		t.forget.Stop()
	}
	delete(tt.byID, t.id)
	if i := slices.Index(tt.order, t); i >= 0 {
		tt.order = slices.Delete(tt.order, i, i+1)
	}
}

// forgetLaterLocked drops a finished task once its ttl from creation has
// passed: the spec lets a receiver delete it then, and memory must not
// keep every result for the life of the session.
func (tt *taskTable) forgetLaterLocked(t *task) {
	if tt.closed {
		return
	}
	t.forget = time.AfterFunc(time.Until(t.created.Add(t.ttl)), func() {
		tt.mu.Lock()
		defer tt.mu.Unlock()
		if tt.byID[t.id] == t {
			tt.removeLocked(t)
		}
	})
}

func (tt *taskTable) get(id string) *task {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.byID[id]
}

// finish ends t with status, once: a task's first ending stands (a client's
// cancel against the approval that comes just after it, say). It reports
// whether this call ended it.
func (tt *taskTable) finish(t *task, status, message string, result json.RawMessage, rpcErr error) bool {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if terminalStatus(t.status) {
		return false
	}
	t.status, t.message, t.updated = status, message, time.Now()
	t.result, t.rpcErr = result, rpcErr
	tt.live--
	close(t.done)
	tt.forgetLaterLocked(t)
	return true
}

// update changes the message of an unfinished task.
func (tt *taskTable) update(t *task, message string, forwarded bool) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	if terminalStatus(t.status) {
		return
	}
	if message != "" && message != t.message {
		t.message, t.updated = message, time.Now()
	}
	t.forwarded = t.forwarded || forwarded
}

// view is t as the client reads it.
func (tt *taskTable) view(t *task) taskJSON {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return tt.viewLocked(t)
}

func (tt *taskTable) viewLocked(t *task) taskJSON {
	return taskJSON{
		TaskID:        t.id,
		Status:        t.status,
		StatusMessage: t.message,
		CreatedAt:     t.created.UTC().Format(time.RFC3339Nano),
		LastUpdatedAt: t.updated.UTC().Format(time.RFC3339Nano),
		TTL:           t.ttl.Milliseconds(),
		PollInterval:  taskPollInterval.Milliseconds(),
	}
}

func (tt *taskTable) list() []taskJSON {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	out := make([]taskJSON, 0, len(tt.order))
	for _, t := range tt.order {
		out = append(out, tt.viewLocked(t))
	}
	return out
}

// close ends the session's tasks: their calls are withdrawn with cause,
// and nothing is kept for later.
func (tt *taskTable) close(cause error) {
	tt.mu.Lock()
	tt.closed = true
	var live []*task
	for _, t := range tt.order {
		if t.forget != nil {
			t.forget.Stop()
		}
		if !terminalStatus(t.status) {
			live = append(live, t)
		}
	}
	tt.mu.Unlock()
	for _, t := range live {
		t.cancel(cause)
	}
}

// outcome is what a finished task holds for tasks/result.
func (tt *taskTable) outcome(t *task) (status string, result json.RawMessage, rpcErr error) {
	tt.mu.Lock()
	defer tt.mu.Unlock()
	return t.status, t.result, t.rpcErr
}

// plainAnswerAsTask turns the upstream's plain answer to a tools/call that
// asked for a task into a finished task of Airlock's, when Airlock offered
// tasks for tools the upstream runs without (Options.OfferTasks): the
// client was told it could ask for one. Other answers pass as they are.
func (s *Session) plainAnswerAsTask(c *inflight, resp *jsonrpc.Response) *jsonrpc.Response {
	if !c.wantTask || !s.r.offerTasks || resp.Error != nil {
		return resp
	}
	if _, _, ok := createdTask(resp.Result); ok {
		return resp
	}
	return s.finishedTask(resp.ID, taskCompleted, "", resp.Result)
}

// taskRequested says whether tools/call params ask for a task: a "task"
// member that is an object. A variant of the name ("Task") is not one;
// the gate refuses such params.
func taskRequested(params json.RawMessage) bool {
	if !bytes.Contains(params, []byte(`"task"`)) {
		return false // the common case, without reading the params
	}
	p, err := policy.ReadObject(params, "task")
	if err != nil {
		return false
	}
	raw, ok := p.Get("task")
	return ok && len(raw) > 0 && raw[0] == '{'
}

// Held is the broker telling a call that asked for a task that it is held
// (broker.HeldCaller): the client is answered now with a task, and the
// call waits on as that task.
func (c *inflight) Held(h broker.Pending) {
	if !c.wantTask || c.task != nil {
		return
	}
	s := c.session
	msg := "waiting for approval (ref " + h.ApprovalID + ")"
	if h.Reason != "" {
		msg += ": " + h.Reason
	}
	now := time.Now()
	t := &task{id: newTaskID(), created: now, updated: now, ttl: max(h.Left, 0) + taskKeep,
		cancel: c.cancel, done: make(chan struct{}), status: taskWorking, message: msg}
	s.tasks.add(t)
	c.task = t
	s.log.Info("held call answered with a task", "task", t.id, "approval_id", h.ApprovalID)
	// The request is answered: its id is the client's again, and the call
	// goes on as the task. A client that cancelled it meanwhile has had its
	// context ended; the task ends with it.
	if s.takeClient(c) {
		s.send(s.createTaskResponse(c.clientID, t), c.clientID)
	}
}

// createTaskResponse answers the tools/call with id with t, as a
// CreateTaskResult.
func (s *Session) createTaskResponse(id jsonrpc.ID, t *task) *jsonrpc.Response {
	raw, _ := json.Marshal(struct {
		Task taskJSON `json:"task"`
	}{s.tasks.view(t)})
	return &jsonrpc.Response{ID: id, Result: raw}
}

// finishedTask is the answer to a tools/call that asked for a task, with
// one that is finished already: a client that asked for a task reads a
// CreateTaskResult, whatever the outcome (the TypeScript SDK refuses
// anything else).
func (s *Session) finishedTask(id jsonrpc.ID, status, message string, result json.RawMessage) *jsonrpc.Response {
	now := time.Now()
	t := &task{id: newTaskID(), created: now, updated: now, ttl: taskKeep, cancel: func(error) {},
		done: make(chan struct{}), status: status, message: message, result: result}
	s.tasks.add(t)
	return s.createTaskResponse(id, t)
}

// endTask finishes t and tells the client, which may be polling or not.
func (s *Session) endTask(t *task, status, message string, result json.RawMessage, rpcErr error) {
	if !s.tasks.finish(t, status, message, result, rpcErr) {
		return
	}
	s.log.Info("task finished", "task", t.id, "status", status)
	s.taskStatusChanged(t)
}

// taskStatusChanged sends notifications/tasks/status, which the spec
// lets a receiver send so that a client need not poll. It belongs to no
// request: over HTTP it goes on the session's stream.
func (s *Session) taskStatusChanged(t *task) {
	raw, _ := json.Marshal(s.tasks.view(t))
	s.send(&jsonrpc.Request{Method: "notifications/tasks/status", Params: raw}, jsonrpc.ID{})
}

// runTask carries out the outcome of a held call answered through t.
func (s *Session) runTask(ctx context.Context, c *inflight, m *jsonrpc.Request, o broker.Outcome) {
	t := c.task
	switch {
	case ctx.Err() != nil:
		// Cancelled (tasks/cancel ended it already), or the session ended.
		s.endTask(t, taskCancelled, "cancelled: "+context.Cause(ctx).Error(), nil, nil)
	case o.Forward:
		s.tasks.update(t, "approved; running upstream", true)
		s.taskStatusChanged(t)
		result, rpcErr := s.runUpstream(ctx, t, m.Params)
		if o.Audited != nil {
			if err := <-o.Audited; err != nil {
				result, rpcErr = withheldResult(s, err), nil
			}
		}
		switch {
		case ctx.Err() != nil:
			s.endTask(t, taskCancelled, "cancelled: "+context.Cause(ctx).Error(), nil, nil)
		case rpcErr != nil:
			s.endTask(t, taskFailed, rpcErr.Error(), nil, rpcErr)
		default:
			s.endTask(t, taskCompleted, "", result, nil)
		}
	case o.Malformed != "":
		s.endTask(t, taskFailed, o.Malformed, nil, &jsonrpc.Error{Code: jsonrpc.CodeInvalidParams, Message: o.Malformed})
	case o.Refusal != "":
		raw, _ := json.Marshal(toolError(o.Refusal))
		s.endTask(t, taskFailed, o.Refusal, raw, nil)
	default:
		// Nobody left to answer at the gate, yet the context lives: the
		// gate gave up on the call.
		s.endTask(t, taskCancelled, "the call was given up", nil, nil)
	}
}

// withheldResult is the tool error that stands in for a result whose audit
// record could not be written.
func withheldResult(s *Session, err error) json.RawMessage {
	ref := broker.NewRef()
	s.log.Error("result withheld: audit write failed", "ref", ref, "err", err)
	raw, _ := json.Marshal(toolError(fmt.Sprintf("Airlock could not write this call to its audit log, so its result is withheld (ref %s). The call may have run.", ref)))
	return raw
}

// runUpstream forwards an approved call: as a task when the tool requires
// one (its definition's execution.taskSupport), following the upstream's
// task to its end; otherwise as a plain call, without params.task, since
// an upstream that does not support tasks for the tool may refuse it.
func (s *Session) runUpstream(ctx context.Context, t *task, params json.RawMessage) (json.RawMessage, error) {
	p, err := policy.ReadObject(params, "name", "task")
	if err != nil {
		return nil, upstreamError(s, err) // the gate read them; it cannot happen
	}
	name, _, _ := p.String("name")
	if def, _ := s.tools.lookup(name); taskSupport(def) != "required" {
		params = p.Remove("task")
	}
	resp, err := s.requestRaw(ctx, "tools/call", params)
	if err != nil {
		return nil, upstreamError(s, err)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	upID, poll, ok := createdTask(resp.Result)
	if !ok {
		return resp.Result, nil // the upstream answered the call itself
	}
	return s.followTask(ctx, t, upID, poll)
}

// upstreamError is a JSON-RPC error for a call Airlock could not complete.
func upstreamError(s *Session, err error) error {
	return &jsonrpc.Error{Code: jsonrpc.CodeInternalError, Message: "upstream " + s.up.Name + ": " + err.Error()}
}

// taskSupport reads execution.taskSupport from a tool's definition, with
// exact names; "" when it has none.
func taskSupport(def *broker.ToolDefinition) string {
	if def == nil {
		return ""
	}
	d, err := policy.ReadObject(def.Raw, "execution")
	if err != nil {
		return ""
	}
	raw, ok := d.Get("execution")
	if !ok {
		return ""
	}
	e, err := policy.ReadObject(raw, "taskSupport")
	if err != nil {
		return ""
	}
	ts, _, _ := e.String("taskSupport")
	return ts
}

// createdTask reads a CreateTaskResult: the upstream's task id and its
// suggested polling interval. ok is false for any other result.
func createdTask(result json.RawMessage) (id string, poll time.Duration, ok bool) {
	r, err := policy.ReadObject(result, "task")
	if err != nil {
		return "", 0, false
	}
	raw, ok := r.Get("task")
	if !ok {
		return "", 0, false
	}
	id, st, _, poll, err := readTask(raw)
	if err != nil || id == "" || st == "" {
		return "", 0, false
	}
	return id, poll, true
}

// readTask reads a Task object with exact names.
func readTask(raw json.RawMessage) (id, status, message string, poll time.Duration, err error) {
	t, err := policy.ReadObject(raw, "taskId", "status", "statusMessage", "pollInterval")
	if err != nil {
		return "", "", "", 0, err
	}
	id, _, err = t.String("taskId")
	if err != nil {
		return "", "", "", 0, err
	}
	status, _, err = t.String("status")
	if err != nil {
		return "", "", "", 0, err
	}
	message, _, _ = t.String("statusMessage")
	if pi, ok := t.Get("pollInterval"); ok {
		var ms float64
		if json.Unmarshal(pi, &ms) == nil && ms > 0 { // a bare number: no names to match
			poll = time.Duration(ms * float64(time.Millisecond))
		}
	}
	return id, status, message, poll, nil
}

// followTask polls the upstream's task until it is finished (or needs
// input, which tasks/result delivers) and returns its result, keeping
// Airlock's task's message up to date. If the call's context ends, the
// upstream's task is cancelled too.
func (s *Session) followTask(ctx context.Context, t *task, upID string, poll time.Duration) (json.RawMessage, error) {
	// An upstream's suggestion is kept within bounds: not so often that it
	// floods, not so rarely that a finished call waits long.
	if poll <= 0 {
		poll = taskPollInterval
	}
	poll = min(max(poll, 100*time.Millisecond), 30*time.Second)
	idParams, _ := json.Marshal(map[string]string{"taskId": upID})
	cancelUpstream := func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		s.requestRaw(cctx, "tasks/cancel", idParams)
	}
	// ask asks the upstream about its task. Once the call's context has
	// ended it cancels the upstream's task and returns nothing.
	ask := func(method string) (json.RawMessage, error) {
		resp, err := s.requestRaw(ctx, method, idParams)
		switch {
		case ctx.Err() != nil:
			cancelUpstream()
			return nil, nil
		case err != nil:
			return nil, upstreamError(s, err)
		case resp.Error != nil:
			return nil, resp.Error
		}
		return resp.Result, nil
	}
	for range 100000 { // a bound on polls, against an upstream whose task never ends
		got, err := ask("tasks/get")
		if err != nil || ctx.Err() != nil {
			return nil, err
		}
		_, status, message, _, err := readTask(got)
		if err != nil {
			return nil, upstreamError(s, fmt.Errorf("tasks/get: %w", err))
		}
		if message != "" {
			s.tasks.update(t, "upstream: "+message, true)
		}
		if terminalStatus(status) || status == "input_required" {
			break
		}
		timer := time.NewTimer(poll)
		select {
		case <-timer.C:
		case <-ctx.Done():
			timer.Stop()
			cancelUpstream()
			return nil, nil
		}
	}
	return ask("tasks/result")
}

// tasksRequest serves tasks/get, tasks/result and tasks/cancel for
// Airlock's own tasks, and forwards those for the upstream's untouched.
func (s *Session) tasksRequest(ctx context.Context, c *inflight, m *jsonrpc.Request) {
	p, err := policy.ReadObject(m.Params, "taskId")
	if err != nil {
		// Airlock and the upstream could read different ids from it.
		s.answerError(c, jsonrpc.CodeInvalidParams, m.Method+": "+err.Error())
		return
	}
	id, _, _ := p.String("taskId")
	t := s.tasks.get(id)
	if t == nil {
		s.forward(ctx, c, m)
		return
	}
	switch m.Method {
	case "tasks/get":
		s.answerResult(c, s.tasks.view(t))
	case "tasks/cancel":
		if !s.tasks.finish(t, taskCancelled, "cancelled by the client", nil, nil) {
			st, _, _ := s.tasks.outcome(t)
			s.answerError(c, jsonrpc.CodeInvalidParams, fmt.Sprintf("task %s is already %s", id, st))
			return
		}
		// Withdraws the approval if the call is still held, or cancels
		// it upstream.
		t.cancel(broker.ErrClientCancelled)
		s.answerResult(c, s.tasks.view(t))
		s.taskStatusChanged(t)
	case "tasks/result":
		// Blocks until the task is finished, as the spec asks; the wait
		// ends too if the client cancels this request or the session ends.
		ctx, c.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
		s.r.pool.Go(func() {
			defer c.cancel(nil)
			select {
			case <-t.done:
			case <-ctx.Done():
				return
			case <-s.done:
				return
			}
			s.answer(c, s.taskResult(t))
		})
	}
}

// taskResult is tasks/result's answer for a finished task: the call's
// result, tied to the task in _meta, or the upstream's error.
func (s *Session) taskResult(t *task) *jsonrpc.Response {
	status, result, rpcErr := s.tasks.outcome(t)
	if rpcErr != nil {
		return &jsonrpc.Response{Error: rpcErr}
	}
	if result == nil && status == taskCancelled {
		text := "The call was cancelled before it ran (task " + t.id + ")."
		s.tasks.mu.Lock()
		if t.forwarded {
			text = "The call was cancelled while it ran upstream; it may have run (task " + t.id + ")."
		}
		s.tasks.mu.Unlock()
		result, _ = json.Marshal(toolError(text))
	}
	return &jsonrpc.Response{Result: withRelatedTask(result, t.id)}
}

// withRelatedTask adds the related-task member to a result's _meta, which
// the spec asks of tasks/result, keeping every other byte.
func withRelatedTask(result json.RawMessage, id string) json.RawMessage {
	rel, _ := json.Marshal(map[string]string{"taskId": id})
	r, err := policy.ReadObject(result, "_meta")
	if err != nil {
		return result
	}
	meta, ok := r.Get("_meta")
	if !ok {
		meta = json.RawMessage(`{}`)
	}
	mo, err := policy.ReadObject(meta, relatedTaskKey)
	if err != nil {
		return result
	}
	return r.Replace("_meta", mo.Replace(relatedTaskKey, rel))
}

// listTasks answers tasks/list with Airlock's tasks, ahead of the
// upstream's first page when the upstream lists tasks too. Later pages
// (a cursor) are the upstream's alone.
func (s *Session) listTasks(ctx context.Context, c *inflight, m *jsonrpc.Request) {
	p, err := policy.ReadObject(orEmpty(m.Params), "cursor")
	if err != nil {
		s.answerError(c, jsonrpc.CodeInvalidParams, "tasks/list: "+err.Error())
		return
	}
	if _, ok := p.Get("cursor"); ok {
		s.forward(ctx, c, m)
		return
	}
	own := s.tasks.list()
	if !s.upstreamListsTasks() {
		s.answerResult(c, map[string]any{"tasks": own})
		return
	}
	ctx, c.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
	s.r.pool.Go(func() {
		defer c.cancel(nil)
		resp, err := s.requestRaw(ctx, "tasks/list", m.Params)
		switch {
		case err != nil:
			s.answerError(c, jsonrpc.CodeInternalError, "tasks/list: upstream "+s.up.Name+": "+err.Error())
		case resp.Error != nil:
			s.answer(c, &jsonrpc.Response{Error: resp.Error})
		default:
			s.answer(c, &jsonrpc.Response{Result: mergeTasks(resp.Result, own)})
		}
	})
}

// mergeTasks puts Airlock's tasks ahead of those on an upstream's
// tasks/list page, keeping the page's other members as they are.
func mergeTasks(page json.RawMessage, own []taskJSON) json.RawMessage {
	p, err := policy.ReadObject(page, "tasks")
	if err != nil {
		return page
	}
	var theirs []json.RawMessage
	if raw, ok := p.Get("tasks"); ok {
		// An array of raw values has no member names to match loosely.
		if json.Unmarshal(raw, &theirs) != nil {
			return page
		}
	}
	all := make([]json.RawMessage, 0, len(own)+len(theirs))
	for _, t := range own {
		raw, _ := json.Marshal(t)
		all = append(all, raw)
	}
	all = append(all, theirs...)
	return p.Replace("tasks", rawArray(all))
}

// rawArray is the JSON array of items, each kept byte for byte.
func rawArray(items []json.RawMessage) []byte {
	b := []byte{'['}
	for i, raw := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, raw...)
	}
	return append(b, ']')
}

func orEmpty(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return json.RawMessage(`{}`)
	}
	return raw
}

// offeredTasks is the tasks capability Airlock declares for an upstream
// that has none, when it offers tasks: it can answer task-augmented
// tools/calls itself, and list and cancel its tasks.
const offeredTasks = `{"list":{},"cancel":{},"requests":{"tools":{"call":{}}}}`

// taskCaps is what an upstream's initialize result says of tasks.
type taskCaps struct {
	capabilities *policy.Object // the capabilities object, nil if unreadable
	tasks        bool           // it has a tasks member
	list         bool           // tasks.list is present
}

func upstreamTaskCaps(res *policy.Object) taskCaps {
	var tc taskCaps
	if res == nil {
		return tc
	}
	raw, ok := res.Get("capabilities")
	if !ok {
		return tc
	}
	caps, err := policy.ReadObject(raw, "tasks")
	if err != nil {
		return tc
	}
	tc.capabilities = caps
	tasks, ok := caps.Get("tasks")
	if !ok {
		return tc
	}
	tc.tasks = true
	if t, err := policy.ReadObject(tasks, "list"); err == nil {
		_, tc.list = t.Get("list")
	}
	return tc
}

// offerTaskSupport marks each tool on a tools/list page that says nothing
// of tasks as taking them optionally (execution.taskSupport), so that
// clients ask for a task, which Airlock can answer when it holds the call.
// A tool whose upstream says anything of taskSupport keeps it; a page or
// tool Airlock cannot read exactly passes as it is.
func offerTaskSupport(page json.RawMessage) json.RawMessage {
	p, err := policy.ReadObject(page, "tools")
	if err != nil {
		return page
	}
	raw, ok := p.Get("tools")
	if !ok {
		return page
	}
	var tools []json.RawMessage
	// An array of raw values has no member names to match loosely.
	if json.Unmarshal(raw, &tools) != nil {
		return page
	}
	changed := false
	for i, tool := range tools {
		t, err := policy.ReadObject(tool, "execution")
		if err != nil {
			continue
		}
		exec, ok := t.Get("execution")
		if !ok {
			tools[i] = t.Replace("execution", []byte(`{"taskSupport":"optional"}`))
			changed = true
			continue
		}
		e, err := policy.ReadObject(exec, "taskSupport")
		if err != nil {
			continue
		}
		if _, ok := e.Get("taskSupport"); ok {
			continue
		}
		tools[i] = t.Replace("execution", e.Replace("taskSupport", []byte(`"optional"`)))
		changed = true
	}
	if !changed {
		return page
	}
	return p.Replace("tools", rawArray(tools))
}

// A tools/call in flight is told when the gate holds it.
var _ broker.HeldCaller = (*inflight)(nil)
