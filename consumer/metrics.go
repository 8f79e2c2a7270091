package consumer

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the consumers' Prometheus metrics. One Metrics serves every consumer and the
// sweeper; the transport is a label.
type Metrics struct {
	received *prometheus.CounterVec
	outcomes *prometheus.CounterVec
	rejected *prometheus.CounterVec
	batch    prometheus.Histogram
	apply    prometheus.Histogram
	lag      *prometheus.HistogramVec
	dbErrors *prometheus.CounterVec
	unstored *prometheus.CounterVec
	stalled  *prometheus.GaugeVec
}

// NewMetrics registers the consumer metrics with reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_bus_received_total",
			Help: "Messages taken off the bus, by transport.",
		}, []string{"transport"}),
		outcomes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_bus_messages_total",
			Help: "Messages handled, by transport, kind (create, start, end; empty when undecodable) and outcome (applied, duplicate, late, parked, rejected).",
		}, []string{"transport", "kind", "outcome"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_bus_rejected_total",
			Help: "Messages rejected, by transport and reason (undecodable, schema, unknown_topic, topic_mismatch, unknown_job, conflict, unprocessable).",
		}, []string{"transport", "reason"}),
		batch: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "execdb_bus_batch_size",
			Help:    "Messages applied in one database transaction.",
			Buckets: []float64{1, 2, 5, 10, 20, 50, 100, 200, 500},
		}),
		apply: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "execdb_bus_apply_seconds",
			Help:    "Time to apply one batch, commit included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "execdb_bus_lag_seconds",
			Help:    "From the time the sender stamped on a message (sent-at, fedmsg timestamp) to its effect committed, by transport.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}, []string{"transport"}),
		dbErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_bus_apply_errors_total",
			Help: "Failed attempts to apply a batch (retried), by transport.",
		}, []string{"transport"}),
	}
	m.unstored = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "execdb_bus_rejected_unstored_total",
		Help: "Rejected messages the database refused to keep (dead-lettered, not listed by /api/v1/rejected), by transport.",
	}, []string{"transport"})
	m.stalled = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "execdb_bus_stalled_seconds",
		Help: "How long the most stuck worker of a consumer has held messages without settling any, by transport; 0 when every worker is idle or making progress.",
	}, []string{"transport"})
	reg.MustRegister(m.received, m.outcomes, m.rejected, m.batch, m.apply, m.lag, m.dbErrors, m.unstored, m.stalled)
	return m
}
