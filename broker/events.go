package broker

import "sync"

// ApprovalEvent tells live views (the web UI, the API's event stream) that
// an approval appeared or changed.
type ApprovalEvent struct {
	// Type is "held" for a new approval, "updated" for a vote that did not
	// decide it, and "decided" when it left pending.
	Type     string    `json:"type"`
	Approval *Approval `json:"approval"`
}

// subscriberBuffer bounds the events kept for a slow subscriber; past it,
// its channel is closed (see Subscribe).
const subscriberBuffer = 256

type subscriber struct {
	ch chan ApprovalEvent
}

type hub struct {
	mu   sync.Mutex
	subs map[*subscriber]struct{}
}

// Subscribe returns a channel of approval events and a function that ends
// the subscription. A subscriber that falls more than subscriberBuffer
// events behind has its channel closed, so that it can reload.
func (b *Broker) Subscribe() (<-chan ApprovalEvent, func()) {
	s := &subscriber{ch: make(chan ApprovalEvent, subscriberBuffer)}
	b.events.mu.Lock()
	if b.events.subs == nil {
		b.events.subs = make(map[*subscriber]struct{})
	}
	b.events.subs[s] = struct{}{}
	b.events.mu.Unlock()
	return s.ch, func() {
		b.events.mu.Lock()
		if _, ok := b.events.subs[s]; ok {
			delete(b.events.subs, s)
			close(s.ch)
		}
		b.events.mu.Unlock()
	}
}

func (b *Broker) publish(ev ApprovalEvent) {
	b.events.mu.Lock()
	defer b.events.mu.Unlock()
	for s := range b.events.subs {
		select {
		case s.ch <- ev:
		default:
			// Blocking here would stall decisions behind a slow browser.
			delete(b.events.subs, s)
			close(s.ch)
			b.log.Warn("dropped a slow event subscriber")
		}
	}
}
