// Package server is `execdb serve`: Run wires the job service (jobs) over the database backend
// to the HTTP API, the bus consumers, the outbox relay, the watchdog and the pruner, and runs
// them until its context ends. It also holds the commands that run it or work on its database
// directly (Serve, Migrate, Copy), the settings they read from flags and EXECDB_* variables
// (Config), and the job service's after-commit hook (CommitHook).
package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/internal/version"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/postgres"
	"github.com/fedora-qa/execdb/storage/sqlite"
	"github.com/fedora-qa/execdb/web"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

const serveSynopsis = `Run ExecDB: the HTTP API, the bus consumers, the publisher and the watchdog in one
process. The database is migrated at start. SIGINT or SIGTERM shut it down gracefully.`

// Serve is `execdb serve`: it reads every setting from args and the environment, checks them
// (a bad one exits 2 naming its variable and flag), builds the log and runs the service (Run)
// until ctx ends. Exit status 1 when the service fails.
func Serve(ctx context.Context, args []string, e command.Env) int {
	cfg, err := parseConfig("serve", serveSynopsis, args, e)
	if err != nil {
		return exitCodeFor(err)
	}
	log, err := newLogger(cfg.LogFormat, cfg.LogLevel)
	if err != nil {
		fmt.Fprintf(e.Stderr, "execdb serve: %v\n", err)
		return command.ExitRefused
	}
	defer log.Sync() //nolint:errcheck
	cfg.Log = log
	if err := Run(ctx, cfg); err != nil {
		log.Error("execdb stopped", zap.Error(err))
		return command.ExitRefused
	}
	return command.ExitOK
}

const migrateSynopsis = `Apply the database schema migrations and exit. serve also applies them at start; run this
to migrate ahead of a rollout. Several processes may migrate at once.`

// Migrate is `execdb migrate`: it migrates the database EXECDB_DB (--db) names and exits.
func Migrate(ctx context.Context, args []string, e command.Env) int {
	cfg, err := parseConfig("migrate", migrateSynopsis, args, e, "db")
	if err != nil {
		return exitCodeFor(err)
	}
	backend, err := openBackend(ctx, cfg.DB)
	if err != nil {
		fmt.Fprintf(e.Stderr, "execdb migrate: %v\n", err)
		return command.ExitRefused
	}
	defer backend.Close()
	fmt.Fprintf(e.Stdout, "database %s is migrated\n", redactURL(cfg.DB))
	return command.ExitOK
}

func exitCodeFor(err error) int {
	if errors.Is(err, errHelp) {
		return command.ExitOK
	}
	return command.ExitUsage
}

// migratingBackend is a backend that can apply its migrations.
type migratingBackend interface {
	storage.Backend
	Migrate(ctx context.Context) error
}

// openBackend opens and migrates the database a EXECDB_DB value names.
func openBackend(ctx context.Context, dsn string) (storage.Backend, error) {
	var b migratingBackend
	var err error
	switch {
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		b, err = postgres.Open(ctx, dsn)
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, errors.New("EXECDB_DB: sqlite: needs a path, e.g. sqlite:execdb.db")
		}
		b, err = sqlite.Open(ctx, path)
	default:
		return nil, fmt.Errorf("EXECDB_DB: want postgres://… or sqlite:PATH, got %q", redactURL(dsn))
	}
	if err != nil {
		return nil, err
	}
	if err := b.Migrate(ctx); err != nil {
		b.Close()
		return nil, fmt.Errorf("migrate %s: %w", redactURL(dsn), err)
	}
	return b, nil
}

// newLogger builds the log: JSON lines (or console lines) on stderr from level up, every
// line kept, times in ISO 8601 and durations with their unit ("1.5s").
func newLogger(format string, level zapcore.Level) (*zap.Logger, error) {
	cfg := zap.NewProductionConfig()
	if format == "console" {
		cfg = zap.NewDevelopmentConfig()
		cfg.EncoderConfig.EncodeLevel = zapcore.CapitalColorLevelEncoder
	}
	cfg.Level = zap.NewAtomicLevelAt(level)
	cfg.EncoderConfig.EncodeDuration = zapcore.StringDurationEncoder
	// Every write and every rejection is logged, one line each: no sampling drops lines under
	// load (zap's production default keeps 100 a second of each message, then 1 in 100).
	cfg.Sampling = nil
	cfg.EncoderConfig.TimeKey = "ts"
	cfg.EncoderConfig.EncodeTime = zapcore.ISO8601TimeEncoder
	cfg.DisableStacktrace = true
	return cfg.Build()
}

// Run runs the service until ctx is done: it listens on cfg.Listen, opens and migrates the
// database, starts the bus side, the watchdog and the pruner, and serves the HTTP API. Then it
// stops them in order (the bus side and the sweeps, then HTTP after its requests in flight, the
// database last) and returns nil; an error means the service could not start or HTTP failed.
// A zero setting of cfg is its default; Run does not check the others again (Serve did).
func Run(ctx context.Context, cfg Config) error {
	cfg = cfg.withDefaults()
	log := cfg.Log
	// Every setting was checked when it was read (parseConfig): now the port, then the
	// database.
	build := version.Read()
	log.Info("execdb starting", zap.String("version", build.Version), zap.String("commit", build.Commit),
		zap.String("go", build.GoVersion), zap.String("db", redactURL(cfg.DB)), zap.String("listen", cfg.Listen),
		zap.Stringer("retention", cfg.Retention))
	if len(cfg.Tokens) > 0 {
		log.Info("write tokens loaded", zap.Int("tokens", len(cfg.Tokens)))
	} else {
		log.Warn("no tokens configured (EXECDB_TOKENS_FILE): writes are accepted from loopback clients only, without authentication; "+
			"a write through a reverse proxy (Forwarded, X-Forwarded-For or X-Real-IP) is refused: configure tokens to put ExecDB behind one",
			zap.String("listen", cfg.Listen), zap.Bool("listen_beyond_loopback", !loopbackAddress(cfg.Listen)))
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("EXECDB_LISTEN: %w", err)
	}
	defer ln.Close() // a no-op once the server closed it

	backend, err := openBackend(ctx, cfg.DB)
	if err != nil {
		return err
	}
	defer backend.Close() // closed last, after everything that uses it stopped
	log.Info("database ready", zap.String("db", redactURL(cfg.DB)))

	registry := prometheus.NewRegistry()
	registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	auto := statemachine.AutoPolicy{Limit: cfg.AutoReschedule, FirstDelay: cfg.RescheduleDelay}
	store := jobs.New(backend, jobs.Config{TopicPrefix: cfg.TopicPrefix, BaseURL: cfg.BaseURL, AutoReschedule: &auto,
		GroupCommit: groupCommit(cfg.DB), OnCommit: CommitHook(log, metrics.NewJobs(registry))})
	defer store.Close() // after the HTTP server: it answers the writes it took

	// The consumers, the relay and the sweeps run until stopBackground: on shutdown, before the
	// HTTP server, so that no message is taken that could not be finished.
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	defer stopWork()
	bus, err := startBus(workCtx, busDeps{cfg: cfg, store: store, backend: backend, log: log, registry: registry})
	if err != nil {
		return err
	}
	waitWatchdog := startWatchdog(workCtx, watchdogDeps{cfg: cfg, store: store, log: log, registry: registry})
	pruned := newPruneMetrics(registry)
	waitPruner := startPruner(workCtx, store, cfg.Retention, pruned, log.With(zap.String("component", "retention")))
	stopBackground := sync.OnceFunc(func() {
		stopWork()
		waitWatchdog()
		waitPruner()
		bus.wait()
	})
	defer stopBackground()

	registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name:        "execdb_build_info",
		Help:        "Always 1; the labels say which execdb runs.",
		ConstLabels: prometheus.Labels{"version": build.Version, "commit": build.Commit, "goversion": build.GoVersion},
	}, func() float64 { return 1 }))
	apiHandler := api.New(store, api.Config{Tokens: cfg.Tokens, Logger: log, Registry: registry, Checks: bus.checks,
		Version: map[string]string{"version": build.Version, "commit": build.Commit}, BaseURL: cfg.BaseURL,
		Retention: cfg.Retention, OnPrune: func(res jobs.PruneResult) { pruned.count(res); logPrune(log, res) }}).Handler()
	pages := web.New(web.Config{Reader: store, BaseURL: cfg.BaseURL, ResultsDBURL: cfg.ResultsDBURL,
		RunTimeout: cfg.RunTimeout, ScheduleTimeout: cfg.ScheduleTimeout, Logger: log.With(zap.String("component", "pages"))})
	defer pages.Close() // after the HTTP server, before the database
	handler := http.NewServeMux()
	for _, p := range web.Patterns {
		handler.Handle(p, pages)
	}
	handler.Handle("/", apiHandler) // the API, and its JSON 404 for everything else
	_, stopPprof, err := startPprof(cfg.Pprof, log)
	if err != nil {
		return err
	}
	defer stopPprof()
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute,
		WriteTimeout: 2 * time.Minute, IdleTimeout: 2 * time.Minute}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", zap.String("addr", ln.Addr().String()))
	if cfg.Listening != nil {
		cfg.Listening(ln.Addr().String())
	}

	select {
	case err := <-served:
		return fmt.Errorf("http server: %w", err)
	case <-ctx.Done():
	}
	log.Info("shutting down")
	stopBackground()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 15*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("http shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http server: %w", err)
	}
	log.Info("stopped")
	return nil
}

// loopbackAddress reports whether a listen address is on loopback only.
func loopbackAddress(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// groupCommit is how HTTP writes are grouped on the database db names (jobs.GroupCommit): one
// lane on SQLite, whose one writer commits one unit at a time; two on PostgreSQL, within its
// pool of connections (postgres.DefaultMaxConns) beside the bus workers and the readers. Two
// lanes gave more writes a second than four or one at 8 and 32 connections on a 2-CPU machine
// (docs/performance.md): fewer lanes make bigger units, and a unit's cost is mostly per
// statement, not per row.
func groupCommit(db string) jobs.GroupCommit {
	if strings.HasPrefix(db, "sqlite:") {
		return jobs.GroupCommit{Lanes: 1}
	}
	return jobs.GroupCommit{Lanes: 2}
}
