// Package metrics holds the Prometheus metrics that several components update: job transitions
// and crashes counted once, whichever way the event came in.
package metrics

import (
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// Jobs counts what events did to jobs. Its methods are safe for concurrent use.
type Jobs struct {
	events      *prometheus.CounterVec
	transitions *prometheus.CounterVec
	crashes     *prometheus.CounterVec
}

// NewJobs registers the job metrics with reg.
func NewJobs(reg prometheus.Registerer) *Jobs {
	m := &Jobs{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_events_total",
			Help: "Events received about jobs, by source, kind and verdict (applied, duplicate, late, conflict).",
		}, []string{"source", "kind", "verdict"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_transitions_total",
			Help: "Applied job transitions, by the state entered.",
		}, []string{"state"}),
		crashes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_crashes_total",
			Help: "Jobs that crashed, by notify and cause.",
		}, []string{"notify", "cause"}),
	}
	reg.MustRegister(m.events, m.transitions, m.crashes)
	return m
}

// Observe counts one create or event result.
func (m *Jobs) Observe(origin statemachine.Origin, kind statemachine.EventKind, r storage.Result) {
	m.events.WithLabelValues(string(origin), string(kind), string(r.Verdict)).Inc()
	if r.Verdict != statemachine.Applied {
		return
	}
	if kind == statemachine.EventCreate {
		// A create enters SCHEDULED, even when events that waited for the job took it further
		// at once: those are observed on their own.
		m.transitions.WithLabelValues(string(statemachine.Scheduled)).Inc()
		return
	}
	m.transitions.WithLabelValues(string(r.Job.State)).Inc()
	if r.Job.State == statemachine.Crashed && r.Job.Crash != nil {
		m.crashes.WithLabelValues(string(r.Job.Crash.Notify), string(r.Job.Crash.Cause)).Inc()
	}
}
