// Package slacktest is a fake Slack for tests: the Web API methods Airlock
// calls, and a Socket Mode endpoint.
//
// It is a real HTTP handler that behaves as Slack does where Airlock could
// get it wrong: it checks tokens and scopes, refuses blocks over Slack's
// size limits, lets a dialog open only within three seconds of the click
// that asked for it, and can be told to rate-limit or fail. It records
// every call and keeps each message as posted and updated, so a test can
// read what people in the channel would see.
//
// Use Client for an in-process transport (which also works inside a
// testing/synctest bubble), or Listen for a real listener, which Socket
// Mode needs.
package slacktest

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Credentials the fake accepts.
const (
	BotToken      = "xoxb-test-bot-token"
	AppToken      = "xapp-test-app-token"
	SigningSecret = "0123456789abcdef0123456789abcdef"
	TeamID        = "T0AIRLOCK"
	BotUserID     = "U0AIRLOCKBOT"
	BotName       = "airlock"
)

// Scopes the fake's bot token has unless SetScopes says otherwise.
var DefaultScopes = []string{"chat:write", "users:read", "usergroups:read"}

// User is a person (or bot) in the fake workspace.
type User struct {
	ID              string
	Name            string
	Bot             bool
	Deleted         bool
	Restricted      bool // a multi-channel guest
	UltraRestricted bool // a single-channel guest
}

// Fault is what the fake answers instead of doing a call.
type Fault struct {
	Status     int    // an HTTP status instead of 200; with 429, RetryAfter is sent
	RetryAfter int    // seconds, for Status 429
	Error      string // a Slack error code, answered as {"ok": false}
}

// Call is one Web API call the fake received.
type Call struct {
	Method string
	Params url.Values      // form parameters, without the token
	JSON   json.RawMessage // the body of a JSON call
	At     time.Time
}

// Message is a message in a channel, as last posted or updated.
type Message struct {
	Channel string
	TS      string
	Text    string
	Blocks  json.RawMessage
	Updates int
	// Params are the parameters of the last post or update.
	Params url.Values
}

// Ephemeral is a message only one person saw.
type Ephemeral struct {
	Channel, User, Text string
}

// View is a dialog opened with views.open.
type View struct {
	ID        string
	User      string // who clicked the button whose trigger opened it
	TriggerID string
	View      json.RawMessage
}

// Limits Slack enforces, and the fake with it. Lengths are counted in
// UTF-16 code units, which is at least as strict as Slack's count.
const (
	MaxMessageBlocks = 50
	MaxModalBlocks   = 100
	MaxHeaderText    = 150
	MaxSectionText   = 3000
	MaxFields        = 10
	MaxFieldText     = 2000
	MaxContextElems  = 10
	MaxActionsElems  = 25
	MaxButtonText    = 75
	MaxActionID      = 255
	MaxBlockID       = 255
	MaxButtonValue   = 2000
	MaxURL           = 3000
	MaxText          = 40000
	MaxModalTitle    = 24
	MaxPrivateMeta   = 3000
	// MaxBlocksJSON bounds a message's blocks as JSON. Slack refuses
	// messages whose blocks pass roughly 13,200 characters; the fake
	// counts the JSON around the text too, so it is stricter.
	MaxBlocksJSON = 13200
	// TriggerLifetime is how long a click's trigger_id can open a dialog.
	TriggerLifetime = 3 * time.Second
)

// Server is the fake Slack.
type Server struct {
	t testing.TB

	mu         sync.Mutex
	users      map[string]User
	groups     map[string][]string
	channels   map[string]bool // channel ID → the bot is a member
	scopes     []string
	faults     map[string][]Fault
	calls      []Call
	messages   []*Message
	ephemerals []Ephemeral
	views      []View
	triggers   map[string]trigger
	seq        int
	now        func() time.Time

	listener *httptest.Server
	socket   socketState
}

type trigger struct {
	user   string
	issued time.Time
	used   bool
}

// New returns a fake workspace with the bot and no one else, and no
// channels.
func New(t testing.TB) *Server {
	s := &Server{
		t:        t,
		users:    map[string]User{BotUserID: {ID: BotUserID, Name: BotName, Bot: true}},
		groups:   map[string][]string{},
		channels: map[string]bool{},
		scopes:   DefaultScopes,
		faults:   map[string][]Fault{},
		triggers: map[string]trigger{},
		now:      time.Now,
	}
	s.socket.acks = map[string]chan json.RawMessage{}
	s.socket.connected = make(chan struct{})
	return s
}

// AddUser adds people to the workspace.
func (s *Server) AddUser(us ...User) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range us {
		s.users[u.ID] = u
	}
}

// AddGroup creates a user group with these members, or replaces one.
func (s *Server) AddGroup(id string, members ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.groups[id] = members
}

// AddChannel creates a channel; botMember says whether the bot was
// invited (without it, posting fails with not_in_channel).
func (s *Server) AddChannel(id string, botMember bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.channels[id] = botMember
}

// SetScopes sets the bot token's scopes.
func (s *Server) SetScopes(scopes ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.scopes = scopes
}

// Fail makes the next calls of method answer with faults, one each, in
// order.
func (s *Server) Fail(method string, faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[method] = append(s.faults[method], faults...)
}

// Calls returns the calls of a method (all calls for ""), oldest first.
func (s *Server) Calls(method string) []Call {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []Call
	for _, c := range s.calls {
		if method == "" || c.Method == method {
			out = append(out, c)
		}
	}
	return out
}

// Messages returns the channel messages, in the order they were posted.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Message, len(s.messages))
	for i, m := range s.messages {
		out[i] = *m
	}
	return out
}

// Ephemerals returns the messages shown to one person, oldest first.
func (s *Server) Ephemerals() []Ephemeral {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.ephemerals)
}

// Views returns the dialogs opened, oldest first.
func (s *Server) Views() []View {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.views)
}

// APIURL is the Web API's base URL: the listener's when Listen was called,
// otherwise a name only Client reaches.
func (s *Server) APIURL() string {
	if s.listener != nil {
		return s.listener.URL + "/api/"
	}
	return "http://slack.test/api/"
}

// Client returns an HTTP client that serves requests in process, whatever
// their host: no sockets, so it works inside a synctest bubble.
func (s *Server) Client() *http.Client {
	return &http.Client{Transport: inProcess{s}}
}

type inProcess struct{ h http.Handler }

func (p inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	p.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// Listen serves the fake on a loopback port, for Socket Mode's WebSocket.
// It is closed when the test ends.
func (s *Server) Listen() {
	s.listener = httptest.NewServer(s)
	s.t.Cleanup(func() {
		s.closeSocket()
		s.listener.Close()
	})
}

// ServeHTTP serves the Web API under /api/ and Socket Mode at /link.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/link" {
		s.serveSocket(w, r)
		return
	}
	method, ok := strings.CutPrefix(r.URL.Path, "/api/")
	if !ok || r.Method != http.MethodPost {
		http.NotFound(w, r)
		return
	}
	body, _ := io.ReadAll(r.Body)
	call := Call{Method: method, At: s.now()}
	token := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
	if strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		call.JSON = body
	} else {
		call.Params, _ = url.ParseQuery(string(body))
		if t := call.Params.Get("token"); t != "" {
			token = t
		}
		call.Params.Del("token")
	}
	s.mu.Lock()
	s.calls = append(s.calls, call)
	var fault *Fault
	if fs := s.faults[method]; len(fs) > 0 {
		fault, s.faults[method] = &fs[0], fs[1:]
	}
	s.mu.Unlock()
	if fault != nil {
		switch {
		case fault.Status == http.StatusTooManyRequests:
			w.Header().Set("Retry-After", strconv.Itoa(fault.RetryAfter))
			w.WriteHeader(fault.Status)
		case fault.Status != 0:
			w.Header().Set("Content-Type", "text/html")
			w.WriteHeader(fault.Status)
			io.WriteString(w, "<html>Slack is having trouble</html>")
		default:
			reply(w, map[string]any{"ok": false, "error": fault.Error})
		}
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	resp := s.dispatch(method, token, call)
	if method == "auth.test" && resp["ok"] == true {
		w.Header().Set("X-OAuth-Scopes", strings.Join(s.scopes, ","))
	}
	reply(w, resp)
}

func reply(w http.ResponseWriter, v map[string]any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func slackErr(code string, details ...string) map[string]any {
	r := map[string]any{"ok": false, "error": code}
	if len(details) > 0 {
		r["errors"] = details
	}
	return r
}

// scopeNeeded is the bot scope each method needs.
var scopeNeeded = map[string]string{
	"chat.postMessage":      "chat:write",
	"chat.update":           "chat:write",
	"chat.postEphemeral":    "chat:write",
	"users.info":            "users:read",
	"usergroups.users.list": "usergroups:read",
}

// dispatch runs a call; s.mu is held.
func (s *Server) dispatch(method, token string, c Call) map[string]any {
	if method == "apps.connections.open" {
		return s.connectionsOpen(token)
	}
	switch token {
	case BotToken:
	case "":
		return slackErr("not_authed")
	case AppToken:
		return slackErr("not_allowed_token_type")
	default:
		return slackErr("invalid_auth")
	}
	if need := scopeNeeded[method]; need != "" && !slices.Contains(s.scopes, need) {
		return map[string]any{"ok": false, "error": "missing_scope", "needed": need, "provided": strings.Join(s.scopes, ",")}
	}
	p := c.Params
	switch method {
	case "auth.test":
		return map[string]any{"ok": true, "url": "https://airlock-test.slack.com/", "team": "Airlock Test",
			"user": BotName, "team_id": TeamID, "user_id": BotUserID, "bot_id": "B0AIRLOCK"}
	case "chat.postMessage":
		return s.postMessage(p)
	case "chat.update":
		return s.update(p)
	case "chat.postEphemeral":
		return s.postEphemeral(p)
	case "users.info":
		u, ok := s.users[p.Get("user")]
		if !ok {
			return slackErr("user_not_found")
		}
		return map[string]any{"ok": true, "user": map[string]any{
			"id": u.ID, "team_id": TeamID, "name": u.Name, "deleted": u.Deleted, "is_bot": u.Bot,
			"is_restricted": u.Restricted, "is_ultra_restricted": u.UltraRestricted,
		}}
	case "usergroups.users.list":
		members, ok := s.groups[p.Get("usergroup")]
		if !ok {
			return slackErr("no_such_subteam")
		}
		return map[string]any{"ok": true, "users": append([]string{}, members...)}
	case "views.open":
		return s.openView(c.JSON)
	}
	return slackErr("unknown_method")
}

func (s *Server) channelErr(id string) map[string]any {
	member, ok := s.channels[id]
	switch {
	case !ok:
		return slackErr("channel_not_found")
	case !member:
		return slackErr("not_in_channel")
	}
	return nil
}

func (s *Server) postMessage(p url.Values) map[string]any {
	if e := s.channelErr(p.Get("channel")); e != nil {
		return e
	}
	if e := checkMessage(p); e != nil {
		return e
	}
	s.seq++
	m := &Message{Channel: p.Get("channel"), TS: fmt.Sprintf("1700000000.%06d", s.seq), Text: p.Get("text"),
		Blocks: json.RawMessage(p.Get("blocks")), Params: p}
	s.messages = append(s.messages, m)
	return map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS}
}

func (s *Server) update(p url.Values) map[string]any {
	var m *Message
	for _, x := range s.messages {
		if x.Channel == p.Get("channel") && x.TS == p.Get("ts") {
			m = x
		}
	}
	if m == nil {
		return slackErr("message_not_found")
	}
	if e := checkMessage(p); e != nil {
		return e
	}
	m.Text, m.Blocks, m.Params = p.Get("text"), json.RawMessage(p.Get("blocks")), p
	m.Updates++
	return map[string]any{"ok": true, "channel": m.Channel, "ts": m.TS}
}

func (s *Server) postEphemeral(p url.Values) map[string]any {
	if e := s.channelErr(p.Get("channel")); e != nil {
		return e
	}
	if _, ok := s.users[p.Get("user")]; !ok {
		return slackErr("user_not_found")
	}
	if e := checkMessage(p); e != nil {
		return e
	}
	s.ephemerals = append(s.ephemerals, Ephemeral{Channel: p.Get("channel"), User: p.Get("user"), Text: p.Get("text")})
	return map[string]any{"ok": true, "message_ts": "1700000000.999999"}
}

func checkMessage(p url.Values) map[string]any {
	if units(p.Get("text")) > MaxText {
		return slackErr("msg_too_long")
	}
	raw := p.Get("blocks")
	if raw == "" {
		if p.Get("text") == "" {
			return slackErr("no_text")
		}
		return nil
	}
	if units(raw) > MaxBlocksJSON {
		return slackErr("msg_blocks_too_long")
	}
	if errs := checkBlocks([]byte(raw), MaxMessageBlocks); len(errs) > 0 {
		return slackErr("invalid_blocks", errs...)
	}
	return nil
}

func (s *Server) openView(body []byte) map[string]any {
	var req struct {
		TriggerID string          `json:"trigger_id"`
		View      json.RawMessage `json:"view"`
	}
	if err := json.Unmarshal(body, &req); err != nil {
		return slackErr("invalid_json")
	}
	tr, ok := s.triggers[req.TriggerID]
	switch {
	case !ok:
		return slackErr("invalid_trigger_id")
	case tr.used || s.now().Sub(tr.issued) > TriggerLifetime:
		return slackErr("expired_trigger_id")
	}
	if errs := checkModal(req.View); len(errs) > 0 {
		return slackErr("invalid_arguments", errs...)
	}
	tr.used = true
	s.triggers[req.TriggerID] = tr
	s.seq++
	v := View{ID: fmt.Sprintf("V%06d", s.seq), User: tr.user, TriggerID: req.TriggerID, View: req.View}
	s.views = append(s.views, v)
	return map[string]any{"ok": true, "view": map[string]any{"id": v.ID}}
}

// Block returns the blocks of m as generic JSON, for assertions.
func (m Message) Block() []map[string]any {
	var bs []map[string]any
	json.Unmarshal(m.Blocks, &bs)
	return bs
}

// AllText returns every text in m's blocks, joined by newlines: what a
// reader of the message sees, give or take formatting.
func (m Message) AllText() string {
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if t, ok := x["text"].(string); ok {
				b.WriteString(t)
				b.WriteByte('\n')
			}
			for k, c := range x {
				if k != "text" || !isString(c) {
					walk(c)
				}
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	var v any
	json.Unmarshal(m.Blocks, &v)
	walk(v)
	return b.String()
}

func isString(v any) bool { _, ok := v.(string); return ok }

// Mrkdwn returns the texts in m's blocks that Slack reads as mrkdwn,
// joined by newlines: where a mention or a link would act.
func (m Message) Mrkdwn() string {
	var b strings.Builder
	var walk func(v any)
	walk = func(v any) {
		switch x := v.(type) {
		case map[string]any:
			if x["type"] == "mrkdwn" {
				t, _ := x["text"].(string)
				b.WriteString(t)
				b.WriteByte('\n')
			}
			for _, c := range x {
				walk(c)
			}
		case []any:
			for _, c := range x {
				walk(c)
			}
		}
	}
	var v any
	json.Unmarshal(m.Blocks, &v)
	walk(v)
	return b.String()
}

// Click is the block_actions payload Slack sends when user clicks the
// button actionID of m; the payload's trigger_id can open a dialog for
// TriggerLifetime. The test fails if m has no such button.
func (s *Server) Click(user string, m Message, actionID string) []byte {
	s.t.Helper()
	blockID, value, ok := findButton(m.Blocks, actionID)
	if !ok {
		s.t.Fatalf("slacktest: message %s has no button %q", m.TS, actionID)
	}
	s.mu.Lock()
	s.seq++
	trig := fmt.Sprintf("%d.%d.trigger", s.seq, s.now().UnixNano())
	s.triggers[trig] = trigger{user: user, issued: s.now()}
	s.mu.Unlock()
	var blocks any
	json.Unmarshal(m.Blocks, &blocks)
	p := map[string]any{
		"type":       "block_actions",
		"team":       map[string]any{"id": TeamID, "domain": "airlock-test"},
		"user":       map[string]any{"id": user, "username": user, "team_id": TeamID},
		"api_app_id": "A0AIRLOCK",
		"token":      "deprecated-verification-token",
		"container":  map[string]any{"type": "message", "message_ts": m.TS, "channel_id": m.Channel, "is_ephemeral": false},
		"trigger_id": trig,
		"channel":    map[string]any{"id": m.Channel, "name": "approvals"},
		"message":    map[string]any{"type": "message", "ts": m.TS, "text": m.Text, "blocks": blocks, "user": BotUserID},
		"state":      map[string]any{"values": map[string]any{}},
		"actions": []any{map[string]any{
			"action_id": actionID, "block_id": blockID, "value": value, "type": "button",
			"action_ts": fmt.Sprintf("%d.000100", s.now().Unix()),
		}},
	}
	out, _ := json.Marshal(p)
	return out
}

func findButton(blocks json.RawMessage, actionID string) (blockID, value string, ok bool) {
	var bs []struct {
		BlockID  string `json:"block_id"`
		Elements []struct {
			ActionID string `json:"action_id"`
			Value    string `json:"value"`
		} `json:"elements"`
	}
	json.Unmarshal(blocks, &bs)
	for _, b := range bs {
		for _, e := range b.Elements {
			if e.ActionID == actionID {
				return b.BlockID, e.Value, true
			}
		}
	}
	return "", "", false
}

// Submit is the view_submission payload Slack sends when user submits the
// dialog v, with the input values given by block ID.
func (s *Server) Submit(user string, v View, inputs map[string]string) []byte {
	var view struct {
		CallbackID      string `json:"callback_id"`
		PrivateMetadata string `json:"private_metadata"`
		Blocks          []struct {
			Type    string `json:"type"`
			BlockID string `json:"block_id"`
			Element struct {
				Type          string          `json:"type"`
				ActionID      string          `json:"action_id"`
				InitialOption json.RawMessage `json:"initial_option"`
			} `json:"element"`
		} `json:"blocks"`
	}
	json.Unmarshal(v.View, &view)
	values := map[string]any{}
	for _, b := range view.Blocks {
		if b.Type != "input" {
			continue
		}
		val, ok := inputs[b.BlockID]
		if b.Element.Type == "static_select" {
			// A menu submits the option chosen: the one given, else the
			// menu's initial option.
			var opt any = b.Element.InitialOption
			if ok {
				opt = map[string]any{"value": val}
			}
			values[b.BlockID] = map[string]any{b.Element.ActionID: map[string]any{"type": b.Element.Type, "selected_option": opt}}
			continue
		}
		var field any
		if ok {
			field = val
		}
		values[b.BlockID] = map[string]any{b.Element.ActionID: map[string]any{"type": b.Element.Type, "value": field}}
	}
	p := map[string]any{
		"type":       "view_submission",
		"team":       map[string]any{"id": TeamID, "domain": "airlock-test"},
		"user":       map[string]any{"id": user, "username": user, "team_id": TeamID},
		"api_app_id": "A0AIRLOCK",
		"trigger_id": "submission.trigger",
		"view": map[string]any{
			"id": v.ID, "type": "modal", "callback_id": view.CallbackID, "private_metadata": view.PrivateMetadata,
			"state": map[string]any{"values": values},
		},
	}
	out, _ := json.Marshal(p)
	return out
}

// units is the length of s in UTF-16 code units.
func units(s string) int {
	n := 0
	for _, r := range s {
		n++
		if r >= 0x10000 {
			n++
		}
	}
	return n
}
