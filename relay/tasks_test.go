package relay_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/relay"
)

// Tests of Airlock's own tasks: a held tools/call that asks for a task is
// answered at once with one, which ends with the call's outcome. Both
// sides are raw lines, so every byte the relay sends is the test's to read.

// line is one JSON-RPC message as the test reads it back.
type line struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params json.RawMessage `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  *struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	raw string
}

func parseLine(t *testing.T, s string) line {
	t.Helper()
	var l line
	if err := json.Unmarshal([]byte(s), &l); err != nil {
		t.Fatalf("bad line %s: %v", s, err)
	}
	l.raw = s
	return l
}

// clientUntil reads the client's lines until one satisfies ok, and
// returns it with the lines read before it.
func (rr *rawRelay) clientUntil(ok func(line) bool) (line, []line) {
	rr.t.Helper()
	var skipped []line
	for {
		s, open := rr.clientGets()
		if !open {
			rr.t.Fatalf("the relay closed the client's side; read %v", skipped)
		}
		l := parseLine(rr.t, s)
		if ok(l) {
			return l, skipped
		}
		skipped = append(skipped, l)
	}
}

// answerTo is the client's answer to its request with id.
func answerTo(id string) func(line) bool {
	return func(l line) bool { return string(l.ID) == id && l.Method == "" }
}

// taskView is a Task as the client reads it.
type taskView struct {
	TaskID        string `json:"taskId"`
	Status        string `json:"status"`
	StatusMessage string `json:"statusMessage"`
	CreatedAt     string `json:"createdAt"`
	LastUpdatedAt string `json:"lastUpdatedAt"`
	TTL           int64  `json:"ttl"`
	PollInterval  int64  `json:"pollInterval"`
}

func readTask(t *testing.T, raw json.RawMessage) taskView {
	t.Helper()
	var v taskView
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatalf("not a task: %s: %v", raw, err)
	}
	return v
}

const taskCall = `{"name":"echo","arguments":{"text":"hi"},"task":{"ttl":60000}}`

// holdAsTask sends a tools/call that asks for a task, holds it at the gate
// as the core does (Held), and returns the check and the task the client
// was answered with.
func holdAsTask(t *testing.T, rr *rawRelay, id string, params string) (*check, taskView) {
	t.Helper()
	rr.client(`{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":` + params + `}`)
	c := rr.gateGets()
	if !c.call.Task {
		t.Fatal("the gate was not told the call asked for a task")
	}
	c.caller.(broker.HeldCaller).Held(broker.Pending{ApprovalID: "appr-1", Reason: "writes need a person", Left: 3 * time.Minute})
	created, _ := rr.clientUntil(answerTo(id))
	var res struct {
		Task json.RawMessage `json:"task"`
	}
	if err := json.Unmarshal(created.Result, &res); err != nil || res.Task == nil {
		t.Fatalf("the held call was answered %s, want a CreateTaskResult", created.raw)
	}
	return c, readTask(t, res.Task)
}

// tasksCall sends a tasks/* request and returns the answer.
func tasksCall(t *testing.T, rr *rawRelay, id, method, taskID string) line {
	t.Helper()
	rr.client(`{"jsonrpc":"2.0","id":` + id + `,"method":"` + method + `","params":{"taskId":"` + taskID + `"}}`)
	l, _ := rr.clientUntil(answerTo(id))
	return l
}

// upstreamCall reads the next request the relay sent the upstream.
func upstreamCall(t *testing.T, rr *rawRelay) line {
	t.Helper()
	s, ok := rr.upstreamGets()
	if !ok {
		t.Fatal("the relay closed the upstream")
	}
	return parseLine(t, s)
}

func TestHeldTaskCallApproved(t *testing.T) {
	rr := newRawRelay(t)
	initializeRaw(t, rr)
	c, task := holdAsTask(t, rr, "2", taskCall)
	if !strings.HasPrefix(task.TaskID, "airlock-") || len(task.TaskID) < len("airlock-")+26 ||
		task.Status != "working" || task.StatusMessage != "waiting for approval (ref appr-1): writes need a person" ||
		task.TTL < (3*time.Minute).Milliseconds() || task.PollInterval <= 0 || task.CreatedAt == "" || task.LastUpdatedAt == "" {
		t.Errorf("created task = %+v", task)
	}
	if _, err := time.Parse(time.RFC3339Nano, task.CreatedAt); err != nil {
		t.Errorf("createdAt %q: %v", task.CreatedAt, err)
	}
	if got := readTask(t, tasksCall(t, rr, "3", "tasks/get", task.TaskID).Result); got.Status != "working" || got.StatusMessage != task.StatusMessage {
		t.Errorf("tasks/get while held = %+v", got)
	}
	// tasks/result blocks until the task is finished.
	rr.client(`{"jsonrpc":"2.0","id":4,"method":"tasks/result","params":{"taskId":"` + task.TaskID + `"}}`)

	c.decide(t, broker.Outcome{Forward: true})
	up := upstreamCall(t, rr)
	// The tool does not require a task: it goes as a plain call, the
	// judged name and arguments byte for byte.
	if up.Method != "tools/call" || string(up.Params) != `{"name":"echo","arguments":{"text":"hi"}}` {
		t.Fatalf("upstream got %s", up.raw)
	}
	rr.upstream(`{"jsonrpc":"2.0","id":` + string(up.ID) + `,"result":{"content":[{"type":"text","text":"hi"}]}}`)
	res, before := rr.clientUntil(answerTo("4"))
	if string(res.Result) != `{"content":[{"type":"text","text":"hi"}],"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"`+task.TaskID+`"}}}` {
		t.Errorf("tasks/result = %s", res.raw)
	}
	for _, l := range before {
		if l.Method != "notifications/tasks/status" {
			t.Errorf("unexpected line before the result: %s", l.raw)
		}
	}
	if got := readTask(t, tasksCall(t, rr, "5", "tasks/get", task.TaskID).Result); got.Status != "completed" {
		t.Errorf("tasks/get after the result = %+v", got)
	}
	// A finished task cannot be cancelled.
	if l := tasksCall(t, rr, "6", "tasks/cancel", task.TaskID); l.Error == nil || l.Error.Code != -32602 {
		t.Errorf("tasks/cancel of a completed task = %s", l.raw)
	}
}

func TestHeldTaskCallDenied(t *testing.T) {
	rr := newRawRelay(t)
	initializeRaw(t, rr)
	c, task := holdAsTask(t, rr, "2", taskCall)
	refusal := "The call to echo was denied by alice: not now (ref appr-1)."
	c.decide(t, broker.Outcome{Refusal: refusal})
	st, _ := rr.clientUntil(func(l line) bool { return l.Method == "notifications/tasks/status" })
	if got := readTask(t, st.Params); got.TaskID != task.TaskID || got.Status != "failed" || got.StatusMessage != refusal {
		t.Errorf("status notification = %+v", got)
	}
	if got := readTask(t, tasksCall(t, rr, "3", "tasks/get", task.TaskID).Result); got.Status != "failed" || got.StatusMessage != refusal {
		t.Errorf("tasks/get after denial = %+v", got)
	}
	res := tasksCall(t, rr, "4", "tasks/result", task.TaskID)
	var r struct {
		IsError bool `json:"isError"`
		Content []struct {
			Text string `json:"text"`
		} `json:"content"`
	}
	if json.Unmarshal(res.Result, &r) != nil || !r.IsError || len(r.Content) != 1 || r.Content[0].Text != refusal {
		t.Errorf("tasks/result after denial = %s", res.raw)
	}
	if _, up := rr.rest(); len(up) != 0 {
		t.Errorf("a denied call reached the upstream: %q", up)
	}
}

func TestHeldTaskCallCancelled(t *testing.T) {
	rr := newRawRelay(t)
	initializeRaw(t, rr)
	c, task := holdAsTask(t, rr, "2", taskCall)
	if got := readTask(t, tasksCall(t, rr, "3", "tasks/cancel", task.TaskID).Result); got.Status != "cancelled" {
		t.Errorf("tasks/cancel = %+v", got)
	}
	select {
	case <-c.ctx.Done():
	case <-timeout():
		t.Fatal("the held call's context did not end")
	}
	if cause := context.Cause(c.ctx); !errors.Is(cause, broker.ErrClientCancelled) {
		t.Errorf("the gate's context ended with %v, want ErrClientCancelled", cause)
	}
	if got := readTask(t, tasksCall(t, rr, "4", "tasks/get", task.TaskID).Result); got.Status != "cancelled" {
		t.Errorf("tasks/get after cancel = %+v", got)
	}
	if _, up := rr.rest(); len(up) != 0 {
		t.Errorf("a cancelled call reached the upstream: %q", up)
	}
}

// Task requests for ids that are not Airlock's are the upstream's: they
// pass byte for byte, and so do the answers.
func TestUpstreamTaskPassesThrough(t *testing.T) {
	rr := newRawRelay(t)
	initializeRaw(t, rr)
	for i, method := range []string{"tasks/get", "tasks/result", "tasks/cancel"} {
		id := string(rune('2' + i))
		params := `{ "taskId" : "up-123", "_meta":{"k":1} }`
		rr.client(`{"jsonrpc":"2.0","id":` + id + `,"method":"` + method + `","params":` + params + `}`)
		up := upstreamCall(t, rr)
		if up.Method != method || string(up.Params) != params {
			t.Fatalf("upstream got %s", up.raw)
		}
		result := `{"taskId":"up-123","status":"working","createdAt":"x","lastUpdatedAt":"x","ttl":null}`
		rr.upstream(`{"jsonrpc":"2.0","id":` + string(up.ID) + `,"result":` + result + `}`)
		mustGet(t, rr.clientGets, `{"jsonrpc":"2.0","id":`+id+`,"result":`+result+`}`)
	}
}

// tasks/list lists Airlock's tasks (the upstream here lists none).
func TestTasksListListsAirlocksTasks(t *testing.T) {
	rr := newRawRelay(t)
	initializeRaw(t, rr)
	c, task := holdAsTask(t, rr, "2", taskCall)
	rr.client(`{"jsonrpc":"2.0","id":3,"method":"tasks/list"}`)
	l, _ := rr.clientUntil(answerTo("3"))
	var list struct {
		Tasks []taskView `json:"tasks"`
	}
	if json.Unmarshal(l.Result, &list) != nil || len(list.Tasks) != 1 || list.Tasks[0].TaskID != task.TaskID || list.Tasks[0].Status != "working" {
		t.Errorf("tasks/list = %s", l.raw)
	}
	c.decide(t, broker.Outcome{Refusal: "no"})
}

// A tool that requires a task runs upstream as one: Airlock follows the
// upstream's task to its end and completes its own with the result.
func TestHeldTaskFollowsUpstreamTask(t *testing.T) {
	rr := newRawRelay(t)
	initializeRaw(t, rr)
	rr.client(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	up := upstreamCall(t, rr)
	rr.upstream(`{"jsonrpc":"2.0","id":` + string(up.ID) + `,"result":{"tools":[{"name":"research","inputSchema":{"type":"object"},"execution":{"taskSupport":"required"}}]}}`)
	rr.clientUntil(answerTo("2"))

	params := `{"name":"research","arguments":{"topic":"x"},"task":{}}`
	c, task := holdAsTask(t, rr, "3", params)
	c.decide(t, broker.Outcome{Forward: true})
	up = upstreamCall(t, rr)
	if up.Method != "tools/call" || string(up.Params) != params {
		t.Fatalf("upstream got %s, want the call as received", up.raw)
	}
	rr.upstream(`{"jsonrpc":"2.0","id":` + string(up.ID) + `,"result":{"task":{"taskId":"up-7","status":"working","createdAt":"x","lastUpdatedAt":"x","ttl":60000,"pollInterval":100}}}`)
	up = upstreamCall(t, rr)
	if up.Method != "tasks/get" || string(up.Params) != `{"taskId":"up-7"}` {
		t.Fatalf("upstream got %s, want tasks/get", up.raw)
	}
	rr.upstream(`{"jsonrpc":"2.0","id":` + string(up.ID) + `,"result":{"taskId":"up-7","status":"completed","statusMessage":"done","createdAt":"x","lastUpdatedAt":"x","ttl":60000}}`)
	up = upstreamCall(t, rr)
	if up.Method != "tasks/result" || string(up.Params) != `{"taskId":"up-7"}` {
		t.Fatalf("upstream got %s, want tasks/result", up.raw)
	}
	rr.upstream(`{"jsonrpc":"2.0","id":` + string(up.ID) + `,"result":{"content":[{"type":"text","text":"report"}],"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"up-7"}}}}`)
	st, _ := rr.clientUntil(func(l line) bool {
		return l.Method == "notifications/tasks/status" && readTask(t, l.Params).Status == "completed"
	})
	if got := readTask(t, st.Params); got.TaskID != task.TaskID {
		t.Errorf("status notification = %+v", got)
	}
	res := tasksCall(t, rr, "4", "tasks/result", task.TaskID)
	if string(res.Result) != `{"content":[{"type":"text","text":"report"}],"_meta":{"io.modelcontextprotocol/related-task":{"taskId":"`+task.TaskID+`"}}}` {
		t.Errorf("tasks/result = %s", res.raw)
	}
}

// A call that asks for a task and is refused without a hold still gets
// a task, failed, which says why: the client asked for a task and reads
// only one.
func TestRefusedTaskCallIsAFailedTask(t *testing.T) {
	rr := newRawRelay(t)
	initializeRaw(t, rr)
	rr.client(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":` + taskCall + `}`)
	rr.gateGets().decide(t, broker.Outcome{Refusal: "denied by policy"})
	l, _ := rr.clientUntil(answerTo("2"))
	var res struct {
		Task taskView `json:"task"`
	}
	if json.Unmarshal(l.Result, &res) != nil || res.Task.Status != "failed" || res.Task.StatusMessage != "denied by policy" {
		t.Errorf("refused task call answered %s", l.raw)
	}
}

// An allowed call is forwarded exactly as received, params.task included,
// and the upstream's answer passes as it is.
func TestAllowedTaskCallForwardedAsReceived(t *testing.T) {
	rr := newRawRelay(t)
	initializeRaw(t, rr)
	rr.client(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":` + taskCall + `}`)
	rr.gateGets().decide(t, broker.Outcome{Forward: true})
	up := upstreamCall(t, rr)
	if string(up.Params) != taskCall {
		t.Fatalf("upstream got %s", up.raw)
	}
	rr.upstream(`{"jsonrpc":"2.0","id":` + string(up.ID) + `,"result":{"content":[]}}`)
	mustGet(t, rr.clientGets, `{"jsonrpc":"2.0","id":2,"result":{"content":[]}}`)
}

// With OfferTasks, an upstream without tasks is declared to have them, for
// tools/call, and each tool that says nothing of tasks may be called as
// one; what the upstream declares itself passes as it is.
func TestOfferTasks(t *testing.T) {
	rr := newRawRelay(t, relay.Options{OfferTasks: true})
	rr.client(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"c","version":"1"}}}`)
	up := parseLine(t, nextLine(t, rr.upstreamGets))
	rr.upstream(`{"jsonrpc":"2.0","id":` + string(up.ID) + `,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"s","version":"1"}}}`)
	init, _ := rr.clientUntil(answerTo("1"))
	var caps struct {
		Capabilities struct {
			Tasks *struct {
				Requests struct {
					Tools struct {
						Call *struct{} `json:"call"`
					} `json:"tools"`
				} `json:"requests"`
			} `json:"tasks"`
		} `json:"capabilities"`
	}
	if err := json.Unmarshal(init.Result, &caps); err != nil || caps.Capabilities.Tasks == nil || caps.Capabilities.Tasks.Requests.Tools.Call == nil {
		t.Fatalf("initialize result %s: no tasks for tools/call offered (%v)", init.Result, err)
	}

	rr.client(`{"jsonrpc":"2.0","id":2,"method":"tools/list"}`)
	up = parseLine(t, nextLine(t, rr.upstreamGets))
	rr.upstream(`{"jsonrpc":"2.0","id":` + string(up.ID) + `,"result":{"tools":[` +
		`{"name":"write","inputSchema":{"type":"object"}},` +
		`{"name":"research","inputSchema":{"type":"object"},"execution":{"taskSupport":"required"}}]}}`)
	list, _ := rr.clientUntil(answerTo("2"))
	var tools struct {
		Tools []struct {
			Name      string `json:"name"`
			Execution struct {
				TaskSupport string `json:"taskSupport"`
			} `json:"execution"`
		} `json:"tools"`
	}
	if err := json.Unmarshal(list.Result, &tools); err != nil || len(tools.Tools) != 2 {
		t.Fatalf("tools/list result %s: %v", list.Result, err)
	}
	if got := tools.Tools[0].Execution.TaskSupport; got != "optional" {
		t.Errorf("write: taskSupport %q, want optional", got)
	}
	if got := tools.Tools[1].Execution.TaskSupport; got != "required" {
		t.Errorf("research: taskSupport %q, want the upstream's required", got)
	}
}

// nextLine is the next line from get.
func nextLine(t *testing.T, get func() (string, bool)) string {
	t.Helper()
	s, ok := get()
	if !ok {
		t.Fatal("the relay closed the stream")
	}
	return s
}
