// Package web serves ExecDB's pages for people (CONTRACT section 6, "Pages for people"): the
// dashboard at /, the job search at /jobs, a job at /jobs/{uuid} (the URL ResultsDB groups and
// older Taskotron messages point to), statistics at /stats and /stats/retries, and the
// rejected bus messages at /rejected. The pages are server-rendered html/template views of the
// same service calls the JSON API makes, with their CSS and icon embedded and served under
// /static/; they load nothing from another host and need no JavaScript (charts are SVG drawn
// on the server).
package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"go.uber.org/zap"
)

// Reader is what the pages read; the job service implements it.
type Reader interface {
	Job(ctx context.Context, id uuid.UUID) (statemachine.Job, error)
	History(ctx context.Context, id uuid.UUID) ([]storage.HistoryEntry, error)
	Search(ctx context.Context, f storage.Filter, page storage.Page) ([]statemachine.Job, *storage.Cursor, error)
	Stats(ctx context.Context, q storage.StatsQuery) (storage.StatsResult, error)
	RetryStats(ctx context.Context, q storage.StatsQuery) (storage.RetryStatsResult, error)
	Rejected(ctx context.Context, q storage.RejectedQuery) ([]storage.RejectedMessage, error)
	OutboxStats(ctx context.Context) (storage.OutboxStats, error)
	Now() time.Time
}

// Defaults of Config.
const (
	DefaultRunTimeout      = 3 * time.Hour
	DefaultScheduleTimeout = 24 * time.Hour
)

// Config configures the pages. Only Reader is required.
type Config struct {
	// Reader is where the pages read jobs, statistics and rejected messages.
	Reader Reader
	// BaseURL is the public URL ExecDB is served under (EXECDB_BASE_URL), e.g.
	// https://taskotron.example.org/execdb behind a proxy that strips /execdb: every link,
	// form action and asset URL of the pages starts with its path (/execdb/…), and the
	// commands the pages show use it as the server. Empty: links start at /.
	BaseURL string
	// ResultsDBURL is the base of ResultsDB's API (EXECDB_RESULTSDB_URL), e.g.
	// https://taskotron.example.org/resultsdb_api/api/v2.0; the job page links to the results
	// of the ResultsDB group with the job's uuid (<ResultsDBURL>/results?groups=<uuid>).
	// Empty: no such link.
	ResultsDBURL string
	// RunTimeout and ScheduleTimeout are the watchdog's (EXECDB_RUN_TIMEOUT,
	// EXECDB_SCHEDULE_TIMEOUT), for the dashboard's jobs close to them; zero means the
	// defaults, 3h and 24h.
	RunTimeout      time.Duration
	ScheduleTimeout time.Duration
	// Logger receives internal errors; nil logs nothing.
	Logger *zap.Logger
}

// Validate reports the first setting New cannot use, naming it.
func (c Config) Validate() error {
	if c.Reader == nil {
		return errors.New("web: Reader: required")
	}
	for name, raw := range map[string]string{"BaseURL": c.BaseURL, "ResultsDBURL": c.ResultsDBURL} {
		if raw == "" {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
			return fmt.Errorf("web: %s: want an http or https URL without query, got %q", name, raw)
		}
	}
	if c.RunTimeout < 0 || c.ScheduleTimeout < 0 {
		return errors.New("web: RunTimeout, ScheduleTimeout: must not be negative")
	}
	return nil
}

// Patterns are the http.ServeMux patterns the pages answer, for mounting them next to the
// API: register the handler New returns under each of them. Everything under /jobs/ and
// /static/ is the pages' (an unknown path there is their 404 page).
var Patterns = []string{"GET /{$}", "GET /jobs", "GET /jobs/", "GET /stats", "GET /stats/", "GET /rejected", "GET /static/"}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// site holds what every request of the pages shares.
type site struct {
	read            Reader
	basePath        string // the path of BaseURL without its trailing slash: "/execdb" or ""
	baseURL         string // BaseURL without its trailing slash
	resultsDB       string
	runTimeout      time.Duration
	scheduleTimeout time.Duration
	log             *zap.Logger
	pages           map[string]*pageTemplate
	static          http.Handler
	assetVersion    string
	dash            *dashboardCache
}

// Pages is the handler of the pages and their assets. It is safe for concurrent use.
type Pages struct {
	site    *site
	handler http.Handler
}

// ServeHTTP serves a page, an asset, or the 404 page.
func (p *Pages) ServeHTTP(w http.ResponseWriter, r *http.Request) { p.handler.ServeHTTP(w, r) }

// Close stops a count of the dashboard's figures in progress in the background and waits for
// it to end; call it after the HTTP server shut down and before the database is closed. The
// dashboard answers 503 afterwards.
func (p *Pages) Close() { p.site.dash.close() }

// New returns the pages. It panics on a Config that Validate refuses: check it first (execdb
// serve does, at start).
func New(cfg Config) *Pages {
	if err := cfg.Validate(); err != nil {
		panic(err)
	}
	s := &site{
		read:            cfg.Reader,
		baseURL:         strings.TrimRight(cfg.BaseURL, "/"),
		resultsDB:       strings.TrimRight(cfg.ResultsDBURL, "/"),
		runTimeout:      cfg.RunTimeout,
		scheduleTimeout: cfg.ScheduleTimeout,
		log:             cfg.Logger,
	}
	if s.baseURL != "" {
		u, _ := url.Parse(s.baseURL)
		s.basePath = strings.TrimRight(u.EscapedPath(), "/")
	}
	if s.runTimeout == 0 {
		s.runTimeout = DefaultRunTimeout
	}
	if s.scheduleTimeout == 0 {
		s.scheduleTimeout = DefaultScheduleTimeout
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		panic(err)
	}
	s.assetVersion = assetVersion(static)
	s.static = http.StripPrefix("/static/", http.FileServerFS(static))
	s.pages = parseTemplates(s)
	s.dash = &dashboardCache{}

	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.dashboard)
	mux.HandleFunc("GET /jobs", s.jobs)
	mux.HandleFunc("GET /jobs/{uuid}", s.job)
	mux.HandleFunc("GET /stats", s.stats)
	mux.HandleFunc("GET /stats/retries", s.retries)
	mux.HandleFunc("GET /rejected", s.rejected)
	mux.HandleFunc("GET /static/{file...}", s.asset)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			s.errorPage(w, r, &pageError{Status: http.StatusMethodNotAllowed, Message: "The pages are read only: " + r.Method + " is not allowed here."})
			return
		}
		s.errorPage(w, r, &pageError{Status: http.StatusNotFound, Message: "There is no page at " + r.URL.Path + "."})
	})
	return &Pages{site: s, handler: securityHeaders(mux)}
}

// securityHeaders forbids loading anything from another host, framing and sniffing, on every
// answer of the pages: a content security policy that allows this origin only and no scripts.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "same-origin")
		next.ServeHTTP(w, r)
	})
}

// asset serves an embedded file; with the version query it was linked with, browsers may keep
// it for a year.
func (s *site) asset(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("file")
	if _, err := fs.Stat(staticFS, "static/"+name); name == "" || err != nil {
		s.errorPage(w, r, &pageError{Status: http.StatusNotFound, Message: "There is no asset " + name + "."})
		return
	}
	if r.URL.Query().Get("v") == s.assetVersion {
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		w.Header().Set("Cache-Control", "no-cache")
	}
	s.static.ServeHTTP(w, r)
}

// link is the URL of a page of this site: the base path, the path, and the query if any.
func (s *site) link(path string, q query) string {
	u := s.basePath + path
	if enc := q.encode(); enc != "" {
		u += "?" + enc
	}
	return u
}

// pageError is what an error page tells.
type pageError struct {
	Status  int
	Message string
	Field   string // the parameter to blame, if one is
}

func (e *pageError) Error() string { return e.Message }
