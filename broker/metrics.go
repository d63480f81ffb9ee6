package broker

import "time"

// Metrics receives the broker's measurements. cmd backs it with Prometheus;
// nil in Options means none are kept.
type Metrics interface {
	// Call counts a tools/call by its outcome at the gate: allowed,
	// denied, refused, held.
	Call(server, outcome string)
	// Held moves the number of calls waiting for a decision.
	Held(delta int)
	// Waited observes how long a held call waited, by its final status.
	Waited(status string, d time.Duration)
	// Decision counts an approver's verdict by channel (web, slack, cli,
	// api).
	Decision(channel, verdict string)
	// PolicyEval observes one policy evaluation.
	PolicyEval(d time.Duration)
}

type noMetrics struct{}

func (noMetrics) Call(string, string)          {}
func (noMetrics) Held(int)                     {}
func (noMetrics) Waited(string, time.Duration) {}
func (noMetrics) Decision(string, string)      {}
func (noMetrics) PolicyEval(time.Duration)     {}
