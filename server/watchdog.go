package server

import (
	"context"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// watchdogDeps is what the watchdog and the automatic rescheduler are built from.
type watchdogDeps struct {
	cfg      Config
	store    *jobs.Service
	log      *zap.Logger
	registry *prometheus.Registry
	// interval overrides the sweep interval jobs.SweepInterval derives from cfg; tests sweep
	// faster.
	interval time.Duration
}

// startWatchdog starts the watchdog and the automatic rescheduler (jobs.Service.RunSweeper).
// They stop when ctx is done; the returned func waits for that.
func startWatchdog(ctx context.Context, d watchdogDeps) (wait func()) {
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "execdb_sweep_errors_total",
		Help: "Failures of the watchdog and the automatic rescheduler, by sweep: each job a sweep failed on (and left for the next sweep), and each sweep that ended early.",
	}, []string{"sweep"})
	if d.registry != nil {
		d.registry.MustRegister(errs)
	}
	cfg := jobs.SweeperConfig{
		Timeouts: statemachine.Timeouts{Run: d.cfg.RunTimeout, Schedule: d.cfg.ScheduleTimeout},
		Auto:     statemachine.AutoPolicy{Limit: d.cfg.AutoReschedule, FirstDelay: d.cfg.RescheduleDelay},
		Interval: d.interval, Log: d.log,
		OnError: func(sweep string) { errs.WithLabelValues(sweep).Inc() },
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		d.store.RunSweeper(ctx, cfg)
	}()
	return wg.Wait
}
