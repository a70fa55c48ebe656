package main

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/push2/push2/engine"
	"github.com/push2/push2/engine/pgstore"
)

// metrics are push2d's Prometheus metrics, served on the admin interface at
// /metrics. Label values come from small fixed sets (outcome codes, stanza
// error conditions), never from user data.
type metrics struct {
	reg            *prometheus.Registry
	connected      prometheus.Gauge
	outcomes       *prometheus.CounterVec
	outbox         *prometheus.CounterVec
	deliveryErrors *prometheus.CounterVec
	ignoredReports *prometheus.CounterVec
	enables        *prometheus.CounterVec
	disables       prometheus.Counter
	refused        prometheus.Counter
	events         prometheus.Counter
	evaluation     prometheus.Histogram
	adminRefused   *prometheus.CounterVec
	relayRequests  *prometheus.CounterVec
	relaySeconds   prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "push2_component_connected", Help: "1 while the component connection to the XMPP server is up.",
		}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "push2_outcomes_total", Help: "Registration evaluations by outcome: pushed, or why not (no-match, filter, grace, duplicate, …).",
		}, []string{"outcome"}),
		outbox: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "push2_outbox_total", Help: "Outbox events: sent (handed to the server), delivered (no error within the window), retry, dropped, disabled (registration).",
		}, []string{"event"}),
		deliveryErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "push2_delivery_errors_total", Help: "Error replies from push services, by error type and condition.",
		}, []string{"type", "condition"}),
		ignoredReports: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "push2_ignored_delivery_reports_total", Help: "Delivery reports (errors, confirmations) that did not count: for no pending notification (unknown), not from the notification's push service (wrong-sender), or without an id or sender (malformed).",
		}, []string{"reason"}),
		enables: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "push2_enables_total", Help: "Enable requests, by result (ok or the stanza error condition).",
		}, []string{"result"}),
		disables: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "push2_disables_total", Help: "Disable requests.",
		}),
		refused: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "push2_refused_stanzas_total", Help: "Stanzas refused because they did not come from a configured server domain.",
		}),
		events: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "push2_bridge_events_total", Help: "Stanza events received from the bridges (before any check).",
		}),
		evaluation: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "push2_evaluation_seconds", Help: "Time to evaluate one stanza event against the account's registrations.",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		adminRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "push2_admin_refused_total", Help: "Admin requests refused, by reason: host (DNS rebinding), no-token (none configured), token (missing or wrong), content-type, rate-limit.",
		}, []string{"reason"}),
		relayRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "push2_relay_requests_total", Help: "Web Push relay notifications by result class: the push service's status class (2xx, 3xx, 4xx, 5xx), timeout, connection (no answer), refused (not sent: bad notification, endpoint refused, Retry-After pending).",
		}, []string{"class"}),
		relaySeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "push2_relay_seconds", Help: "Time for one Web Push relay notification, from the outbox's hand-over to the push service's answer.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	m.reg.MustRegister(m.connected, m.outcomes, m.outbox, m.deliveryErrors, m.ignoredReports, m.enables, m.disables, m.refused, m.events, m.evaluation, m.adminRefused, m.relayRequests, m.relaySeconds)
	return m
}

// observeRelay is the relay's Observe.
func (m *metrics) observeRelay(class string, d time.Duration) {
	m.relayRequests.WithLabelValues(class).Inc()
	m.relaySeconds.Observe(d.Seconds())
}

// watchPostgres adds the PostgreSQL store's state to the metrics, read at
// each scrape (one query, bounded to 2 s): whether the database answers,
// the connection pool, the notifications not yet sent and how late the
// oldest due one is (the lag an operator alerts on: it grows when no
// instance sends, for want of a connection or a database). It returns the
// reader, which /healthz shares (one query per 500 ms for both). out's
// Sweeps says whether this instance leads the periodic sweeps.
func (m *metrics) watchPostgres(st *pgstore.Store, out *engine.Outbox) func() pgstore.Health {
	var mu sync.Mutex
	var last pgstore.Health
	var at time.Time
	read := func() pgstore.Health {
		mu.Lock()
		defer mu.Unlock()
		if time.Since(at) > 500*time.Millisecond { // one query per scrape
			last, at = st.Health(time.Now(), 2*time.Second), time.Now()
		}
		return last
	}
	gauge := func(name, help string, f func(h pgstore.Health) float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return f(read()) })
	}
	m.reg.MustRegister(
		gauge("push2_store_up", "1 while the PostgreSQL store answers", func(h pgstore.Health) float64 {
			if h.Up {
				return 1
			}
			return 0
		}),
		gauge("push2_store_pool_connections", "PostgreSQL connections open", func(h pgstore.Health) float64 { return float64(h.TotalConns) }),
		gauge("push2_store_pool_acquired", "PostgreSQL connections in use", func(h pgstore.Health) float64 { return float64(h.AcquiredConns) }),
		gauge("push2_store_pool_max", "PostgreSQL connections allowed", func(h pgstore.Health) float64 { return float64(h.MaxConns) }),
		gauge("push2_outbox_pending", "notifications in the shared outbox not yet sent", func(h pgstore.Health) float64 { return float64(h.Pending) }),
		gauge("push2_outbox_due_lag_seconds", "how long the oldest due notification has waited past its due time", func(h pgstore.Health) float64 { return h.DueLag.Seconds() }),
		gauge("push2_sweep_leader", "1 on the instance that runs the periodic sweeps (dedupe pruning) for every instance on the database", func(pgstore.Health) float64 {
			if _, lead := out.Sweeps(); lead {
				return 1
			}
			return 0
		}),
	)
	return read
}
