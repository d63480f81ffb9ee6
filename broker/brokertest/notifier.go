package brokertest

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/airlock-mcp/airlock/broker"
)

// Notifier is a broker.Notifier and broker.Updater that records what it
// was told, for tests of what the core announces and when. Its message
// reference is the approval's id; Fail makes it fail instead.
type Notifier struct {
	// NotifierName is its Name; "recorder" if empty.
	NotifierName string

	mu       sync.Mutex
	notified []*broker.Approval
	at       []time.Time // when each was notified
	updated  []*broker.Approval
	err      error
	ch       chan *broker.Approval
}

// NewNotifier returns a recording notifier.
func NewNotifier() *Notifier { return &Notifier{ch: make(chan *broker.Approval, 256)} }

// Name implements broker.Notifier.
func (n *Notifier) Name() string {
	if n.NotifierName == "" {
		return "recorder"
	}
	return n.NotifierName
}

// Notify implements broker.Notifier.
func (n *Notifier) Notify(_ context.Context, a *broker.Approval) (json.RawMessage, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.err != nil {
		return nil, n.err
	}
	n.notified = append(n.notified, a)
	n.at = append(n.at, time.Now())
	n.send(a)
	return json.RawMessage(fmt.Sprintf("%q", a.ID)), nil
}

// Update implements broker.Updater.
func (n *Notifier) Update(_ context.Context, a *broker.Approval) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.err != nil {
		return n.err
	}
	n.updated = append(n.updated, a)
	n.send(a)
	return nil
}

// send passes a on to Next without blocking: a test that does not read
// loses nothing it can ask for with Notified and Updated.
func (n *Notifier) send(a *broker.Approval) {
	select {
	case n.ch <- a:
	default:
	}
}

// Next waits for the next approval notified or updated.
func (n *Notifier) Next(t testing.TB) *broker.Approval {
	t.Helper()
	return Wait(t, n.ch, "a notification")
}

// Fail makes later calls fail with err; nil makes them succeed again.
func (n *Notifier) Fail(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.err = err
}

// Notified returns the approvals announced so far, in order.
func (n *Notifier) Notified() []*broker.Approval {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*broker.Approval(nil), n.notified...)
}

// NotifiedAt returns when each of Notified was announced.
func (n *Notifier) NotifiedAt() []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]time.Time(nil), n.at...)
}

// Updated returns the approvals whose messages were updated, in order.
func (n *Notifier) Updated() []*broker.Approval {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]*broker.Approval(nil), n.updated...)
}
