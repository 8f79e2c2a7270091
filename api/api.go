// Package api is ExecDB's HTTP API (CONTRACT section 6): JSON under /api/v1, plus /healthz,
// /readyz and /metrics.
package api

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.uber.org/zap"
)

// MaxBodyBytes is the largest request body accepted (413 above it).
const MaxBodyBytes = 1 << 20

// Check reports whether one dependency (the database, a bus connection) is ready.
type Check func(ctx context.Context) error

// Config configures the API. The zero value serves with no tokens (writes from loopback only),
// a no-op logger and a private metrics registry.
type Config struct {
	// Tokens maps each accepted bearer token to its name, recorded with every write, and its
	// scopes. Empty means writes are accepted from loopback addresses only, and only directly.
	Tokens map[string]Token
	// Logger receives every internal error. (Writes are logged, and counted, by the job
	// service's commit hook: jobs.Config.OnCommit.)
	Logger *zap.Logger
	// Registry is where metrics are registered and what /metrics serves.
	Registry *prometheus.Registry
	// Checks are what /readyz asks besides the database, by name (e.g. "amqp").
	Checks map[string]Check
	// Version is what /healthz tells of the running build (version, commit).
	Version map[string]string
	// BaseURL is the public URL ExecDB is served under (EXECDB_BASE_URL), without a trailing
	// slash, e.g. https://taskotron.example.org/execdb behind a proxy that strips /execdb:
	// every link the API gives (next) is under it. Empty: links are on the host the client
	// asked.
	BaseURL string
	// Retention is what POST /api/v1/prune applies when its body names none.
	Retention jobs.Retention
	// OnPrune, when set, is told what every prune through the API did (for metrics and logs).
	OnPrune func(jobs.PruneResult)
}

// API serves the HTTP API over a store.
type API struct {
	baseURL   string
	version   map[string]string
	retention jobs.Retention
	onPrune   func(jobs.PruneResult)
	store     *jobs.Service
	auth      *authenticator
	log       *zap.Logger
	registry  *prometheus.Registry
	checks    map[string]Check
	requests  *prometheus.CounterVec
	latency   *prometheus.HistogramVec
}

// New returns the API over store.
func New(store *jobs.Service, cfg Config) *API {
	a := &API{store: store, auth: newAuthenticator(cfg.Tokens), log: cfg.Logger, registry: cfg.Registry, checks: cfg.Checks,
		version: cfg.Version, retention: cfg.Retention, onPrune: cfg.OnPrune, baseURL: strings.TrimRight(cfg.BaseURL, "/")}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if a.registry == nil {
		a.registry = prometheus.NewRegistry()
	}
	a.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "execdb_http_requests_total",
		Help: "HTTP requests, by route, method and status code.",
	}, []string{"route", "method", "code"})
	a.latency = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "execdb_http_request_duration_seconds",
		Help:    "HTTP request latency, by route and method.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2.5, 12),
	}, []string{"route", "method"})
	a.registry.MustRegister(a.requests, a.latency)
	return a
}

// Handler returns the HTTP handler with every route.
func (a *API) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /api/v1/jobs", a.write(ScopeTrigger, a.createJob))
	mux.HandleFunc("GET /api/v1/jobs/{uuid}", a.getJob)
	mux.HandleFunc("POST /api/v1/jobs/{uuid}/start", a.write(ScopeRunner, a.startJob))
	mux.HandleFunc("POST /api/v1/jobs/{uuid}/finish", a.write(ScopeRunner, a.finishJob))
	mux.HandleFunc("GET /api/v1/jobs/{uuid}/events", a.jobEvents)
	mux.HandleFunc("GET /api/v1/jobs", a.searchJobs)
	mux.HandleFunc("GET /api/v1/stats", a.stats)
	mux.HandleFunc("GET /api/v1/rejected", a.listRejected)
	mux.HandleFunc("POST /api/v1/jobs/{uuid}/reschedule", a.write(ScopeAdmin, a.rescheduleJob))
	mux.HandleFunc("POST /api/v1/reschedule", a.write(ScopeAdmin, a.rescheduleBulk))
	mux.HandleFunc("POST /api/v1/prune", a.write(ScopeAdmin, a.prune))
	mux.HandleFunc("POST /api/v1/rejected/{id}/replay", a.write(ScopeAdmin, a.replayRejected))
	mux.HandleFunc("GET /api/v1/stats/retries", a.retryStats)
	mux.HandleFunc("GET /healthz", a.healthz)
	mux.HandleFunc("GET /readyz", a.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{Registry: a.registry}))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &httpError{status: http.StatusNotFound, message: "no such endpoint: " + r.Method + " " + r.URL.Path})
	})
	return a.instrument(mux)
}

// instrument counts and times every request by its route pattern.
func (a *API) instrument(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		route := r.Pattern
		if route == "" || route == "/" {
			route = "other"
		}
		a.requests.WithLabelValues(route, r.Method, strconv.Itoa(rec.status)).Inc()
		a.latency.WithLabelValues(route, r.Method).Observe(time.Since(start).Seconds())
	})
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// healthz answers 200 while the process serves HTTP, with the build it runs.
func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	body := map[string]string{"status": "ok"}
	for k, v := range a.version {
		body[k] = v
	}
	writeJSON(w, http.StatusOK, body)
}

// readyz answers 200 when the database and every configured bus answer, 503 otherwise, with
// each check's result.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	results := map[string]string{}
	status := http.StatusOK
	check := func(name string, c Check) {
		if err := c(ctx); err != nil {
			results[name] = err.Error()
			status = http.StatusServiceUnavailable
			return
		}
		results[name] = "ok"
	}
	check("database", a.store.Ping)
	for name, c := range a.checks {
		check(name, c)
	}
	overall := "ok"
	if status != http.StatusOK {
		overall = "unavailable"
	}
	writeJSON(w, status, map[string]any{"status": overall, "checks": results})
}
