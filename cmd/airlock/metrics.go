package main

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/airlock-mcp/airlock/broker"
	"github.com/airlock-mcp/airlock/relay"
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
	refusals  *prometheus.CounterVec

	// usage is what the usage gauges read: the current broker's and
	// relay's, registered once, since a wrap that takes the state over
	// starts a broker on metrics it already has.
	usage     atomic.Pointer[usageCollector]
	usageOnce sync.Once
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
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "airlock_limit_refusals_total",
			Help: "Requests refused at a limit, by the limit's key under limits: in the config.",
		}, []string{"limit"}),
	}
	m.reg.MustRegister(m.calls, m.held, m.waits, m.decisions, m.policy, m.refusals,
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

func (m *promMetrics) LimitRefused(limit string) { m.refusals.WithLabelValues(limit).Inc() }

// watchUsage exports what the broker's and the relay's limits count, read
// at each scrape; sessions counts the open HTTP sessions (nil: none, as
// under wrap).
func (m *promMetrics) watchUsage(b *broker.Broker, r *relay.Relay, sessions func() int) {
	m.usage.Store(&usageCollector{usage: b.Usage, children: r.Children, sessions: sessions})
	m.usageOnce.Do(func() { m.reg.MustRegister(currentUsage{m}) })
}

// currentUsage collects the usage of the broker watched last.
type currentUsage struct{ m *promMetrics }

func (c currentUsage) Describe(ch chan<- *prometheus.Desc) { c.m.usage.Load().Describe(ch) }
func (c currentUsage) Collect(ch chan<- prometheus.Metric) { c.m.usage.Load().Collect(ch) }

var (
	sessionsDesc  = prometheus.NewDesc("airlock_sessions", "Open streamable HTTP sessions.", nil, nil)
	childrenDesc  = prometheus.NewDesc("airlock_upstream_children", "Open upstream sessions of a stdio server: its child processes.", []string{"server"}, nil)
	heldBytesDesc = prometheus.NewDesc("airlock_held_argument_bytes", "Bytes of arguments in calls waiting for a decision.", nil, nil)
)

// usageCollector reads the counts at each scrape rather than mirroring
// them, so that the metrics cannot drift from what the limits enforce.
type usageCollector struct {
	usage    func() broker.Usage
	children func() map[string]int
	sessions func() int
}

func (c *usageCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- sessionsDesc
	ch <- childrenDesc
	ch <- heldBytesDesc
}

func (c *usageCollector) Collect(ch chan<- prometheus.Metric) {
	n := 0
	if c.sessions != nil {
		n = c.sessions()
	}
	ch <- prometheus.MustNewConstMetric(sessionsDesc, prometheus.GaugeValue, float64(n))
	u := c.usage()
	for server, k := range c.children() {
		ch <- prometheus.MustNewConstMetric(childrenDesc, prometheus.GaugeValue, float64(k), server)
	}
	ch <- prometheus.MustNewConstMetric(heldBytesDesc, prometheus.GaugeValue, float64(u.HeldBytes))
}
