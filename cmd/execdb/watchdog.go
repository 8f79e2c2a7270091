package main

import (
	"context"

	"github.com/fedora-qa/execdb/internal/metrics"
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
}

// startWatchdog starts the watchdog and, when EXECDB_AUTO_RESCHEDULE > 0, the automatic
// rescheduler. They stop when ctx is done; the returned func waits for that.
func startWatchdog(ctx context.Context, d watchdogDeps) (wait func()) {
	return func() {}
}
