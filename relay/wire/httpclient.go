package wire

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/modelcontextprotocol/go-sdk/jsonrpc"
)

// ErrSessionGone reports that an HTTP upstream no longer knows our session
// (it answered 404), so the session has to end.
var ErrSessionGone = errors.New("upstream session is gone")

// Header names from the streamable HTTP transport.
const (
	HeaderSessionID       = "Mcp-Session-Id"
	HeaderProtocolVersion = "Mcp-Protocol-Version"
	HeaderLastEventID     = "Last-Event-Id"
)

// MaxRedirects bounds the same-origin redirects one upstream request
// follows.
const MaxRedirects = 3

// upstreamClient is shared by every HTTP upstream, so they share idle
// connections.
var upstreamClient = UpstreamClient()

// UpstreamClient returns the client HTTP upstreams use by default. Dialing,
// the TLS handshake and idle connections are bounded; a response is not,
// since a held call and an SSE stream are long-lived by design (the caller's
// context ends them). Redirects go through SameOriginRedirects.
func UpstreamClient() *http.Client {
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			ForceAttemptHTTP2:     true,
			TLSHandshakeTimeout:   10 * time.Second,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			MaxIdleConnsPerHost:   16,
		},
		CheckRedirect: SameOriginRedirects,
	}
}

// SameOriginRedirects is an http.Client CheckRedirect that follows at most
// MaxRedirects redirects, and only those to the origin (scheme, host and
// port) of the original request. Go's client strips only Authorization and
// cookies on a redirect to another host; the configured headers (an API key
// under any name) and a 307's JSON-RPC body would go along.
func SameOriginRedirects(req *http.Request, via []*http.Request) error {
	first := via[0].URL
	if origin(req.URL) != origin(first) {
		return fmt.Errorf("the upstream redirected to another origin, %s; Airlock follows redirects only within %s (set the server's url to the target if it is trusted)", redacted(req.URL), origin(first))
	}
	if len(via) > MaxRedirects {
		return fmt.Errorf("the upstream redirected more than %d times (last to %s)", MaxRedirects, redacted(req.URL))
	}
	return nil
}

// origin is scheme://host:port with the scheme's default port made explicit,
// so http://a and http://a:80 are one origin.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// redacted is u without user information, for messages.
func redacted(u *url.URL) string {
	c := *u
	c.User = nil
	return c.String()
}

// HTTPClient reaches an MCP server over the streamable HTTP transport.
type HTTPClient struct {
	URL string
	// Header is sent with every request (authorization, for instance).
	Header http.Header
	// Client defaults to UpstreamClient. A client without a CheckRedirect
	// of its own is given SameOriginRedirects: Header carries credentials,
	// and the body carries the call, so neither may follow a redirect to
	// another host.
	Client *http.Client
	Logger *slog.Logger
	// MaxMessage bounds one message; 0 means DefaultMaxMessage.
	MaxMessage int
}

// Connect returns a connection; the first request goes out with the first
// Write.
func (t *HTTPClient) Connect(context.Context) (*HTTPConn, error) {
	client := t.Client
	switch {
	case client == nil:
		client = upstreamClient
	case client.CheckRedirect == nil:
		c := *client
		c.CheckRedirect = SameOriginRedirects
		client = &c
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &HTTPConn{
		t:        t,
		client:   client,
		log:      loggerOr(t.Logger).With("upstream_url", t.URL),
		ctx:      ctx,
		cancel:   cancel,
		incoming: make(chan jsonrpc.Message, 64),
		failed:   make(chan struct{}),
		streams:  make(map[jsonrpc.ID]context.CancelFunc),
	}, nil
}

// HTTPConn is one MCP session with an HTTP upstream. Every outgoing message
// is a POST; replies arrive on that POST's response (JSON or SSE) or on the
// standalone GET stream, and all of them come out of Read.
type HTTPConn struct {
	t      *HTTPClient
	client *http.Client
	log    *slog.Logger

	ctx    context.Context // the connection's lifetime
	cancel context.CancelFunc
	wg     sync.WaitGroup

	incoming chan jsonrpc.Message

	failOnce sync.Once
	failed   chan struct{}
	failErr  error

	mu              sync.Mutex
	sessionID       string
	protocolVersion string
	initID          jsonrpc.ID
	standalone      bool
	streams         map[jsonrpc.ID]context.CancelFunc // open POST streams by request id
	closed          bool
}

// Write sends msg. For a request it returns once the upstream has accepted
// it (response headers received); the reply then arrives through Read. An
// HTTP failure on a request is turned into a JSON-RPC error response so the
// caller's request is never left unanswered.
func (c *HTTPConn) Write(_ context.Context, msg jsonrpc.Message) error {
	if err := c.failure(); err != nil {
		return err
	}
	data, err := Encode(msg)
	if err != nil {
		return fmt.Errorf("wire: encode: %w", err)
	}
	req, _ := msg.(*jsonrpc.Request)
	var callID jsonrpc.ID
	if req != nil && req.IsCall() {
		callID = req.ID
		if req.Method == "initialize" {
			c.mu.Lock()
			c.initID = req.ID
			c.mu.Unlock()
		}
	}

	if req != nil && req.Method == "notifications/initialized" {
		// Open the stream for server-initiated messages first, as the
		// go-sdk client does: a server may speak as soon as it is
		// initialized, and it does not queue messages for a stream that
		// is not there yet.
		c.startStandalone()
	}

	// A request's stream lives until its response or until the request is
	// cancelled; it must not depend on the caller's context, which may end
	// as soon as Write returns.
	ctx, cancel := context.WithCancel(c.ctx)
	resp, err := c.post(ctx, data)
	if err != nil {
		cancel()
		return fmt.Errorf("wire: POST %s: %w", c.t.URL, err)
	}
	if req != nil && req.Method == "notifications/cancelled" {
		c.abandonStream(req.Params)
	}

	switch {
	case resp.StatusCode == http.StatusNotFound && c.currentSession() != "":
		drain(resp)
		cancel()
		c.fail(ErrSessionGone)
		return ErrSessionGone
	case resp.StatusCode == http.StatusAccepted || (!callID.IsValid() && resp.StatusCode < 300):
		drain(resp)
		cancel()
		return nil
	case resp.StatusCode >= 300:
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		resp.Body.Close()
		cancel()
		if !callID.IsValid() {
			c.log.Warn("upstream refused message", "status", resp.StatusCode, "body", string(body))
			return nil
		}
		c.deliver(httpErrorResponse(callID, resp.StatusCode, body))
		return nil
	}

	if callID.IsValid() {
		c.mu.Lock()
		c.streams[callID] = cancel
		c.mu.Unlock()
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		defer cancel()
		c.readResponse(ctx, resp, callID)
		c.mu.Lock()
		delete(c.streams, callID)
		c.mu.Unlock()
	}()
	return nil
}

func (c *HTTPConn) post(ctx context.Context, data []byte) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, c.t.URL, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	c.setHeaders(hreq)
	hreq.Header.Set("Content-Type", "application/json")
	hreq.Header.Set("Accept", "application/json, text/event-stream")
	resp, err := c.client.Do(hreq)
	if err != nil {
		return nil, err
	}
	if sid := resp.Header.Get(HeaderSessionID); sid != "" {
		c.mu.Lock()
		if c.sessionID == "" {
			c.sessionID = sid
		}
		c.mu.Unlock()
	}
	return resp, nil
}

func (c *HTTPConn) setHeaders(hreq *http.Request) {
	for k, vs := range c.t.Header {
		hreq.Header[k] = append([]string(nil), vs...)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.sessionID != "" {
		hreq.Header.Set(HeaderSessionID, c.sessionID)
	}
	if c.protocolVersion != "" {
		hreq.Header.Set(HeaderProtocolVersion, c.protocolVersion)
	}
}

func (c *HTTPConn) currentSession() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.sessionID
}

// readResponse delivers the messages of one POST response. When an SSE
// stream ends before the answer to callID, it resumes the stream from the
// last event id, as the transport allows, a few times.
func (c *HTTPConn) readResponse(ctx context.Context, resp *http.Response, callID jsonrpc.ID) {
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if mt != "text/event-stream" {
		body, err := io.ReadAll(io.LimitReader(resp.Body, int64(c.maxMessage())+1))
		resp.Body.Close()
		if err == nil && len(body) > c.maxMessage() {
			err = fmt.Errorf("response larger than %d bytes", c.maxMessage())
		}
		if err != nil {
			c.answerLost(ctx, callID, err)
			return
		}
		if !c.deliverJSON(body, callID) && callID.IsValid() {
			c.answerLost(ctx, callID, errors.New("no response in the upstream's reply"))
		}
		return
	}

	answered := false
	lastID := ""
	for attempt := 0; ; attempt++ {
		er := NewEventReader(resp.Body, c.maxMessage())
		er.LastID = lastID
		retry := 0
		for {
			ev, err := er.Next()
			if err != nil {
				break
			}
			if ev.Retry > 0 {
				retry = ev.Retry
			}
			if len(ev.Data) == 0 || (ev.Type != "" && ev.Type != "message") {
				continue
			}
			if c.deliverJSON(ev.Data, callID) {
				answered = true
			}
		}
		resp.Body.Close()
		lastID = er.LastID
		if answered || !callID.IsValid() || ctx.Err() != nil {
			return
		}
		if lastID == "" || attempt >= 3 {
			c.answerLost(ctx, callID, errors.New("the upstream closed the stream before answering"))
			return
		}
		if !sleepCtx(ctx, backoff(attempt, retry)) {
			return
		}
		var err error
		resp, err = c.resume(ctx, lastID)
		if err != nil {
			c.answerLost(ctx, callID, err)
			return
		}
	}
}

// resume reopens an interrupted stream with GET and Last-Event-ID.
func (c *HTTPConn) resume(ctx context.Context, lastID string) (*http.Response, error) {
	hreq, err := http.NewRequestWithContext(ctx, http.MethodGet, c.t.URL, nil)
	if err != nil {
		return nil, err
	}
	c.setHeaders(hreq)
	hreq.Header.Set("Accept", "text/event-stream")
	hreq.Header.Set(HeaderLastEventID, lastID)
	resp, err := c.client.Do(hreq)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		drain(resp)
		if resp.StatusCode == http.StatusNotFound {
			c.fail(ErrSessionGone)
		}
		return nil, fmt.Errorf("resuming the stream: HTTP %d", resp.StatusCode)
	}
	return resp, nil
}

// answerLost tells the caller its request will not be answered.
func (c *HTTPConn) answerLost(ctx context.Context, callID jsonrpc.ID, err error) {
	if !callID.IsValid() || ctx.Err() != nil {
		return
	}
	c.deliver(&jsonrpc.Response{ID: callID, Error: &jsonrpc.Error{
		Code:    jsonrpc.CodeInternalError,
		Message: "upstream request failed: " + err.Error(),
	}})
}

// deliverJSON decodes one message (or a batch) and queues it; it reports
// whether the answer to callID was among them.
func (c *HTTPConn) deliverJSON(data []byte, callID jsonrpc.ID) bool {
	data = bytes.TrimSpace(data)
	// An array of raw messages matches no member names; each is read by
	// Decode, which reads exact names and refuses duplicates.
	var batch []json.RawMessage
	if len(data) > 0 && data[0] == '[' {
		if err := json.Unmarshal(data, &batch); err != nil {
			c.log.Warn("bad message from upstream", "err", err)
			return false
		}
	} else {
		batch = []json.RawMessage{data}
	}
	answered := false
	for _, raw := range batch {
		msg, err := Decode(raw)
		if err != nil {
			c.log.Warn("bad message from upstream", "err", err)
			continue
		}
		if r, ok := msg.(*jsonrpc.Response); ok {
			if callID.IsValid() && r.ID == callID {
				answered = true
			}
			c.noteInitialize(r)
		}
		c.deliver(msg)
	}
	return answered
}

// noteInitialize remembers the negotiated protocol version, which every
// later request must carry in a header.
func (c *HTTPConn) noteInitialize(r *jsonrpc.Response) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.initID.IsValid() || r.ID != c.initID || r.Error != nil {
		return
	}
	// Only sent back to the same upstream in a header: nothing is judged
	// or shown by it, so a loosely matched name misleads nobody.
	var res struct {
		ProtocolVersion string `json:"protocolVersion"`
	}
	if json.Unmarshal(r.Result, &res) == nil {
		c.protocolVersion = res.ProtocolVersion
	}
}

func (c *HTTPConn) deliver(msg jsonrpc.Message) {
	select {
	case c.incoming <- msg:
	case <-c.ctx.Done():
	}
}

// abandonStream stops reading a request's stream once we have told the
// upstream the request is cancelled: no answer is coming, and the open
// stream would otherwise be held until the upstream closes it.
func (c *HTTPConn) abandonStream(params json.RawMessage) {
	// Airlock's own notifications/cancelled: the session rewrites the
	// client's (Session.clientCancelled) before any reaches here.
	var p struct {
		RequestID any `json:"requestId"`
	}
	if json.Unmarshal(params, &p) != nil {
		return
	}
	id, err := jsonrpc.MakeID(p.RequestID)
	if err != nil {
		return
	}
	c.mu.Lock()
	cancel := c.streams[id]
	delete(c.streams, id)
	c.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// startStandalone opens the GET stream on which the upstream sends messages
// that belong to no request (list_changed, resource updates, its own
// requests). It returns once the first attempt has its response headers;
// the stream is then read, and reopened, in the background.
func (c *HTTPConn) startStandalone() {
	c.mu.Lock()
	if c.standalone || c.closed {
		c.mu.Unlock()
		return
	}
	c.standalone = true
	c.mu.Unlock()
	resp, ok := c.openStandalone("")
	if !ok {
		return
	}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.standaloneLoop(resp)
	}()
}

// openStandalone sends the GET. It reports false when the upstream has no
// such stream (405, or another refusal) or the connection is closing; a
// network error yields a nil response to retry later.
func (c *HTTPConn) openStandalone(lastID string) (*http.Response, bool) {
	hreq, err := http.NewRequestWithContext(c.ctx, http.MethodGet, c.t.URL, nil)
	if err != nil {
		return nil, false
	}
	c.setHeaders(hreq)
	hreq.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		hreq.Header.Set(HeaderLastEventID, lastID)
	}
	resp, err := c.client.Do(hreq)
	switch {
	case err != nil:
		if c.ctx.Err() != nil {
			return nil, false
		}
		c.log.Warn("upstream event stream failed", "err", err)
		return nil, true
	case resp.StatusCode == http.StatusNotFound:
		drain(resp)
		c.fail(ErrSessionGone)
		return nil, false
	case resp.StatusCode != http.StatusOK:
		// 405 says the server has no such stream; other refusals are
		// treated the same way rather than retried forever.
		drain(resp)
		return nil, false
	}
	return resp, true
}

func (c *HTTPConn) standaloneLoop(resp *http.Response) {
	lastID := ""
	for attempt := 0; ; attempt++ {
		retry := 0
		if resp != nil {
			attempt = 0
			er := NewEventReader(resp.Body, c.maxMessage())
			er.LastID = lastID
			for {
				ev, err := er.Next()
				if err != nil {
					break
				}
				if ev.Retry > 0 {
					retry = ev.Retry
				}
				if len(ev.Data) > 0 && (ev.Type == "" || ev.Type == "message") {
					c.deliverJSON(ev.Data, jsonrpc.ID{})
				}
			}
			resp.Body.Close()
			lastID = er.LastID
		}
		if !sleepCtx(c.ctx, backoff(attempt, retry)) {
			return
		}
		var ok bool
		if resp, ok = c.openStandalone(lastID); !ok {
			return
		}
	}
}

func (c *HTTPConn) maxMessage() int {
	if c.t.MaxMessage > 0 {
		return c.t.MaxMessage
	}
	return DefaultMaxMessage
}

// Read returns the next message from the upstream.
func (c *HTTPConn) Read(ctx context.Context) (jsonrpc.Message, error) {
	select {
	case msg := <-c.incoming:
		return msg, nil
	case <-c.failed:
		return nil, c.failErr
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *HTTPConn) fail(err error) {
	c.failOnce.Do(func() {
		c.failErr = err
		close(c.failed)
	})
}

func (c *HTTPConn) failure() error {
	select {
	case <-c.failed:
		return c.failErr
	default:
		return nil
	}
}

// Close ends the session: it tells the upstream with DELETE, as the
// transport asks, and stops every stream.
func (c *HTTPConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	sid := c.sessionID
	c.mu.Unlock()
	if sid != "" && !errors.Is(c.failure(), ErrSessionGone) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if hreq, err := http.NewRequestWithContext(ctx, http.MethodDelete, c.t.URL, nil); err == nil {
			c.setHeaders(hreq)
			if resp, err := c.client.Do(hreq); err == nil {
				drain(resp)
			}
		}
		cancel()
	}
	c.cancel()
	c.fail(errors.New("connection closed"))
	c.wg.Wait()
	return nil
}

// SessionID is the upstream's session id, once it has assigned one.
func (c *HTTPConn) SessionID() string { return c.currentSession() }

func httpErrorResponse(id jsonrpc.ID, status int, body []byte) *jsonrpc.Response {
	// Many servers put a JSON-RPC error in the body of a 4xx; keep it whole.
	if msg, err := Decode(bytes.TrimSpace(body)); err == nil {
		if r, ok := msg.(*jsonrpc.Response); ok && r.Error != nil {
			r.ID = id
			return r
		}
	}
	text := bytes.TrimSpace(body)
	if len(text) > 200 {
		text = text[:200]
	}
	return &jsonrpc.Response{ID: id, Error: &jsonrpc.Error{
		Code:    jsonrpc.CodeInternalError,
		Message: fmt.Sprintf("upstream answered HTTP %d: %s", status, text),
	}}
}

func drain(resp *http.Response) {
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

func backoff(attempt, retryMS int) time.Duration {
	if retryMS > 0 {
		return time.Duration(retryMS) * time.Millisecond
	}
	d := 500 * time.Millisecond << min(attempt, 6)
	return min(d, 30*time.Second)
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func loggerOr(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
