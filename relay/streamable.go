package relay

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/relay/wire"
)

// DefaultIdleTimeout closes HTTP sessions that made no request for this
// long, stopping their upstream child.
const DefaultIdleTimeout = time.Hour

// keepAliveInterval spaces SSE comments on quiet streams, so that proxies
// and clients do not drop a stream while a call is held.
const keepAliveInterval = 25 * time.Second

// backlogLimit bounds messages kept for a client that has no stream open to
// receive them.
const backlogLimit = 256

// HTTPOptions configure the streamable HTTP endpoint.
type HTTPOptions struct {
	// IdleTimeout closes a session after this long without requests; 0
	// means DefaultIdleTimeout, negative means never.
	IdleTimeout time.Duration
	// MaxMessage bounds a request body; 0 means wire.DefaultMaxMessage.
	MaxMessage int
	// Loopback says the listener is on a loopback address. Requests must
	// then name a loopback host and come from no foreign origin, which
	// stops DNS rebinding attacks from web pages.
	Loopback bool
	// AllowedOrigins are further browser origins allowed to call.
	AllowedOrigins []string
	// Hosts, when set, decides instead of Loopback and AllowedOrigins:
	// Host must be one of the listener's names, and Origin, when present,
	// one of them or of its allowed origins.
	Hosts *Hosts
	// Authenticate says who sends r, a request to the endpoint of server;
	// nil lets everyone in as anonymous. It is asked on every request,
	// before the body is read, so that a revoked credential stops working
	// at once, in open sessions too. When it refuses, it has written the
	// answer (401, 403, 503) and returns false.
	Authenticate func(w http.ResponseWriter, r *http.Request, server string) (broker.Principal, bool)
}

// HTTPHandler serves upstreams over MCP's streamable HTTP transport, with
// stateful sessions, at a path with a {server} wildcard (/mcp/{server}).
type HTTPHandler struct {
	relay *Relay
	opts  HTTPOptions

	mu       sync.Mutex
	sessions map[string]*httpSession
	closed   bool
}

// HTTPHandler returns the streamable HTTP endpoint for the broker's
// upstreams.
func (r *Relay) HTTPHandler(opts HTTPOptions) *HTTPHandler {
	if opts.IdleTimeout == 0 {
		opts.IdleTimeout = DefaultIdleTimeout
	}
	if opts.MaxMessage <= 0 {
		opts.MaxMessage = wire.DefaultMaxMessage
	}
	return &HTTPHandler{relay: r, opts: opts, sessions: make(map[string]*httpSession)}
}

// Close ends every session.
func (h *HTTPHandler) Close() {
	h.mu.Lock()
	h.closed = true
	all := make([]*httpSession, 0, len(h.sessions))
	for _, hs := range h.sessions {
		all = append(all, hs)
	}
	h.mu.Unlock()
	var wg sync.WaitGroup
	for _, hs := range all {
		wg.Go(func() { hs.s.close(nil) })
	}
	wg.Wait()
}

// Sessions counts open sessions.
func (h *HTTPHandler) Sessions() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.sessions)
}

func (h *HTTPHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !h.originAllowed(r) {
		httpError(w, http.StatusForbidden, jsonrpc.CodeInvalidRequest, "forbidden: request Host or Origin is not allowed")
		return
	}
	up := h.relay.upstreams[r.PathValue("server")]
	if up == nil {
		http.Error(w, "no such MCP server", http.StatusNotFound)
		return
	}
	switch r.Method {
	case http.MethodPost, http.MethodGet, http.MethodDelete:
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	p, ok := h.principal(w, r, up)
	if !ok {
		return
	}
	switch r.Method {
	case http.MethodPost:
		h.post(w, r, up, p)
	case http.MethodGet:
		h.get(w, r, up, p)
	case http.MethodDelete:
		hs := h.lookup(w, r, up, p)
		if hs == nil {
			return
		}
		hs.s.close(nil)
		w.WriteHeader(http.StatusNoContent)
	}
}

func (h *HTTPHandler) post(w http.ResponseWriter, r *http.Request, up *Upstream, p broker.Principal) {
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/json" {
		httpError(w, http.StatusUnsupportedMediaType, jsonrpc.CodeInvalidRequest, "Content-Type must be application/json")
		return
	}
	acceptJSON, acceptSSE := accepts(r)
	if !acceptJSON && !acceptSSE {
		httpError(w, http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, "Accept must include application/json and text/event-stream")
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, int64(h.opts.MaxMessage)+1))
	if err != nil {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeParseError, "reading request body: "+err.Error())
		return
	}
	if len(body) > h.opts.MaxMessage {
		httpError(w, http.StatusRequestEntityTooLarge, jsonrpc.CodeInvalidRequest, "message too large")
		return
	}
	if trimmed := bytes.TrimSpace(body); len(trimmed) > 0 && trimmed[0] == '[' {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "JSON-RPC batches are not supported; send one message per request")
		return
	}
	msg, err := wire.Decode(body)
	if err != nil {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeParseError, "parse error: "+err.Error())
		return
	}
	req, _ := msg.(*jsonrpc.Request)

	var hs *httpSession
	switch {
	case req != nil && req.Method == "initialize":
		if r.Header.Get(wire.HeaderSessionID) != "" {
			httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "initialize must not carry an Mcp-Session-Id")
			return
		}
		if hs, err = h.newSession(r.Context(), up, p); err != nil {
			if refuseAtLimit(w, err) {
				h.relay.log.Warn("session refused", "server", up.Name, "err", err)
				return
			}
			h.relay.log.Error("session start failed", "server", up.Name, "err", err)
			httpError(w, http.StatusBadGateway, jsonrpc.CodeInternalError, err.Error())
			return
		}
		w.Header().Set(wire.HeaderSessionID, hs.s.id)
	case req != nil && req.Method == "server/discover" && r.Header.Get(wire.HeaderSessionID) == "":
		// The 2026-07-28 handshake; clients fall back to initialize.
		writeJSON(w, http.StatusOK, errorResponse(req.ID, jsonrpc.CodeMethodNotFound, "server/discover is not supported; use initialize"))
		return
	default:
		if hs = h.lookup(w, r, up, p); hs == nil {
			return
		}
		if v := r.Header.Get(wire.HeaderProtocolVersion); v != "" && !supportedVersion(v) {
			httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "unsupported MCP-Protocol-Version "+v)
			return
		}
	}

	hs.begin()
	defer hs.end()
	if req == nil || !req.IsCall() {
		hs.s.handle(r.Context(), msg)
		w.WriteHeader(http.StatusAccepted)
		return
	}
	ps := &postStream{w: w, acceptSSE: acceptSSE, done: make(chan struct{})}
	if !hs.register(req.ID, ps) {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "a request with this id is already in flight")
		return
	}
	defer hs.unregister(req.ID, ps)
	hs.s.handle(r.Context(), msg)

	keepAlive := time.NewTimer(keepAliveInterval)
	defer keepAlive.Stop()
	for {
		select {
		case <-ps.done:
			ps.writeAnswer()
			return
		case <-keepAlive.C:
			ps.keepAlive()
			keepAlive.Reset(keepAliveInterval)
		case <-r.Context().Done():
			// The client went away. Stateful HTTP keeps the handler alive
			// regardless, so cancel explicitly: its call must not go on
			// running, nor be released later.
			hs.s.cancelClientRequest(context.WithoutCancel(r.Context()), req.ID, "client disconnected", broker.ErrClientGone)
			return
		}
	}
}

// get serves the standalone stream for messages that belong to no request.
func (h *HTTPHandler) get(w http.ResponseWriter, r *http.Request, up *Upstream, p broker.Principal) {
	if _, sse := accepts(r); !sse {
		httpError(w, http.StatusNotAcceptable, jsonrpc.CodeInvalidRequest, "Accept must include text/event-stream")
		return
	}
	hs := h.lookup(w, r, up, p)
	if hs == nil {
		return
	}
	sw := &postStream{w: w, acceptSSE: true, done: make(chan struct{})}
	if !hs.openStandalone(sw) {
		httpError(w, http.StatusConflict, jsonrpc.CodeInvalidRequest, "this session already has a stream open for server messages")
		return
	}
	defer hs.closeStandalone(sw)
	tick := time.NewTicker(keepAliveInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			sw.keepAlive()
		case <-r.Context().Done():
			return
		case <-hs.s.Done():
			return
		}
	}
}

func (h *HTTPHandler) principal(w http.ResponseWriter, r *http.Request, up *Upstream) (broker.Principal, bool) {
	if h.opts.Authenticate == nil {
		return broker.Principal{Source: "anonymous"}, true
	}
	return h.opts.Authenticate(w, r, up.Name)
}

func (h *HTTPHandler) newSession(ctx context.Context, up *Upstream, p broker.Principal) (*httpSession, error) {
	release, err := h.relay.limits.session(p)
	if err != nil {
		return nil, err
	}
	hs := &httpSession{h: h, streams: make(map[jsonrpc.ID]*postStream)}
	s, err := h.relay.startSession(ctx, up, hs, p)
	if err != nil {
		release()
		return nil, err
	}
	hs.s = s
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		s.close(nil)
		return nil, errors.New("broker: shutting down")
	}
	h.sessions[s.id] = hs
	h.mu.Unlock()
	go func() {
		<-s.Done()
		h.mu.Lock()
		delete(h.sessions, s.id)
		h.mu.Unlock()
		release()
		hs.stopIdleTimer()
	}()
	return hs, nil
}

// lookup finds the request's session, answering 400 or 404 itself when
// there is none. A session is only reachable under its own server's path.
// lookup finds the session r names, for p. A session belongs to the
// identity that opened it: its id is a capability, but not one that lets
// another identity act in it, or end it, under that identity's name.
func (h *HTTPHandler) lookup(w http.ResponseWriter, r *http.Request, up *Upstream, p broker.Principal) *httpSession {
	id := r.Header.Get(wire.HeaderSessionID)
	if id == "" {
		httpError(w, http.StatusBadRequest, jsonrpc.CodeInvalidRequest, "missing Mcp-Session-Id header; send initialize first")
		return nil
	}
	h.mu.Lock()
	hs := h.sessions[id]
	h.mu.Unlock()
	if hs != nil && hs.s.closing() {
		hs = nil // closed, and about to leave the map
	}
	if hs == nil || hs.s.up != up {
		httpError(w, http.StatusNotFound, jsonrpc.CodeInvalidRequest, "session not found; send initialize to start a new one")
		return nil
	}
	if sp := hs.s.principal; sp.Source != p.Source || sp.ID != p.ID {
		h.relay.log.Warn("request refused: the session belongs to another identity", "server", up.Name,
			"session", SessionRef(hs.s.id), "session_principal", sp.ID, "principal", p.ID, "source", p.Source)
		httpError(w, http.StatusForbidden, jsonrpc.CodeInvalidRequest, "this session was opened by another identity; send initialize to start your own")
		return nil
	}
	return hs
}

// originAllowed guards against DNS rebinding: a web page that gets a
// browser to send requests to a loopback server, through a name it
// controls, must be refused.
func (h *HTTPHandler) originAllowed(r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if h.opts.Hosts != nil {
		return h.opts.Hosts.Allowed(r.Host) && h.opts.Hosts.OriginAllowed(origin)
	}
	if origin != "" && slices.Contains(h.opts.AllowedOrigins, origin) {
		return true
	}
	if !h.opts.Loopback {
		if origin == "" {
			return true
		}
		u, err := url.Parse(origin)
		return err == nil && strings.EqualFold(u.Host, r.Host)
	}
	if !loopbackHost(r.Host) {
		return false
	}
	if origin == "" {
		return true
	}
	u, err := url.Parse(origin)
	return err == nil && loopbackHost(u.Host)
}

func loopbackHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func accepts(r *http.Request) (jsonOK, sseOK bool) {
	for _, v := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := mime.ParseMediaType(strings.TrimSpace(part))
			switch mt {
			case "application/json":
				jsonOK = true
			case "text/event-stream":
				sseOK = true
			case "*/*", "application/*":
				jsonOK = true
			}
		}
	}
	return jsonOK, sseOK
}

// httpSession is a Session's client side over streamable HTTP: each
// request's answer, and the messages that belong to it, go out on that
// request's POST response; everything else goes on the standalone GET
// stream.
type httpSession struct {
	h *HTTPHandler
	s *Session

	mu         sync.Mutex
	streams    map[jsonrpc.ID]*postStream
	standalone *postStream
	backlog    []jsonrpc.Message
	active     int
	idle       *time.Timer
}

func (hs *httpSession) send(msg jsonrpc.Message, related jsonrpc.ID) error {
	data, err := wire.Encode(msg)
	if err != nil {
		return err
	}
	hs.mu.Lock()
	var ps *postStream
	if related.IsValid() {
		ps = hs.streams[related]
	}
	if _, isResponse := msg.(*jsonrpc.Response); isResponse {
		hs.mu.Unlock()
		if ps == nil {
			return errors.New("broker: the request's stream is gone")
		}
		ps.respond(data)
		return nil
	}
	// Prefer the related request's stream, then the standalone stream,
	// then any stream at all: a client without a GET stream still gets
	// upstream requests while it waits for an answer.
	candidates := []*postStream{ps, hs.standalone}
	for _, other := range hs.streams {
		candidates = append(candidates, other)
	}
	hs.mu.Unlock()
	for _, c := range candidates {
		if c != nil && c.event(data) {
			return nil
		}
	}
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if len(hs.backlog) >= backlogLimit {
		hs.backlog = hs.backlog[1:]
		hs.s.logs.Log(hs.s.log, slog.LevelWarn, "dropped a message for a client with no stream open")
	}
	hs.backlog = append(hs.backlog, msg)
	return nil
}

func (hs *httpSession) register(id jsonrpc.ID, ps *postStream) bool {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if _, dup := hs.streams[id]; dup {
		return false
	}
	hs.streams[id] = ps
	return true
}

func (hs *httpSession) unregister(id jsonrpc.ID, ps *postStream) {
	hs.mu.Lock()
	if hs.streams[id] == ps {
		delete(hs.streams, id)
	}
	hs.mu.Unlock()
	ps.finish()
}

func (hs *httpSession) openStandalone(ps *postStream) bool {
	hs.mu.Lock()
	if hs.standalone != nil {
		hs.mu.Unlock()
		return false
	}
	hs.standalone = ps
	backlog := hs.backlog
	hs.backlog = nil
	hs.mu.Unlock()
	ps.startSSE()
	for _, msg := range backlog {
		if data, err := wire.Encode(msg); err == nil {
			ps.event(data)
		}
	}
	return true
}

func (hs *httpSession) closeStandalone(ps *postStream) {
	hs.mu.Lock()
	if hs.standalone == ps {
		hs.standalone = nil
	}
	hs.mu.Unlock()
	ps.finish()
}

// begin and end bracket every request, so that idle sessions can be told
// from busy ones.
func (hs *httpSession) begin() {
	hs.mu.Lock()
	hs.active++
	if hs.idle != nil {
		hs.idle.Stop()
	}
	hs.mu.Unlock()
}

func (hs *httpSession) end() {
	d := hs.h.opts.IdleTimeout
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.active--
	if hs.active > 0 || d < 0 {
		return
	}
	if hs.idle == nil {
		hs.idle = time.AfterFunc(d, hs.idleExpired)
	} else {
		hs.idle.Reset(d)
	}
}

func (hs *httpSession) idleExpired() {
	hs.mu.Lock()
	busy := hs.active > 0
	hs.mu.Unlock()
	if !busy {
		hs.s.log.Info("closing idle session", "idle", hs.h.opts.IdleTimeout)
		hs.s.close(nil)
	}
}

func (hs *httpSession) stopIdleTimer() {
	hs.mu.Lock()
	if hs.idle != nil {
		hs.idle.Stop()
	}
	hs.mu.Unlock()
}

// postStream is one HTTP response carrying messages to the client: an SSE
// stream when the client accepts one, else a single JSON answer. Headers
// wait for the first message, so that a quick answer leaves in one write.
type postStream struct {
	mu        sync.Mutex
	w         http.ResponseWriter
	acceptSSE bool
	sse       bool
	answered  bool
	answer    []byte // for the handler to write (see respond)
	finished  bool   // the handler has returned; the writer is no longer ours
	done      chan struct{}
}

// startSSE sends the headers of an SSE stream at once, for the standalone
// stream, which may stay quiet for a long time.
func (ps *postStream) startSSE() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.startSSELocked()
	http.NewResponseController(ps.w).Flush()
}

func (ps *postStream) startSSELocked() {
	if ps.sse {
		return
	}
	ps.sse = true
	h := ps.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache, no-transform")
	h.Set("X-Accel-Buffering", "no")
	ps.w.WriteHeader(http.StatusOK)
}

// event sends a message that is not the answer; it reports false if this
// stream cannot carry it.
func (ps *postStream) event(data []byte) bool {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.finished || ps.answered || !ps.acceptSSE {
		return false
	}
	ps.startSSELocked()
	if _, err := ps.w.Write(wire.AppendEvent(nil, "", data)); err != nil {
		return false
	}
	return http.NewResponseController(ps.w).Flush() == nil
}

// respond hands over the answer, which ends the stream. The handler,
// waiting on done, writes it on its way out: as the stream's last event,
// or as plain JSON to a client that takes no stream. Then net/http sends
// all that is buffered in one write, where a flush here would cost one
// more.
func (ps *postStream) respond(data []byte) {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.finished || ps.answered {
		return
	}
	ps.answered = true
	ps.answer = data
	close(ps.done)
}

// writeAnswer writes what respond handed over.
func (ps *postStream) writeAnswer() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.acceptSSE {
		ps.startSSELocked()
		ps.w.Write(wire.AppendEvent(nil, "", ps.answer))
	} else {
		ps.w.Header().Set("Content-Type", "application/json")
		ps.w.WriteHeader(http.StatusOK)
		ps.w.Write(ps.answer)
	}
}

func (ps *postStream) keepAlive() {
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if ps.finished || ps.answered || !ps.acceptSSE {
		return
	}
	ps.startSSELocked()
	ps.w.Write([]byte(": keep-alive\n\n"))
	http.NewResponseController(ps.w).Flush()
}

func (ps *postStream) finish() {
	ps.mu.Lock()
	ps.finished = true
	ps.mu.Unlock()
}

func httpError(w http.ResponseWriter, status int, code int64, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(errorJSON(code, msg))
}

func writeJSON(w http.ResponseWriter, status int, msg jsonrpc.Message) {
	data, err := wire.Encode(msg)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(data)
}
