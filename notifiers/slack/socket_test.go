package slack_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker/brokertest"
	"github.com/airlock-mcp/airlock/notifiers/slack"
	"github.com/airlock-mcp/airlock/notifiers/slack/slacktest"
)

// These tests run in real time: Socket Mode is a WebSocket on a real
// port, which a synctest bubble cannot hold.

// runSocketMode runs the notifier's Socket Mode client until the test
// ends, and checks that it stops when told to.
func runSocketMode(t *testing.T, h *harness) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.n.RunSocketMode(ctx, h.Broker) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("RunSocketMode: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("RunSocketMode did not return after its context ended")
		}
	})
}

func socketHarness(t *testing.T, cfg func(*slack.Config)) *harness {
	h := newHarness(t, harnessOptions{listen: true, config: func(c *slack.Config) {
		c.AppToken = slacktest.AppToken
		c.SigningSecret = ""
		c.HTTPClient = nil // over the network, as in production
		if cfg != nil {
			cfg(c)
		}
	}})
	runSocketMode(t, h)
	return h
}

// deliver sends a payload over Socket Mode and checks it was acknowledged
// within Slack's three seconds.
func deliver(t *testing.T, h *harness, payload []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	ack, err := h.slack.Deliver(ctx, payload)
	if err != nil {
		t.Fatalf("deliver: %v", err)
	}
	if took := time.Since(start); took > 3*time.Second || string(ack) != "null" {
		t.Errorf("ack %s after %s", ack, took)
	}
}

func TestSocketModeApprove(t *testing.T) {
	h := socketHarness(t, nil)
	done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
	a := h.Held()
	brokertest.WaitFor(t, "the request message", func() bool { return len(h.slack.Messages()) == 1 })
	deliver(t, h, h.slack.Click(alice, h.message(), "airlock_approve"))
	if r := brokertest.Wait(t, done, "the call's outcome"); !released(r) {
		t.Fatalf("the call returned %+v", r)
	}
	brokertest.WaitFor(t, "the message to show the approval", func() bool {
		return strings.Contains(h.message().Mrkdwn(), "*Approved* by <@U0ALICE> (alice)")
	})
	if got := h.approval(a.ID); got.Votes[0].Channel != "slack" {
		t.Errorf("vote %+v", got.Votes[0])
	}
}

// Slack asks clients to reconnect every few hours; clicks keep working,
// the deny dialog included.
func TestSocketModeReconnectsAndDenies(t *testing.T) {
	h := socketHarness(t, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := h.slack.WaitSocket(ctx); err != nil {
		t.Fatal(err)
	}
	h.slack.Disconnect()
	brokertest.WaitFor(t, "a second connection", func() bool { return h.slack.SocketConnections() == 2 })

	done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
	h.Held()
	brokertest.WaitFor(t, "the request message", func() bool { return len(h.slack.Messages()) == 1 })
	deliver(t, h, h.slack.Click(bob, h.message(), "airlock_deny"))
	brokertest.WaitFor(t, "the deny dialog", func() bool { return len(h.slack.Views()) == 1 })
	deliver(t, h, h.slack.Submit(bob, h.slack.Views()[0], map[string]string{"reason": "wrong host"}))
	if r := brokertest.Wait(t, done, "the call's outcome"); r.Forward || !strings.Contains(r.Refusal, "denied by slack:U0BOB: wrong host") {
		t.Fatalf("the call returned %+v", r)
	}
}

// A refused token is reported and retried with backoff, not spun on, and
// stopping still works.
func TestSocketModeBadToken(t *testing.T) {
	var mu sync.Mutex
	var logs bytes.Buffer
	h := newHarness(t, harnessOptions{listen: true, config: func(c *slack.Config) {
		c.AppToken = "xapp-revoked"
		c.Logger = slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))
	}})
	runSocketMode(t, h)
	brokertest.WaitFor(t, "the error to be logged", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return strings.Contains(logs.String(), "slack socket mode stopped; reconnecting")
	})
	time.Sleep(500 * time.Millisecond)
	if n := len(h.slack.Calls("apps.connections.open")); n != 1 {
		t.Errorf("%d connection attempts within the first backoff", n)
	}
	mu.Lock()
	defer mu.Unlock()
	if strings.Contains(logs.String(), "xapp-revoked") {
		t.Error("the token is in the logs")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestSocketModeNeedsAppToken(t *testing.T) {
	n := newNotifier(t, config(newSlack(t)))
	if err := n.RunSocketMode(context.Background(), nil); err == nil {
		t.Error("Socket Mode ran without an app-level token")
	}
}

// slack-go refuses some payloads its own types cannot hold (here, an
// input block it does not understand in the message the button is on);
// Airlock reads the envelope itself and still takes the click.
func TestSocketModeClickSlackGoCannotDecode(t *testing.T) {
	h := socketHarness(t, nil)
	done := h.Call(context.Background(), "write", map[string]any{"path": "/srv/x"})
	h.Held()
	brokertest.WaitFor(t, "the request message", func() bool { return len(h.slack.Messages()) == 1 })
	click := string(h.slack.Click(alice, h.message(), "airlock_approve"))
	click = strings.Replace(click, `"blocks":[`, `"blocks":[{"type":"input","block_id":"odd","element":42},`, 1)
	deliver(t, h, []byte(click))
	if r := brokertest.Wait(t, done, "the call's outcome"); !released(r) {
		t.Fatalf("the call returned %+v", r)
	}
}
