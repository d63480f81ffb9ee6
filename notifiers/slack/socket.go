package slack

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/slack-go/slack/socketmode"
)

// Reconnection after slack-go's Socket Mode client gives up (it retries on
// its own first, but stops on errors such as a revoked token).
const (
	socketFirstBackoff = time.Second
	socketMaxBackoff   = 5 * time.Minute
)

// RunSocketMode takes clicks over Socket Mode until ctx ends: Airlock
// opens a WebSocket to Slack with the app-level token, so it needs no
// public URL. Every request is acknowledged at once and handled after, and
// the connection is reopened whenever it drops. It returns when ctx is
// done, after its goroutines have stopped.
func (n *Notifier) RunSocketMode(ctx context.Context, d Voter) error {
	if !n.hasAppToken {
		return errors.New("slack: Socket Mode needs an app-level token (xapp-…)")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	client := socketmode.New(n.api)
	connDone := make(chan struct{})
	go func() {
		defer close(connDone)
		n.keepConnected(ctx, client)
	}()
	for {
		select {
		case <-ctx.Done():
			<-connDone
			return nil
		case ev := <-client.Events:
			n.socketEvent(ctx, client, d, ev)
		}
	}
}

// keepConnected runs the client, and runs it again when it stops.
func (n *Notifier) keepConnected(ctx context.Context, client *socketmode.Client) {
	backoff := socketFirstBackoff
	for {
		start := time.Now()
		err := client.RunContext(ctx)
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) > socketMaxBackoff {
			backoff = socketFirstBackoff // it ran well for a while
		}
		n.log.Error("slack socket mode stopped; reconnecting", "retry_in", backoff, "err", err)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
		backoff = min(2*backoff, socketMaxBackoff)
	}
}

// envelope is a Socket Mode request as Slack sends it.
type envelope struct {
	EnvelopeID string          `json:"envelope_id"`
	Type       string          `json:"type"`
	Payload    json.RawMessage `json:"payload"`
}

func (n *Notifier) socketEvent(ctx context.Context, client *socketmode.Client, d Voter, ev socketmode.Event) {
	switch ev.Type {
	case socketmode.EventTypeConnected:
		n.log.Info("slack socket mode connected")
	case socketmode.EventTypeConnectionError, socketmode.EventTypeInvalidAuth, socketmode.EventTypeIncomingError:
		n.log.Warn("slack socket mode connection trouble", "event", ev.Type, "detail", ev.Data)
	case socketmode.EventTypeInteractive:
		if ev.Request != nil {
			n.socketRequest(ctx, client, d, envelope{EnvelopeID: ev.Request.EnvelopeID, Type: ev.Request.Type, Payload: ev.Request.Payload})
		}
	case socketmode.EventTypeErrorBadMessage:
		// slack-go could not decode the payload into its own types; it
		// may still be a click Airlock can read.
		bad, ok := ev.Data.(*socketmode.ErrorBadMessage)
		// From Slack's authenticated socket, not from an agent or a server.
		var env envelope
		if ok && json.Unmarshal(bad.Message, &env) == nil && env.EnvelopeID != "" {
			n.socketRequest(ctx, client, d, env)
			return
		}
		n.log.Warn("unreadable socket mode message dropped")
	case socketmode.EventTypeEventsAPI, socketmode.EventTypeSlashCommand:
		// Airlock asks for neither; acknowledged so that Slack does not
		// send them again.
		if ev.Request != nil {
			client.AckCtx(ctx, ev.Request.EnvelopeID, nil)
		}
	}
}

// socketRequest acknowledges an envelope before handling it: Slack tells
// the person "this app did not respond" after three seconds.
func (n *Notifier) socketRequest(ctx context.Context, client *socketmode.Client, d Voter, env envelope) {
	if err := client.AckCtx(ctx, env.EnvelopeID, nil); err != nil {
		n.log.Warn("acknowledging a socket mode request failed", "err", err)
	}
	if env.Type != socketmode.RequestTypeInteractive {
		return
	}
	n.accept(d, env.Payload, "socket_mode")
}
