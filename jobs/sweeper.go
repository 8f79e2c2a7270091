package jobs

import (
	"context"
	"errors"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"go.uber.org/zap"
)

// Bounds of the sweep interval (SweepInterval).
const (
	MinSweepInterval = time.Second
	MaxSweepInterval = 30 * time.Second
)

// SweeperConfig configures the loop that runs the watchdog and the automatic rescheduler.
type SweeperConfig struct {
	// Timeouts are the watchdog's (EXECDB_RUN_TIMEOUT, EXECDB_SCHEDULE_TIMEOUT).
	Timeouts statemachine.Timeouts
	// Auto is the automatic rescheduler's policy (EXECDB_AUTO_RESCHEDULE,
	// EXECDB_RESCHEDULE_DELAY); a zero Limit is off. The service decides about a crash in
	// the unit of work that crashes the job when its Config.AutoReschedule is set; this
	// loop decides about the crashes left undecided and makes the successors when due.
	Auto statemachine.AutoPolicy
	// Interval is the time between sweeps; 0 means SweepInterval(Timeouts, Auto).
	Interval time.Duration
	// Log receives the sweeps' failures; nil means none. (What a sweep did to jobs, the
	// service's commit hook is told.)
	Log *zap.Logger
	// OnError, when set, is told of each failure by sweep ("watchdog",
	// "auto_reschedule_decide", "auto_reschedule"): each job a sweep failed on, and each
	// sweep that ended early. For a metric.
	OnError func(sweep string)
}

// SweepInterval is how often to sweep: a tenth of the shortest of the run timeout, the
// schedule timeout and (with automatic rescheduling on) the first reschedule delay, within
// MinSweepInterval…MaxSweepInterval. A job is thus crashed at most one interval after its
// timeout, and a successor made at most one interval after it is due.
func SweepInterval(t statemachine.Timeouts, p statemachine.AutoPolicy) time.Duration {
	shortest := time.Duration(0)
	consider := func(d time.Duration) {
		if d > 0 && (shortest == 0 || d < shortest) {
			shortest = d
		}
	}
	consider(t.Run)
	consider(t.Schedule)
	if p.Limit > 0 {
		consider(p.FirstDelay)
	}
	if shortest == 0 {
		return MaxSweepInterval
	}
	return min(max(shortest/10, MinSweepInterval), MaxSweepInterval)
}

// RunSweeper runs the watchdog and the automatic rescheduler every interval until ctx ends.
// Every serve process runs it; the service makes each watchdog verdict, decision and successor
// happen exactly once however many processes sweep one database.
func (s *Service) RunSweeper(ctx context.Context, cfg SweeperConfig) {
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	interval := cfg.Interval
	if interval <= 0 {
		interval = SweepInterval(cfg.Timeouts, cfg.Auto)
	}
	cfg.Log.Info("watchdog started",
		zap.Duration("interval", interval),
		zap.Duration("run_timeout", cfg.Timeouts.Run),
		zap.Duration("schedule_timeout", cfg.Timeouts.Schedule),
		zap.Int("auto_reschedule", cfg.Auto.Limit),
		zap.Duration("reschedule_delay", cfg.Auto.FirstDelay))
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		s.sweepOnce(ctx, cfg)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sweepOnce runs one round: crash overdue jobs, decide about crashes nobody decided about,
// make the successors that are due. Each job is handled in a unit of work of its own: a job
// that fails is logged, counted and tried again next round, and the step goes on with the other
// jobs; a step that fails as a whole is logged and retried next round, and the other steps go
// on.
func (s *Service) sweepOnce(ctx context.Context, cfg SweeperConfig) {
	_, err := s.Watchdog(ctx, cfg.Timeouts)
	if sweepStopped(ctx, cfg, "watchdog", err) {
		return
	}
	_, err = s.DecideAutoReschedules(ctx, cfg.Auto)
	if sweepStopped(ctx, cfg, "auto_reschedule_decide", err) {
		return
	}
	_, err = s.RescheduleDue(ctx)
	sweepStopped(ctx, cfg, "auto_reschedule", err)
}

// sweepStopped logs and counts what failed in a step: each job it failed on (the step handled
// the others) and what ended it early. It reports whether the round must stop because the
// context ended.
func sweepStopped(ctx context.Context, cfg SweeperConfig, sweep string, err error) bool {
	if ctx.Err() != nil {
		return true
	}
	if err == nil {
		return false
	}
	count := func() {
		if cfg.OnError != nil {
			cfg.OnError(sweep)
		}
	}
	var se *SweepError
	if !errors.As(err, &se) {
		count()
		cfg.Log.Error("sweep failed", zap.String("sweep", sweep), zap.Error(err))
		return false
	}
	for _, je := range se.Jobs {
		count()
		cfg.Log.Error("sweep failed on a job",
			zap.String("sweep", sweep), zap.String("job_uuid", je.JobUUID.String()), zap.Error(je.Err))
	}
	if se.Err != nil {
		count()
		cfg.Log.Error("sweep failed", zap.String("sweep", sweep), zap.Error(se.Err))
	}
	return false
}
