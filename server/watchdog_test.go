package server

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// sharedDatabases open a second backend on the database of the first, as a second serve
// process would.
var sharedDatabases = map[string]func(t *testing.T) (storage.Backend, storage.Backend){
	"sqlite": func(t *testing.T) (storage.Backend, storage.Backend) {
		path := filepath.Join(t.TempDir(), "execdb.db")
		return testenv.SQLite(t, path), testenv.SQLite(t, path)
	},
	"postgres": func(t *testing.T) (storage.Backend, storage.Backend) {
		url := testenv.PostgresSchema(t)
		return testenv.Postgres(t, url), testenv.Postgres(t, url)
	},
}

// TestWatchdogTwoProcesses runs the watchdog and the automatic rescheduler of two "processes"
// (each its own backend, connection pool, store and metrics) on one database, sweeping every
// 20ms with timeouts of 300ms: every verdict, decision and successor happens exactly once, and
// the two processes' metrics add up to exactly that.
func TestWatchdogTwoProcesses(t *testing.T) {
	for name, open := range sharedDatabases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b1, b2 := open(t)
			cfg := Config{RunTimeout: 300 * time.Millisecond, ScheduleTimeout: 300 * time.Millisecond,
				AutoReschedule: 2, RescheduleDelay: 100 * time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			var registries []*prometheus.Registry
			var waits []func()
			var stores []*jobs.Service
			for _, b := range []storage.Backend{b1, b2} {
				reg := prometheus.NewRegistry()
				auto := statemachine.AutoPolicy{Limit: cfg.AutoReschedule, FirstDelay: cfg.RescheduleDelay}
				store := jobs.New(b, jobs.Config{AutoReschedule: &auto, OnCommit: CommitHook(zap.NewNop(), metrics.NewJobs(reg))})
				stores = append(stores, store)
				registries = append(registries, reg)
				waits = append(waits, startWatchdog(ctx, watchdogDeps{cfg: cfg, store: store, log: zap.NewNop(),
					registry: reg, interval: 20 * time.Millisecond}))
			}
			stopped := false
			stop := func() {
				if !stopped {
					cancel()
					for _, w := range waits {
						w()
					}
					stopped = true
				}
			}
			t.Cleanup(stop)

			const n = 12
			for i := range n {
				res, err := stores[i%2].Create(ctx, statemachine.NewJob{TaskName: "rpmlint", Item: fmt.Sprint("pkg-", i), ItemType: "koji_build"},
					statemachine.Meta{Origin: statemachine.OriginHTTP})
				if err != nil {
					t.Fatal(err)
				}
				if i%2 == 0 {
					if _, err := stores[1].Apply(ctx, res.Job.UUID, statemachine.Event{Meta: statemachine.Meta{Origin: statemachine.OriginHTTP}, Start: &statemachine.Start{}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Each job: crashed by the watchdog, rescheduled after 100ms, its successor (attempt 2
			// of 2) never started, crashed too, and declined.
			deadline := time.Now().Add(20 * time.Second)
			var all []statemachine.Job
			for {
				var err error
				all, _, err = stores[0].Search(ctx, storage.Filter{}, storage.Page{Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				done := len(all) == 2*n
				for _, j := range all {
					done = done && j.State == statemachine.Crashed
				}
				if done && declinedAll(t, b1, all) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not settled after 20s: %d jobs", len(all))
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // a few more sweeps that must change nothing
			stop()

			ctx = context.Background()
			all, _, err := stores[0].Search(ctx, storage.Filter{}, storage.Page{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			attempts := map[int]int{}
			for _, j := range all {
				attempts[j.Attempt]++
				hist, err := b1.History(ctx, j.UUID)
				if err != nil {
					t.Fatal(err)
				}
				count := map[string]int{}
				for _, h := range hist {
					count[string(h.Kind)+":"+string(h.Verdict)+":"+string(h.Origin)]++
				}
				if count["end:applied:watchdog"] != 1 || count["auto_reschedule:applied:reschedule"]+count["auto_reschedule:declined:reschedule"] != 1 {
					t.Errorf("job %s (attempt %d): history %v, want one watchdog crash and one decision", j.UUID, j.Attempt, count)
				}
				if j.Attempt == 1 && (count["reschedule:applied:reschedule"] != 1 || j.RescheduledTo == nil) {
					t.Errorf("job %s: history %v, want one automatic reschedule", j.UUID, count)
				}
				if j.Attempt == 2 && j.RescheduledTo != nil {
					t.Errorf("job %s: attempt 2 of 2 was rescheduled", j.UUID)
				}
			}
			if attempts[1] != n || attempts[2] != n || len(attempts) != 2 {
				t.Errorf("got jobs by attempt %v, want %d of attempts 1 and 2", attempts, n)
			}
			sum := func(name string, labels ...string) float64 {
				total := 0.0
				for _, reg := range registries {
					families, _ := reg.Gather()
					for _, f := range families {
						if f.GetName() != name {
							continue
						}
						for _, m := range f.GetMetric() {
							match := true
							for i := 0; i+1 < len(labels); i += 2 {
								found := false
								for _, l := range m.GetLabel() {
									found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
								}
								match = match && found
							}
							if match {
								total += m.GetCounter().GetValue()
							}
						}
					}
				}
				return total
			}
			if got := sum("execdb_events_total", "source", "watchdog", "kind", "end", "verdict", "applied"); got != 2*n {
				t.Errorf("metrics: %v watchdog crashes counted, want %d", got, 2*n)
			}
			if got := sum("execdb_events_total", "source", "reschedule", "kind", "create"); got != n {
				t.Errorf("metrics: %v automatic successors counted, want %d", got, n)
			}
			if got := sum("execdb_auto_reschedule_decisions_total", "decision", "planned"); got != n {
				t.Errorf("metrics: %v planned decisions, want %d", got, n)
			}
			if got := sum("execdb_auto_reschedule_decisions_total", "decision", "attempt_limit"); got != n {
				t.Errorf("metrics: %v attempt-limit decisions, want %d", got, n)
			}
			if got := sum("execdb_sweep_errors_total"); got != 0 {
				t.Errorf("metrics: %v failed sweeps", got)
			}
		})
	}
}

// declinedAll reports whether every attempt-2 job has its (declined) decision.
func declinedAll(t *testing.T, b storage.Backend, jobs []statemachine.Job) bool {
	t.Helper()
	for _, j := range jobs {
		if j.Attempt != 2 {
			continue
		}
		hist, err := b.History(context.Background(), j.UUID)
		if err != nil {
			t.Fatal(err)
		}
		decided := false
		for _, h := range hist {
			decided = decided || h.Kind == statemachine.EventAutoReschedule
		}
		if !decided {
			return false
		}
	}
	return true
}
