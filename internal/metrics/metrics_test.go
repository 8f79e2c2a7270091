package metrics_test

import (
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
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
	m.Observe(statemachine.OriginHTTP, statemachine.EventCreate, storage.Result{Job: crashed, Verdict: statemachine.Applied, Created: true})
	m.Observe(statemachine.OriginAMQP, statemachine.EventStart, storage.Result{Job: running, Verdict: statemachine.Applied})
	m.Observe(statemachine.OriginAMQP, statemachine.EventEnd, storage.Result{Job: crashed, Verdict: statemachine.Applied})
	m.Observe(statemachine.OriginAMQP, statemachine.EventEnd, storage.Result{Job: crashed, Verdict: statemachine.Duplicate})
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
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "execdb_crashes_total", "execdb_transitions_total"); err != nil {
		t.Error(err)
	}
}
