package relay

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
	"github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/policy"
	"github.com/airlock-mcp/airlock/relay/wire"
)

// Protocol versions Airlock relays. The newest, 2026-07-28, is not among
// them: it replaces the initialize handshake with server/discover and
// changes the HTTP transport, and many servers fail on it. A client offering
// it is negotiated down to LatestProtocolVersion.
const LatestProtocolVersion = "2025-11-25"

// SupportedProtocolVersions lists the versions Airlock accepts, newest first.
var SupportedProtocolVersions = []string{"2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"}

func supportedVersion(v string) bool {
	for _, s := range SupportedProtocolVersions {
		if s == v {
			return true
		}
	}
	return false
}

// clientSide is how a session reaches its MCP client.
type clientSide interface {
	// send delivers msg to the client. related is the client's request that
	// msg answers or belongs to (progress, or an upstream request made while
	// serving it); it is invalid for messages that belong to none. The
	// streamable HTTP transport uses it to pick the response stream.
	send(msg jsonrpc.Message, related jsonrpc.ID) error
}

// A Session relays one client session to one upstream session. Messages pass
// untouched, with three exceptions: request ids are renumbered on the way up
// (so Airlock can make requests of its own), initialize is held to a
// protocol version Airlock supports, and tools/call goes through the gate.
type Session struct {
	id        string // a bearer capability over HTTP: only its client sees it
	ref       string // what everyone else sees (SessionRef)
	r         *Relay
	up        *Upstream
	conn      mcp.Connection
	client    clientSide
	principal broker.Principal
	log       *slog.Logger
	// releaseChild gives back the session's count against
	// limits.children_per_server once its upstream is closed.
	releaseChild func()
	// logs limits the lines a peer can make repeat (see logLimiter).
	logs logLimiter

	nextID atomic.Int64

	mu       sync.Mutex
	calls    map[int64]*inflight      // requests in flight upstream, by the id we gave them
	byClient map[jsonrpc.ID]*inflight // client requests not yet answered, by the client's id
	progress map[string]*inflight     // progress tokens (their JSON text) of requests in flight
	tools    toolCache
	info     broker.ClientInfo
	closed   bool
	// upTasksList says the upstream lists its tasks (capabilities.tasks.list).
	upTasksList bool

	// tasks are Airlock's own tasks: held calls answered through one.
	tasks taskTable

	done chan struct{}
	err  error // why the session ended; set before done is closed
}

// inflight is one request a session is relaying, or one of Airlock's own.
type inflight struct {
	session  *Session   // the session it is relayed in
	clientID jsonrpc.ID // invalid for Airlock's own requests
	upID     int64      // 0 until forwarded
	method   string
	token    string // the client's progress token as JSON text, if any
	started  time.Time

	// reply receives the upstream's answer to Airlock's own requests.
	reply chan *jsonrpc.Response

	// cancel ends a tools/call that has not been forwarded yet, saying why.
	// It is set before the call is handed to the gate, and the goroutine
	// that handed it calls it once the gate is done.
	cancel context.CancelCauseFunc
	// audited yields the outcome of the call's audit write, which must be
	// durable before its result reaches the client.
	audited <-chan error

	// wantTask says the tools/call asked for a task (params.task); task is
	// the one Airlock answered it with once the gate held it. Both are
	// set on the goroutine that runs the call through the gate.
	wantTask bool
	task     *task

	// heartbeats counts progress notifications Airlock itself sent with the
	// client's token while the gate held the call; upstream progress is
	// shifted by it so that the client sees progress increase.
	heartbeats atomic.Int64
}

// newSessionID is 26 base32 characters from crypto/rand, 130 bits: over
// HTTP the id is all that lets a request act in a session (and withdraw its
// held calls), so it must not be guessable.
func newSessionID() string { return rand.Text() }

// SessionRef is how a session is named everywhere but in its own
// responses (the UI, audit records, logs, Slack, the policy input): the
// first 12 hex digits of the SHA-256 of its id. It tells sessions apart
// without handing anyone who can read them the capability to act in one.
func SessionRef(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:6])
}

// startSession dials the upstream and starts relaying its messages to client.
func (r *Relay) startSession(ctx context.Context, up *Upstream, client clientSide, p broker.Principal) (*Session, error) {
	releaseChild, err := r.limits.child(up)
	if err != nil {
		return nil, err
	}
	conn, err := up.Dial(ctx)
	if err != nil {
		releaseChild()
		return nil, fmt.Errorf("broker: start upstream %s: %w", up.Name, err)
	}
	id := newSessionID()
	s := &Session{
		id:        id,
		ref:       SessionRef(id),
		r:         r,
		up:        up,
		conn:      conn,
		client:    client,
		principal: p,
		calls:     make(map[int64]*inflight),
		byClient:  make(map[jsonrpc.ID]*inflight),
		progress:  make(map[string]*inflight),
		done:      make(chan struct{}),
	}
	s.releaseChild = releaseChild
	s.log = r.log.With("session", s.ref, "server", up.Name)
	go s.readUpstream()
	s.log.Info("session started", "principal", p.ID)
	return s, nil
}

// closing reports whether the session has begun to close.
func (s *Session) closing() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.closed
}

// Done is closed when the session has ended.
func (s *Session) Done() <-chan struct{} { return s.done }

// Err says why the session ended: nil when the client closed it, the
// upstream's failure otherwise.
func (s *Session) Err() error {
	<-s.done
	return s.err
}

// handle processes one message from the client. It does not wait for the
// upstream's answer, which comes back through client.send.
func (s *Session) handle(ctx context.Context, msg jsonrpc.Message) {
	switch m := msg.(type) {
	case *jsonrpc.Response:
		// The client answering one of the upstream's requests (sampling,
		// elicitation, roots): upstream ids pass through unchanged.
		s.write(ctx, m)
	case *jsonrpc.Request:
		if !m.IsCall() {
			s.handleNotification(ctx, m)
			return
		}
		c, ok := s.accept(m)
		if !ok {
			return
		}
		switch m.Method {
		case "tools/call":
			// The gate may wait (for the tool list, later for a person),
			// and must not stall the client's other messages meanwhile.
			// Its context ends only through c.cancel, whose cause says
			// why (broker.ErrClientCancelled, ErrClientGone,
			// ErrSessionClosed): ctx (an HTTP request's, or ServeConn's)
			// ends when the client goes, before the relay can say so.
			ctx, c.cancel = context.WithCancelCause(context.WithoutCancel(ctx))
			s.r.pool.Go(func() { s.toolsCall(ctx, c, m) })
		case "initialize":
			s.initialize(ctx, c, m)
		case "tasks/get", "tasks/result", "tasks/cancel":
			s.tasksRequest(ctx, c, m)
		case "tasks/list":
			s.listTasks(ctx, c, m)
		case "server/discover":
			// The 2026-07-28 handshake; clients fall back to initialize.
			s.answerError(c, jsonrpc.CodeMethodNotFound, "server/discover is not supported; use initialize")
		default:
			s.forward(ctx, c, m)
		}
	}
}

// accept registers a client request, refusing a second request with the id
// of one still in flight.
func (s *Session) accept(m *jsonrpc.Request) (*inflight, bool) {
	c := &inflight{session: s, clientID: m.ID, method: m.Method, token: progressToken(m.Params), started: time.Now()}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		s.client.send(errorResponse(m.ID, jsonrpc.CodeInternalError, "session closed"), m.ID)
		return nil, false
	}
	if _, dup := s.byClient[m.ID]; dup {
		s.mu.Unlock()
		s.client.send(errorResponse(m.ID, jsonrpc.CodeInvalidRequest, "a request with this id is already in flight"), m.ID)
		return nil, false
	}
	s.byClient[m.ID] = c
	s.mu.Unlock()
	return c, true
}

// handleNotification relays a message without an id. Only notifications
// pass: a request sent without an id (a "tools/call" among them) would
// reach the upstream without passing the gate, and has nobody to answer.
func (s *Session) handleNotification(ctx context.Context, m *jsonrpc.Request) {
	switch {
	case m.Method == "notifications/cancelled":
		s.clientCancelled(ctx, m)
	case strings.HasPrefix(m.Method, "notifications/"):
		s.write(ctx, m)
	default:
		s.logs.Log(s.log, slog.LevelWarn, "dropped a request without an id: Airlock relays only notifications without one", "method", m.Method)
	}
}

// forward sends a client request upstream under a fresh id.
func (s *Session) forward(ctx context.Context, c *inflight, m *jsonrpc.Request) {
	upID := s.nextID.Add(1)
	s.mu.Lock()
	if s.closed || s.byClient[c.clientID] != c {
		// Closed or cancelled while it waited at the gate.
		s.mu.Unlock()
		return
	}
	c.upID = upID
	s.calls[upID] = c
	if c.token != "" {
		s.progress[c.token] = c
	}
	s.mu.Unlock()
	err := s.conn.Write(ctx, &jsonrpc.Request{ID: upstreamID(upID), Method: m.Method, Params: m.Params})
	if err != nil {
		s.log.Warn("forward failed", "method", m.Method, "err", err)
		// takeUp has already forgotten c as a client request, so it is
		// answered here directly (answer would find nothing to answer).
		if s.takeUp(upID) != nil {
			s.send(errorResponse(c.clientID, jsonrpc.CodeInternalError, "upstream "+s.up.Name+" is unavailable: "+err.Error()), c.clientID)
		}
	}
}

// request makes a request of Airlock's own to the upstream and waits for the
// answer.
func (s *Session) request(ctx context.Context, method string, params any) (json.RawMessage, error) {
	raw, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	r, err := s.requestRaw(ctx, method, raw)
	if err != nil {
		return nil, err
	}
	if r.Error != nil {
		return nil, r.Error
	}
	return r.Result, nil
}

// requestRaw makes a request of Airlock's own with params as they are
// (an approved call's, byte for byte) and returns the upstream's answer,
// an error among them.
func (s *Session) requestRaw(ctx context.Context, method string, raw json.RawMessage) (*jsonrpc.Response, error) {
	c := &inflight{method: method, started: time.Now(), reply: make(chan *jsonrpc.Response, 1)}
	upID := s.nextID.Add(1)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, errSessionClosed
	}
	s.calls[upID] = c
	s.mu.Unlock()
	if err := s.conn.Write(ctx, &jsonrpc.Request{ID: upstreamID(upID), Method: method, Params: raw}); err != nil {
		s.takeUp(upID)
		return nil, err
	}
	select {
	case r := <-c.reply:
		return r, nil
	case <-ctx.Done():
		if s.takeUp(upID) != nil {
			s.write(context.WithoutCancel(ctx), cancelledNotification(upstreamID(upID), "Airlock stopped waiting"))
		}
		return nil, ctx.Err()
	case <-s.done:
		return nil, errSessionClosed
	}
}

// errSessionClosed ends requests, and held calls, of a closed session.
var errSessionClosed = broker.ErrSessionClosed

// answerAudited sends a tools/call's result once the call's audit record
// is durable, without holding up the upstream's other messages meanwhile.
func (s *Session) answerAudited(c *inflight, m *jsonrpc.Response) {
	send := func(err error) {
		resp := &jsonrpc.Response{ID: c.clientID, Result: m.Result, Error: m.Error}
		if err != nil {
			// The call ran, but there is no durable trace of it: the result
			// is withheld rather than handed over unaudited.
			ref := broker.NewRef()
			s.log.Error("result withheld: audit write failed", "ref", ref, "err", err)
			raw, _ := json.Marshal(toolError(fmt.Sprintf("Airlock could not write this call to its audit log, so its result is withheld (ref %s). The call may have run.", ref)))
			resp = &jsonrpc.Response{ID: c.clientID, Result: raw}
		}
		s.send(s.plainAnswerAsTask(c, resp), c.clientID)
	}
	select {
	case err := <-c.audited:
		send(err)
	default:
		s.r.pool.Go(func() { send(<-c.audited) })
	}
}

// takeUp removes a forwarded call, reporting nil if someone else already did.
func (s *Session) takeUp(upID int64) *inflight {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.calls[upID]
	if c == nil {
		return nil
	}
	delete(s.calls, upID)
	s.forgetLocked(c)
	return c
}

func (s *Session) forgetLocked(c *inflight) {
	if c.clientID.IsValid() && s.byClient[c.clientID] == c {
		delete(s.byClient, c.clientID)
	}
	if c.token != "" && s.progress[c.token] == c {
		delete(s.progress, c.token)
	}
}

// takeClient removes a client request that may not have been forwarded.
func (s *Session) takeClient(c *inflight) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.byClient[c.clientID] != c {
		return false
	}
	if c.upID != 0 {
		delete(s.calls, c.upID)
	}
	s.forgetLocked(c)
	return true
}

// answer sends the client the response to c, unless c was already answered
// or cancelled.
func (s *Session) answer(c *inflight, resp *jsonrpc.Response) {
	if !s.takeClient(c) {
		return
	}
	resp.ID = c.clientID
	s.send(resp, c.clientID)
}

func (s *Session) answerError(c *inflight, code int64, msg string) {
	s.answer(c, errorResponse(c.clientID, code, msg))
}

// answerResult answers c with a result Airlock built itself.
func (s *Session) answerResult(c *inflight, result any) {
	raw, err := json.Marshal(result)
	if err != nil {
		s.answerError(c, jsonrpc.CodeInternalError, "encoding result: "+err.Error())
		return
	}
	s.answer(c, &jsonrpc.Response{Result: raw})
}

func (s *Session) send(msg jsonrpc.Message, related jsonrpc.ID) {
	if err := s.client.send(msg, related); err != nil {
		s.log.Debug("send to client failed", "err", err)
	}
}

// write sends a message upstream as it is.
func (s *Session) write(ctx context.Context, msg jsonrpc.Message) {
	if err := s.conn.Write(ctx, msg); err != nil {
		s.logs.Log(s.log, slog.LevelWarn, "write upstream failed", "err", err)
	}
}

// clientCancelled handles notifications/cancelled from the client: a call
// still at the gate is dropped and never forwarded; a forwarded one is
// cancelled upstream under the id the upstream knows.
func (s *Session) clientCancelled(ctx context.Context, m *jsonrpc.Request) {
	p, err := policy.ReadObject(m.Params, "requestId", "reason")
	if err != nil {
		return
	}
	rawID, _ := p.Get("requestId")
	reason, _, _ := p.String("reason")
	var requestID any
	if json.Unmarshal(rawID, &requestID) != nil { // a bare value: no member names to match loosely
		return
	}
	id, err := jsonrpc.MakeID(requestID)
	if err != nil {
		return
	}
	cause := broker.ErrClientCancelled
	if r := cancelReason(reason); r != "" {
		// The client's own words ("Request timed out") say more than
		// "cancelled" to whoever reads the withdrawal.
		cause = fmt.Errorf("%w: %s", broker.ErrClientCancelled, r)
	}
	if timedOut(reason) {
		cause = timeoutCause{cause}
	}
	s.cancelClientRequest(ctx, id, reason, cause)
}

// timedOut says whether a cancellation's reason is the client's request
// timing out, rather than someone cancelling it: the TypeScript SDK says
// "Request timed out", the go-sdk "context deadline exceeded" (its
// ctx.Err()), others "timeout". Such a client will likely call again.
func timedOut(reason string) bool {
	r := strings.ToLower(reason)
	return strings.Contains(r, "timed out") || strings.Contains(r, "timeout") || strings.Contains(r, "deadline exceeded")
}

// timeoutCause is a cancellation's cause that says, to errors.Is, that the
// client timed out too, and reads as the cancellation does.
type timeoutCause struct{ error }

func (c timeoutCause) Unwrap() []error { return []error{c.error, broker.ErrClientTimedOut} }

// maxCancelReason bounds the client's reason kept in a withdrawal.
const maxCancelReason = 200

// cancelReason is a cancellation's reason as kept in the audit log: one
// line of at most maxCancelReason bytes, since a client writes it.
func cancelReason(r string) string {
	r = strings.TrimSpace(strings.Map(func(c rune) rune {
		if unicode.IsControl(c) {
			return ' '
		}
		return c
	}, strings.ToValidUTF8(r, "\uFFFD")))
	if len(r) > maxCancelReason {
		cut := maxCancelReason
		for cut > 0 && !utf8.RuneStart(r[cut]) {
			cut--
		}
		r = r[:cut] + "…"
	}
	return r
}

// cancelClientRequest gives up on the client's request id: the client will
// not read an answer (it cancelled, or it went away).
func (s *Session) cancelClientRequest(ctx context.Context, id jsonrpc.ID, reason string, cause error) {
	if c := s.inflightOf(id); c != nil {
		s.cancelInflight(ctx, c, reason, cause)
	}
}

// inflightOf is the client's request id in flight, nil if none is.
func (s *Session) inflightOf(id jsonrpc.ID) *inflight {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.byClient[id]
}

// cancelInflight gives up on c, unless it was answered or cancelled
// already (its id may be another request's by now).
func (s *Session) cancelInflight(ctx context.Context, c *inflight, reason string, cause error) {
	s.mu.Lock()
	upID := c.upID
	s.mu.Unlock()
	if !s.takeClient(c) {
		return
	}
	if c.cancel != nil {
		c.cancel(cause)
	}
	if upID != 0 {
		s.write(context.WithoutCancel(ctx), cancelledNotification(upstreamID(upID), reason))
	}
	s.log.Debug("request cancelled", "method", c.method, "reason", reason)
}

func cancelledNotification(id jsonrpc.ID, reason string) *jsonrpc.Request {
	params, _ := json.Marshal(struct {
		RequestID any    `json:"requestId"`
		Reason    string `json:"reason,omitempty"`
	}{id.Raw(), reason})
	return &jsonrpc.Request{Method: "notifications/cancelled", Params: params}
}

// readUpstream relays the upstream's messages until it goes away.
func (s *Session) readUpstream() {
	ctx := context.Background()
	for {
		msg, err := s.conn.Read(ctx)
		if err != nil {
			var pe *wire.ParseError
			if errors.As(err, &pe) {
				s.logs.Log(s.log, slog.LevelWarn, "bad message from upstream", "err", err)
				continue
			}
			s.close(fmt.Errorf("upstream %s: %w", s.up.Name, err))
			return
		}
		switch m := msg.(type) {
		case *jsonrpc.Response:
			s.upstreamResponse(m)
		case *jsonrpc.Request:
			s.upstreamRequest(m)
		}
	}
}

func (s *Session) upstreamResponse(m *jsonrpc.Response) {
	upID, ok := m.ID.Raw().(int64)
	if !ok {
		s.logs.Log(s.log, slog.LevelWarn, "upstream answered an id Airlock never sent", "id", m.ID.Raw())
		return
	}
	c := s.takeUp(upID)
	if c == nil {
		return // cancelled, or answered already
	}
	if c.reply != nil {
		c.reply <- m
		return
	}
	resp := &jsonrpc.Response{ID: c.clientID, Result: m.Result, Error: m.Error}
	switch c.method {
	case "initialize":
		resp.Result = s.initialized(c, m)
	case "tools/list":
		if m.Error == nil {
			s.recordTools(m.Result)
			if s.r.offerTasks {
				resp.Result = offerTaskSupport(m.Result)
			}
		}
	case "tools/call":
		if c.audited != nil {
			s.answerAudited(c, m)
			return
		}
		resp = s.plainAnswerAsTask(c, resp)
	}
	s.send(resp, c.clientID)
}

func (s *Session) upstreamRequest(m *jsonrpc.Request) {
	var related jsonrpc.ID
	switch m.Method {
	case "notifications/progress":
		related, m = s.relayProgress(m)
		if m == nil {
			return
		}
	case "notifications/tools/list_changed":
		s.tools.invalidate()
	case "notifications/resources/list_changed", "notifications/prompts/list_changed",
		"notifications/resources/updated", "notifications/roots/list_changed":
		// Session-wide news: no request to attach it to.
	default:
		// Upstream requests (sampling, elicitation, roots/list, ping) and
		// log messages arrive without saying which client request they
		// serve. When only one is in flight, it is that one; the HTTP
		// transport then carries them on that request's stream.
		related = s.soleRequest()
	}
	s.send(m, related)
}

// soleRequest returns the client's only request in flight, if there is
// exactly one.
func (s *Session) soleRequest() jsonrpc.ID {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.byClient) != 1 {
		return jsonrpc.ID{}
	}
	for id := range s.byClient {
		return id
	}
	return jsonrpc.ID{}
}

// relayProgress attaches upstream progress to the client request that gave
// its token, shifting its progress past Airlock's own heartbeats if there
// were any, so that it keeps increasing. Its total passes as the upstream
// sent it: it is the upstream's measure of the work, and shifting it
// would make a client's percentage wrong (5 of 5 read as 5 of 8).
func (s *Session) relayProgress(m *jsonrpc.Request) (jsonrpc.ID, *jsonrpc.Request) {
	tok := progressTokenOf(m.Params)
	s.mu.Lock()
	c := s.progress[tok]
	s.mu.Unlock()
	if c == nil {
		return jsonrpc.ID{}, m
	}
	if n := c.heartbeats.Load(); n > 0 {
		m = &jsonrpc.Request{Method: m.Method, Params: shift(m.Params, "progress", n)}
	}
	return c.clientID, m
}

// shift adds by to the number params[key], keeping every other byte.
func shift(params json.RawMessage, key string, by int64) json.RawMessage {
	p, err := policy.ReadObject(params, key)
	if err != nil {
		return params
	}
	var v float64
	if raw, ok := p.Get(key); ok && json.Unmarshal(raw, &v) == nil {
		shifted, _ := json.Marshal(v + float64(by))
		return p.Replace(key, shifted)
	}
	return params
}

// progressToken returns the JSON text of params._meta.progressToken, or "".
func progressToken(params json.RawMessage) string {
	if !bytes.Contains(params, []byte(`"progressToken"`)) {
		return "" // the common case, without decoding
	}
	p, err := policy.ReadObject(params, "_meta")
	if err != nil {
		return ""
	}
	meta, ok := p.Get("_meta")
	if !ok {
		return ""
	}
	return progressTokenOf(meta)
}

// progressTokenOf returns the JSON text of a progress notification's token.
func progressTokenOf(params json.RawMessage) string {
	p, err := policy.ReadObject(params, "progressToken")
	if err != nil {
		return ""
	}
	tok, _ := p.Get("progressToken")
	return compactJSON(tok)
}

func compactJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if json.Compact(&b, raw) != nil {
		return ""
	}
	return b.String()
}

// close ends the session: every unanswered client request gets an error,
// the upstream session is closed (a child process is stopped). err is nil
// when the client ended the session.
func (s *Session) close(err error) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	pending := make([]*inflight, 0, len(s.byClient))
	for _, c := range s.byClient {
		pending = append(pending, c)
	}
	s.byClient = map[jsonrpc.ID]*inflight{}
	s.calls = map[int64]*inflight{}
	s.progress = map[string]*inflight{}
	s.mu.Unlock()

	s.err = err
	s.logs.Flush(s.log)
	msg := "session closed"
	if err != nil {
		msg = err.Error()
		s.log.Warn("session ended", "err", err)
	} else {
		s.log.Info("session ended")
	}
	s.tasks.close(errSessionClosed)
	for _, c := range pending {
		if c.cancel != nil {
			c.cancel(errSessionClosed)
		}
		s.send(errorResponse(c.clientID, jsonrpc.CodeInternalError, msg), c.clientID)
	}
	s.conn.Close() // a stdio child has exited once this returns
	s.releaseChild()
	close(s.done)
}

func errorResponse(id jsonrpc.ID, code int64, msg string) *jsonrpc.Response {
	return &jsonrpc.Response{ID: id, Error: &jsonrpc.Error{Code: code, Message: msg}}
}

// initialize forwards the client's initialize, offering the upstream no
// newer protocol version than Airlock relays. Capabilities pass untouched,
// so the upstream is never told the client can do what it cannot.
func (s *Session) initialize(ctx context.Context, c *inflight, m *jsonrpc.Request) {
	// The client's name reaches the policy and approvers: it is read with
	// exact names, as the upstream reads it.
	p, err := policy.ReadObject(m.Params, "protocolVersion", "clientInfo", "capabilities")
	if err != nil {
		s.answerError(c, jsonrpc.CodeInvalidParams, "initialize: "+err.Error())
		return
	}
	version, _, _ := p.String("protocolVersion")
	var info broker.ClientInfo
	if raw, ok := p.Get("clientInfo"); ok {
		ci, err := policy.ReadObject(raw, "name", "version")
		if err != nil {
			s.answerError(c, jsonrpc.CodeInvalidParams, "initialize: clientInfo: "+err.Error())
			return
		}
		info.Name, _, _ = ci.String("name")
		info.Version, _, _ = ci.String("version")
	}
	info.Capabilities, _ = p.Get("capabilities")
	if version > LatestProtocolVersion {
		latest, _ := json.Marshal(LatestProtocolVersion)
		m = &jsonrpc.Request{ID: m.ID, Method: m.Method, Params: p.Replace("protocolVersion", latest)}
	}
	s.mu.Lock()
	s.info = info
	s.mu.Unlock()

	s.forward(ctx, c, m)
	if d := s.r.initTimeout; d > 0 {
		time.AfterFunc(d, func() {
			s.mu.Lock()
			pending := s.byClient[c.clientID] == c
			s.mu.Unlock()
			if pending {
				// Closing answers the pending initialize with this error.
				s.close(fmt.Errorf("upstream %s did not answer initialize within %s", s.up.Name, d))
			}
		})
	}
}

// initialized checks the upstream's answer to initialize and returns the
// result the client is to read: the upstream's, with task support added
// when Airlock offers it (Options.OfferTasks) and the upstream has none.
func (s *Session) initialized(c *inflight, m *jsonrpc.Response) json.RawMessage {
	if m.Error != nil {
		return m.Result
	}
	var version string
	res, err := policy.ReadObject(m.Result, "protocolVersion", "capabilities")
	if err == nil {
		version, _, _ = res.String("protocolVersion")
	}
	caps := upstreamTaskCaps(res)
	s.mu.Lock()
	s.info.ProtocolVersion = version
	s.upTasksList = caps.list
	s.mu.Unlock()
	if !supportedVersion(version) {
		s.log.Warn("upstream chose a protocol version Airlock does not relay", "protocol_version", version)
	}
	if s.r.offerTasks && res != nil && caps.capabilities != nil && !caps.tasks {
		return res.Replace("capabilities", caps.capabilities.Replace("tasks", []byte(offeredTasks)))
	}
	return m.Result
}

func (s *Session) upstreamListsTasks() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upTasksList
}

// Info returns what the client said about itself.
func (s *Session) Info() broker.ClientInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// ID is the session's id, which the streamable HTTP transport hands to the
// client; nobody else is to see it (see Ref).
func (s *Session) ID() string { return s.id }

// Ref is SessionRef of the session's id, for everyone but its client.
func (s *Session) Ref() string { return s.ref }

// errorJSON is a JSON-RPC error response with a null id, for input that
// could not be read as a message at all, or refused before it was.
func errorJSON(code int64, msg string) []byte {
	raw, _ := json.Marshal(struct {
		JSONRPC string `json:"jsonrpc"`
		ID      any    `json:"id"`
		Error   struct {
			Code    int64  `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}{JSONRPC: "2.0", Error: struct {
		Code    int64  `json:"code"`
		Message string `json:"message"`
	}{code, msg}})
	return raw
}

// upstreamID makes the id of a request Airlock sends upstream. (The SDK
// exports no constructor for integer ids; counters stay far below 2^53, so
// the float64 path is exact.)
func upstreamID(n int64) jsonrpc.ID {
	id, _ := jsonrpc.MakeID(float64(n))
	return id
}
