package metrics_test

import (
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// A create whose parked start and end applied at once counts one SCHEDULED transition; the
// parked events count their own, so the crash is counted once.
func TestCreateWithParkedEventsCountsEachTransitionOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.NewJobs(reg)
	crashed := statemachine.Job{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: statemachine.NotifyTask, Cause: statemachine.CauseTask}}
	running := statemachine.Job{State: statemachine.Running}
	http, amqp := statemachine.Meta{Origin: statemachine.OriginHTTP}, statemachine.Meta{Origin: statemachine.OriginAMQP}
	m.Commit(jobs.Commit{Events: []jobs.Event{
		{Meta: http, Kind: statemachine.EventCreate, Result: jobs.Result{Job: crashed, Verdict: statemachine.Applied, Created: true}},
		{Meta: amqp, Kind: statemachine.EventStart, Result: jobs.Result{Job: running, Verdict: statemachine.Applied}},
		{Meta: amqp, Kind: statemachine.EventEnd, Result: jobs.Result{Job: crashed, Verdict: statemachine.Applied}},
		// The decision that came with the crash is no transition.
		{Meta: statemachine.Meta{Origin: statemachine.OriginReschedule}, Kind: statemachine.EventAutoReschedule,
			Result: jobs.Result{Job: crashed, Verdict: statemachine.Applied}, Auto: &statemachine.AutoDecision{Planned: true}},
	}})
	m.Observe(jobs.Event{Meta: amqp, Kind: statemachine.EventEnd, Result: jobs.Result{Job: crashed, Verdict: statemachine.Duplicate}})
	want := `
# HELP execdb_crashes_total Jobs that crashed, by notify and cause.
# TYPE execdb_crashes_total counter
execdb_crashes_total{cause="task",notify="task"} 1
# HELP execdb_transitions_total Applied job transitions, by the state entered.
# TYPE execdb_transitions_total counter
execdb_transitions_total{state="CRASHED"} 1
execdb_transitions_total{state="RUNNING"} 1
execdb_transitions_total{state="SCHEDULED"} 1
`
	want += `# HELP execdb_auto_reschedule_decisions_total Decisions of the automatic rescheduler about crashed jobs, by decision: planned, or why not (a decline because automatic rescheduling is off is not counted).
# TYPE execdb_auto_reschedule_decisions_total counter
execdb_auto_reschedule_decisions_total{decision="planned"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "execdb_crashes_total", "execdb_transitions_total", "execdb_auto_reschedule_decisions_total"); err != nil {
		t.Error(err)
	}
}
