package main

import (
	"context"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/storage"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// busDeps is what the bus side of serve is built from.
type busDeps struct {
	cfg      serveConfig
	store    *storage.Store
	log      *zap.Logger
	registry *prometheus.Registry
	jobs     *metrics.Jobs
}

// busRuntime is the running bus side: consumers and the publisher relay.
type busRuntime struct {
	// checks are added to /readyz, by name.
	checks map[string]api.Check
	// wait blocks until every bus goroutine stopped; they stop when the serve context is done.
	wait func()
}

// startBus starts the consumers and the publisher relay that cfg asks for.
func startBus(ctx context.Context, d busDeps) (*busRuntime, error) {
	for _, unsupported := range []struct{ name, value string }{
		{"EXECDB_AMQP_URL", d.cfg.AMQPURL}, {"EXECDB_FEDMSG_CONNECT", d.cfg.FedmsgConnect}, {"EXECDB_FEDMSG_BIND", d.cfg.FedmsgBind},
	} {
		if unsupported.value != "" {
			d.log.Warn("bus transports are not part of this version yet; the setting is ignored", zap.String("setting", unsupported.name))
		}
	}
	return &busRuntime{checks: map[string]api.Check{}, wait: func() {}}, nil
}
