package slacktest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
)

// socketState is the fake's Socket Mode side: one live connection at a
// time, as with an app that runs one Airlock.
type socketState struct {
	mu        sync.Mutex
	conn      *socketConn
	opened    int                             // connections accepted so far
	connected chan struct{}                   // closed when a connection is live; replaced when it drops
	acks      map[string]chan json.RawMessage // envelope ID → where its ack goes
	envelopes int
	closed    bool
	wg        sync.WaitGroup
}

type socketConn struct {
	ws   *websocket.Conn
	wmu  sync.Mutex // gorilla allows one writer at a time
	done chan struct{}
}

func (c *socketConn) write(v any) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return c.ws.WriteJSON(v)
}

// SocketPing is how often the fake pings a Socket Mode connection, as
// Slack does; slack-go reconnects when pings stop.
const SocketPing = 2 * time.Second

// connectionsOpen answers apps.connections.open; s.mu is held.
func (s *Server) connectionsOpen(token string) map[string]any {
	switch token {
	case AppToken:
	case "":
		return slackErr("not_authed")
	case BotToken:
		return slackErr("not_allowed_token_type")
	default:
		return slackErr("invalid_auth")
	}
	if s.listener == nil {
		return slackErr("socket_mode_not_listening") // the test forgot Listen
	}
	s.seq++
	return map[string]any{"ok": true, "url": "ws" + strings.TrimPrefix(s.listener.URL, "http") + fmt.Sprintf("/link?ticket=%d", s.seq)}
}

// upgrader accepts any Origin: slack-go sends Slack's own.
var upgrader = websocket.Upgrader{CheckOrigin: func(*http.Request) bool { return true }}

func (s *Server) serveSocket(w http.ResponseWriter, r *http.Request) {
	ws, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	c := &socketConn{ws: ws, done: make(chan struct{})}
	st := &s.socket
	st.mu.Lock()
	if st.closed {
		st.mu.Unlock()
		ws.Close()
		return
	}
	if old := st.conn; old != nil {
		old.ws.Close() // one live connection: the newest
	}
	st.conn = c
	st.opened++
	n := st.opened
	// A client that reconnects before its old connection's reader
	// noticed the close finds connected still closed: it stays so.
	select {
	case <-st.connected:
	default:
		close(st.connected)
	}
	st.wg.Add(2)
	st.mu.Unlock()

	c.write(map[string]any{"type": "hello", "num_connections": 1,
		"debug_info":      map[string]any{"host": "slacktest", "approximate_connection_time": 18060},
		"connection_info": map[string]any{"app_id": "A0AIRLOCK"}})
	go func() {
		defer st.wg.Done()
		t := time.NewTicker(SocketPing)
		defer t.Stop()
		for {
			select {
			case <-c.done:
				return
			case <-t.C:
				c.wmu.Lock()
				err := c.ws.WriteControl(websocket.PingMessage, []byte(fmt.Sprint(n)), time.Now().Add(time.Second))
				c.wmu.Unlock()
				if err != nil {
					return
				}
			}
		}
	}()
	go func() {
		defer st.wg.Done()
		defer close(c.done)
		defer s.dropSocket(c)
		for {
			var ack struct {
				EnvelopeID string          `json:"envelope_id"`
				Payload    json.RawMessage `json:"payload"`
			}
			if err := c.ws.ReadJSON(&ack); err != nil {
				return
			}
			st.mu.Lock()
			ch := st.acks[ack.EnvelopeID]
			delete(st.acks, ack.EnvelopeID)
			st.mu.Unlock()
			if ch != nil {
				if ack.Payload == nil {
					ack.Payload = json.RawMessage("null")
				}
				ch <- ack.Payload
			}
		}
	}()
}

func (s *Server) dropSocket(c *socketConn) {
	c.ws.Close()
	st := &s.socket
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.conn == c {
		st.conn = nil
		st.connected = make(chan struct{})
	}
}

// SocketConnections is how many Socket Mode connections were opened.
func (s *Server) SocketConnections() int {
	s.socket.mu.Lock()
	defer s.socket.mu.Unlock()
	return s.socket.opened
}

// WaitSocket waits until a Socket Mode connection is live.
func (s *Server) WaitSocket(ctx context.Context) error {
	s.socket.mu.Lock()
	ch := s.socket.connected
	s.socket.mu.Unlock()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("slacktest: no socket mode connection: %w", ctx.Err())
	}
}

// ErrNoAck is returned by Deliver when the client did not acknowledge an
// envelope in time: Slack would tell the person the app did not respond.
var ErrNoAck = errors.New("slacktest: envelope not acknowledged")

// Deliver sends an interactive envelope carrying payload over the live
// Socket Mode connection (waiting for one), and returns the
// acknowledgement's payload ("null" for none). Slack gives up after three
// seconds, and so does Deliver.
func (s *Server) Deliver(ctx context.Context, payload []byte) (json.RawMessage, error) {
	if err := s.WaitSocket(ctx); err != nil {
		return nil, err
	}
	st := &s.socket
	st.mu.Lock()
	c := st.conn
	st.envelopes++
	id := fmt.Sprintf("envelope-%d", st.envelopes)
	ch := make(chan json.RawMessage, 1)
	st.acks[id] = ch
	st.mu.Unlock()
	if c == nil {
		return nil, errors.New("slacktest: the connection dropped")
	}
	err := c.write(map[string]any{"envelope_id": id, "type": "interactive",
		"payload": json.RawMessage(payload), "accepts_response_payload": false})
	if err != nil {
		return nil, fmt.Errorf("slacktest: sending an envelope: %w", err)
	}
	t := time.NewTimer(3 * time.Second)
	defer t.Stop()
	select {
	case ack := <-ch:
		return ack, nil
	case <-t.C:
		return nil, ErrNoAck
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Disconnect asks the client to reconnect, as Slack does every few hours.
func (s *Server) Disconnect() {
	s.socket.mu.Lock()
	c := s.socket.conn
	s.socket.mu.Unlock()
	if c != nil {
		c.write(map[string]any{"type": "disconnect", "reason": "refresh_requested",
			"debug_info": map[string]any{"host": "slacktest"}})
	}
}

func (s *Server) closeSocket() {
	st := &s.socket
	st.mu.Lock()
	st.closed = true
	c := st.conn
	st.mu.Unlock()
	if c != nil {
		c.ws.Close()
	}
	st.wg.Wait()
}
