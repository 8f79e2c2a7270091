// Package metrics holds the job metrics: events, transitions, crashes and automatic-reschedule
// decisions, counted once from what each committed unit of work did (jobs.Config.OnCommit),
// whichever way the event came in.
package metrics

import (
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/prometheus/client_golang/prometheus"
)

// Jobs counts what events did to jobs. Its methods are safe for concurrent use.
type Jobs struct {
	events      *prometheus.CounterVec
	transitions *prometheus.CounterVec
	crashes     *prometheus.CounterVec
	decisions   *prometheus.CounterVec
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
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_auto_reschedule_decisions_total",
			Help: "Decisions of the automatic rescheduler about crashed jobs, by decision: planned, or why not (a decline because automatic rescheduling is off is not counted).",
		}, []string{"decision"}),
	}
	reg.MustRegister(m.events, m.transitions, m.crashes, m.decisions)
	return m
}

// Commit counts what a committed unit of work did: its OnCommit hook.
func (m *Jobs) Commit(c jobs.Commit) {
	for _, ev := range c.Events {
		m.Observe(ev)
	}
}

// Observe counts one event: by source, kind and verdict; an applied create, start or end as a
// transition into its state (a create into SCHEDULED, even when events that waited for the job
// took it further at once: those are events of their own); an applied crash by notify and
// cause; an automatic-reschedule decision by what it decided.
func (m *Jobs) Observe(ev jobs.Event) {
	r := ev.Result
	m.events.WithLabelValues(string(ev.Meta.Origin), string(ev.Kind), string(r.Verdict)).Inc()
	switch {
	case ev.Kind == statemachine.EventAutoReschedule && ev.Auto != nil:
		decision := "planned"
		if !ev.Auto.Planned {
			decision = string(ev.Auto.Reason)
		}
		m.decisions.WithLabelValues(decision).Inc()
	case r.Verdict != statemachine.Applied:
	case ev.Kind == statemachine.EventCreate:
		m.transitions.WithLabelValues(string(statemachine.Scheduled)).Inc()
	case ev.Kind == statemachine.EventStart || ev.Kind == statemachine.EventEnd:
		m.transitions.WithLabelValues(string(r.Job.State)).Inc()
		if r.Job.State == statemachine.Crashed && r.Job.Crash != nil {
			m.crashes.WithLabelValues(string(r.Job.Crash.Notify), string(r.Job.Crash.Cause)).Inc()
		}
	}
}
