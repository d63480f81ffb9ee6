package main

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// promMetrics backs broker.Metrics with Prometheus collectors, served at
// /metrics.
type promMetrics struct {
	reg       *prometheus.Registry
	calls     *prometheus.CounterVec
	held      prometheus.Gauge
	waits     *prometheus.HistogramVec
	decisions *prometheus.CounterVec
	policy    prometheus.Histogram
}

func newPromMetrics() *promMetrics {
	m := &promMetrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_calls_total",
			Help: "tools/call requests by server and outcome at the gate (allowed, denied, refused, held).",
		}, []string{"server", "outcome"}),
		held: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "airlock_held_calls",
			Help: "Calls waiting for a decision now.",
		}),
		waits: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "airlock_hold_wait_seconds",
			Help:    "How long held calls waited, by final status.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"status"}),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_decisions_total",
			Help: "Approvers' verdicts by channel (web, slack, cli, api) and verdict.",
		}, []string{"channel", "verdict"}),
		policy: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "airlock_policy_evaluation_seconds",
			Help:    "Time to evaluate the policy for one call.",
			Buckets: []float64{10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3, 250e-3},
		}),
	}
	m.reg.MustRegister(m.calls, m.held, m.waits, m.decisions, m.policy,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *promMetrics) Call(server, outcome string) { m.calls.WithLabelValues(server, outcome).Inc() }
func (m *promMetrics) Held(delta int)              { m.held.Add(float64(delta)) }
func (m *promMetrics) Waited(status string, d time.Duration) {
	m.waits.WithLabelValues(status).Observe(d.Seconds())
}
func (m *promMetrics) Decision(channel, verdict string) {
	m.decisions.WithLabelValues(channel, verdict).Inc()
}
func (m *promMetrics) PolicyEval(d time.Duration) { m.policy.Observe(d.Seconds()) }
