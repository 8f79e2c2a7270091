package main

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// watchdogDeps is what the watchdog and the automatic rescheduler are built from.
type watchdogDeps struct {
	cfg      serveConfig
	store    *storage.Store
	log      *zap.Logger
	registry *prometheus.Registry
	jobs     *metrics.Jobs
	// interval overrides the sweep interval sweepInterval derives from cfg; tests sweep faster.
	interval time.Duration
}

// Bounds of the sweep interval.
const (
	minSweepInterval = time.Second
	maxSweepInterval = 30 * time.Second
)

// sweepInterval is how often the watchdog and the automatic rescheduler sweep: a tenth of the
// shortest of the run timeout, the schedule timeout and (with automatic rescheduling on) the
// first reschedule delay, within 1s…30s. A job is thus crashed at most one interval after its
// timeout, and a successor made at most one interval after it is due.
func sweepInterval(cfg serveConfig) time.Duration {
	shortest := time.Duration(0)
	consider := func(d time.Duration) {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	consider(cfg.RunTimeout)
	consider(cfg.ScheduleTimeout)
	if cfg.AutoReschedule > 0 {
		consider(cfg.RescheduleDelay)
	}
	if shortest == 0 {
		return maxSweepInterval
	}
	return min(max(shortest/10, minSweepInterval), maxSweepInterval)
}

// sweeper runs the watchdog and automatic rescheduling sweeps.
type sweeper struct {
	store    *storage.Store
	log      *zap.Logger
	jobs     *metrics.Jobs
	timeouts statemachine.Timeouts
	policy   statemachine.AutoPolicy

	decisions *prometheus.CounterVec
	errors    *prometheus.CounterVec
}

// startWatchdog starts the watchdog and the automatic rescheduler. Every serve process runs
// them; the store makes each watchdog verdict, decision and successor happen exactly once
// however many processes sweep one database. With EXECDB_AUTO_RESCHEDULE = 0 the rescheduler
// still records for each crash that it was not rescheduled because automatic rescheduling is
// off. They stop when ctx is done; the returned func waits for that.
func startWatchdog(ctx context.Context, d watchdogDeps) (wait func()) {
	s := &sweeper{
		store: d.store, log: d.log, jobs: d.jobs,
		timeouts: statemachine.Timeouts{Run: d.cfg.RunTimeout, Schedule: d.cfg.ScheduleTimeout},
		policy:   statemachine.AutoPolicy{Limit: d.cfg.AutoReschedule, FirstDelay: d.cfg.RescheduleDelay},
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_auto_reschedule_decisions_total",
			Help: "Decisions of the automatic rescheduler about crashed jobs, by decision: planned, or why not.",
		}, []string{"decision"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "execdb_sweep_errors_total",
			Help: "Failures of the watchdog and the automatic rescheduler, by sweep: each job a sweep failed on (and left for the next sweep), and each sweep that ended early.",
		}, []string{"sweep"}),
	}
	if d.registry != nil {
		d.registry.MustRegister(s.decisions, s.errors)
	}
	interval := d.interval
	if interval <= 0 {
		interval = sweepInterval(d.cfg)
	}
	d.log.Info("watchdog started",
		zap.Duration("interval", interval),
		zap.Duration("run_timeout", d.cfg.RunTimeout),
		zap.Duration("schedule_timeout", d.cfg.ScheduleTimeout),
		zap.Int("auto_reschedule", d.cfg.AutoReschedule),
		zap.Duration("reschedule_delay", d.cfg.RescheduleDelay))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			s.sweep(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return wg.Wait
}

// sweep runs one round: crash overdue jobs, decide about new crashes (the watchdog's among
// them), make the successors that are due. Each job is handled in a transaction of its own: a
// job that fails is logged, counted and tried again next round, and the step goes on with the
// other jobs; a step that fails as a whole is logged and retried next round, and the other
// steps go on.
func (s *sweeper) sweep(ctx context.Context) {
	crashed, err := s.store.Watchdog(ctx, s.timeouts)
	for _, r := range crashed {
		s.jobs.Observe(statemachine.OriginWatchdog, statemachine.EventEnd, r)
		s.log.Warn("watchdog crashed job",
			zap.String("job_uuid", r.Job.UUID.String()),
			zap.String("state_from", string(r.StateFrom)),
			zap.String("state_to", string(r.Job.State)),
			zap.Strings("reason", r.Job.Crash.KeyVals["reason"]),
			zap.String("taskname", r.Job.TaskName),
			zap.String("item", r.Job.Item))
	}
	if s.stopped(ctx, "watchdog", err) {
		return
	}
	decisions, err := s.store.DecideAutoReschedules(ctx, s.policy)
	for _, d := range decisions {
		fields := []zap.Field{zap.String("job_uuid", d.Job.UUID.String()), zap.Int("attempt", d.Job.Attempt)}
		if d.Decision.Planned {
			s.decisions.WithLabelValues("planned").Inc()
			s.log.Info("automatic reschedule planned", append(fields,
				zap.Time("due_at", d.Decision.DueAt), zap.Duration("delay", d.Decision.Delay))...)
		} else {
			s.decisions.WithLabelValues(string(d.Decision.Reason)).Inc()
			s.log.Debug("no automatic reschedule", append(fields, zap.String("reason", string(d.Decision.Reason)))...)
		}
	}
	if s.stopped(ctx, "auto_reschedule_decide", err) {
		return
	}
	made, err := s.store.RescheduleDue(ctx)
	for _, r := range made {
		if r.Declined != "" {
			s.decisions.WithLabelValues(string(r.Declined)).Inc()
			s.log.Warn("automatic reschedule declined",
				zap.String("job_uuid", r.Parent.UUID.String()),
				zap.Int("attempt", r.Parent.Attempt),
				zap.String("reason", string(r.Declined)))
			continue
		}
		if r.Created {
			s.jobs.Observe(statemachine.OriginReschedule, statemachine.EventCreate,
				storage.Result{Job: r.Successor, Verdict: statemachine.Applied, Created: true})
		}
		s.log.Info("job rescheduled automatically",
			zap.String("job_uuid", r.Parent.UUID.String()),
			zap.String("successor_uuid", r.Successor.UUID.String()),
			zap.Int("attempt", r.Successor.Attempt),
			zap.Bool("created", r.Created))
	}
	s.stopped(ctx, "auto_reschedule", err)
}

// stopped logs and counts what failed in a step: each job it failed on (the step handled the
// others) and what ended it early. It reports whether the round must stop because the context
// ended.
func (s *sweeper) stopped(ctx context.Context, sweep string, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	if err == nil {
		return false
	}
	var se *storage.SweepError
	if !errors.As(err, &se) {
		s.errors.WithLabelValues(sweep).Inc()
		s.log.Error("sweep failed", zap.String("sweep", sweep), zap.Error(err))
		return false
	}
	for _, je := range se.Jobs {
		s.errors.WithLabelValues(sweep).Inc()
		s.log.Error("sweep failed on a job",
			zap.String("sweep", sweep), zap.String("job_uuid", je.JobUUID.String()), zap.Error(je.Err))
	}
	if se.Err != nil {
		s.errors.WithLabelValues(sweep).Inc()
		s.log.Error("sweep failed", zap.String("sweep", sweep), zap.Error(se.Err))
	}
	return false
}
