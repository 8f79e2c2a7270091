package publisher

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relay's Prometheus metrics.
type Metrics struct {
	published *prometheus.CounterVec
	errors    *prometheus.CounterVec
	delay     prometheus.Histogram
	leader    prometheus.Gauge
}

// NewMetrics registers the relay metrics with reg, including the outbox backlog and the age of
// its oldest message, which are read from the outbox at each scrape.
func NewMetrics(reg prometheus.Registerer, backend Outbox) *Metrics {
	m := &Metrics{
		published: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_published_total",
			Help: "Job-state messages published, by transport (confirmed by the broker for amqp).",
		}, []string{"transport"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_publish_errors_total",
			Help: "Failed publish attempts, by transport; the messages are retried.",
		}, []string{"transport"}),
		delay: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "execdb_publish_delay_seconds",
			Help:    "From a change (the time the event was received, just before its commit) to its message being published on every bus.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2.5, 14),
		}),
		leader: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "execdb_relay_active",
			Help: "1 when this process is the active outbox relay.",
		}),
	}
	reg.MustRegister(m.published, m.errors, m.delay, m.leader, &backlog{backend: backend})
	return m
}

var (
	backlogDesc = prometheus.NewDesc("execdb_outbox_backlog", "Job-state messages waiting to be published.", nil, nil)
	oldestDesc  = prometheus.NewDesc("execdb_outbox_oldest_age_seconds", "Age of the oldest message waiting to be published; 0 when none waits.", nil, nil)
)

// backlog reads the outbox size at scrape time.
type backlog struct{ backend Outbox }

func (b *backlog) Describe(ch chan<- *prometheus.Desc) {
	ch <- backlogDesc
	ch <- oldestDesc
}

func (b *backlog) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := b.backend.OutboxStats(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(backlogDesc, err)
		return
	}
	age := 0.0
	if st.Oldest != nil {
		age = time.Since(*st.Oldest).Seconds()
	}
	ch <- prometheus.MustNewConstMetric(backlogDesc, prometheus.GaugeValue, float64(st.Backlog))
	ch <- prometheus.MustNewConstMetric(oldestDesc, prometheus.GaugeValue, age)
}
