package server

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// Pruning's pace: a round every pruneInterval, batches of jobs.PruneBatch with prunePause
// between them, so that a backlog of a million jobs is worked off in minutes while writers
// keep their turn.
const (
	pruneInterval = 10 * time.Minute
	prunePause    = 20 * time.Millisecond
)

// pruneMetrics counts what retention removed, by kind: FINISHED, CRASHED (jobs), rejected.
type pruneMetrics struct {
	pruned *prometheus.CounterVec
}

func newPruneMetrics(reg prometheus.Registerer) *pruneMetrics {
	m := &pruneMetrics{pruned: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "execdb_pruned_total",
		Help: "What retention (EXECDB_RETENTION, execdb prune) removed, by kind: FINISHED and CRASHED jobs, rejected messages.",
	}, []string{"kind"})}
	reg.MustRegister(m.pruned)
	return m
}

func (m *pruneMetrics) count(res jobs.PruneResult) {
	if res.DryRun {
		return
	}
	for state, c := range res.Jobs {
		m.pruned.WithLabelValues(string(state)).Add(float64(c.Prunable))
	}
	m.pruned.WithLabelValues("rejected").Add(float64(res.Rejected))
}

// logPrune logs what a prune removed (or would).
func logPrune(log *zap.Logger, res jobs.PruneResult) {
	fields := []zap.Field{zap.Bool("dry_run", res.DryRun), zap.String("retention", res.Retention), zap.Int64("rejected", res.Rejected)}
	for _, state := range []statemachine.State{statemachine.Finished, statemachine.Crashed} {
		if c, ok := res.Jobs[state]; ok {
			fields = append(fields, zap.Any(string(state), c))
		}
	}
	log.Info("pruned", fields...)
}

// startPruner prunes what r says every pruneInterval until ctx ends, when r prunes anything;
// the returned func waits for it to stop. Several processes on one database take turns (a
// process that finds another pruning leaves it the work).
func startPruner(ctx context.Context, store *jobs.Service, r jobs.Retention, m *pruneMetrics, log *zap.Logger) (wait func()) {
	if r.IsZero() {
		return func() {}
	}
	log.Info("retention on", zap.String("retention", r.String()), zap.Duration("interval", pruneInterval))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(pruneInterval)
		defer t.Stop()
		for {
			res, err := store.Prune(ctx, r, false, prunePause)
			m.count(res)
			switch {
			case errors.Is(err, storage.ErrPruneBusy):
				log.Debug("another process is pruning")
			case err != nil && ctx.Err() == nil:
				log.Error("prune failed", zap.Error(err))
			case err == nil:
				logPrune(log, res)
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return wg.Wait
}
