// Package clienttest starts the real ExecDB HTTP API, on a fresh SQLite database, for testing
// clients: the client package and the execdb client commands. Nothing in it decides what the
// API answers; it only adds what tests of a client need around the real handler: a record of
// the requests received and failures injected on request, to exercise retries.
package clienttest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/sqlite"
)

// TokenName is the name the server records with writes made with Options.Token.
const TokenName = "clienttest"

// Options configures a Server. The zero value serves without tokens on a temporary database.
type Options struct {
	// Token, when set, is the one bearer token the server accepts for writes. Empty means no
	// tokens: the server accepts writes from loopback only, as `execdb serve` does.
	Token string
	// Dir is the directory of the SQLite database. Empty means a new temporary directory that
	// Close removes.
	Dir string
}

// Fault is an injected failure: a request answered with Status and a JSON error body like the
// server's. Without Apply the request does not reach the API. With Apply the API handles it
// first and its answer is thrown away, as if it had been lost on its way back.
type Fault struct {
	Status int
	Apply  bool
}

// Request is a request the server received, as the client sent it.
type Request struct {
	Method string
	Path   string
	Query  string // the raw query, without '?'
	Header http.Header
	Body   []byte // up to api.MaxBodyBytes
}

// Server is the real API behind an httptest.Server. It is safe for concurrent use.
type Server struct {
	// URL is the base URL of the server, e.g. http://127.0.0.1:41234, for client.New.
	URL string
	// Store is the store the API writes to, for looking behind the API's back.
	Store *jobs.Service

	srv       *httptest.Server
	backend   storage.Backend
	handler   http.Handler
	removeDir string // the temporary directory Close removes, if any
	closeOnce sync.Once

	mu       sync.Mutex
	faults   []Fault
	requests []Request
}

// New starts a server for the test tb and stops it, removing its database, when the test ends.
func New(tb testing.TB, opts Options) *Server {
	tb.Helper()
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	s, err := Start(opts)
	if err != nil {
		tb.Fatalf("clienttest: %v", err)
	}
	tb.Cleanup(s.Close)
	return s
}

// Start starts a server outside a test, e.g. in an Example. The caller must Close it.
func Start(opts Options) (s *Server, err error) {
	s = &Server{}
	dir := opts.Dir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "execdb-clienttest-"); err != nil {
			return nil, fmt.Errorf("make database directory: %w", err)
		}
		s.removeDir = dir
		defer func() {
			if err != nil {
				os.RemoveAll(dir)
			}
		}()
	}
	ctx := context.Background()
	backend, err := sqlite.Open(ctx, filepath.Join(dir, "execdb.db"))
	if err != nil {
		return nil, fmt.Errorf("open database: %w", err)
	}
	if err := backend.Migrate(ctx); err != nil {
		backend.Close()
		return nil, fmt.Errorf("migrate database: %w", err)
	}
	var tokens map[string]api.Token
	if opts.Token != "" {
		tokens = map[string]api.Token{opts.Token: {Name: TokenName}}
	}
	s.backend = backend
	s.Store = jobs.New(backend, jobs.Config{})
	s.handler = s.intercept(api.New(s.Store, api.Config{Tokens: tokens}).Handler())
	s.srv = httptest.NewServer(s.handler)
	s.URL = s.srv.URL
	return s, nil
}

// Close stops the server, waiting for requests in flight, and closes the database. It may be
// called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.srv.Close()
		s.backend.Close()
		if s.removeDir != "" {
			os.RemoveAll(s.removeDir)
		}
	})
}

// Handler returns the server's handler: the API with the request record and the injected
// faults. Serving it elsewhere, e.g. on a port that first refused connections, serves the same
// database.
func (s *Server) Handler() http.Handler { return s.handler }

// Inject queues failures for the next requests, one request each.
func (s *Server) Inject(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, faults...)
}

// Requests lists the requests received so far, oldest first.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Jobs lists every job in the database, oldest first, as the store reads them.
func (s *Server) Jobs(tb testing.TB) []statemachine.Job {
	tb.Helper()
	var all []statemachine.Job
	page := storage.Page{Limit: storage.MaxLimit}
	for {
		jobs, next, err := s.Store.Search(context.Background(), storage.Filter{}, page)
		if err != nil {
			tb.Fatalf("clienttest: list jobs: %v", err)
		}
		all = append(all, jobs...)
		if next == nil {
			break
		}
		page.After = next
	}
	slices.Reverse(all)
	return all
}

// intercept records each request and answers it with the next queued fault, if any, around
// next, the real API.
func (s *Server) intercept(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Read what the API would accept, and hand it on followed by whatever is left, so that
		// the API still sees a body that is too large.
		body, err := io.ReadAll(io.LimitReader(r.Body, api.MaxBodyBytes))
		if err != nil {
			writeError(w, http.StatusBadRequest, "clienttest: reading request body: "+err.Error())
			return
		}
		r.Body = struct {
			io.Reader
			io.Closer
		}{io.MultiReader(bytes.NewReader(body), r.Body), r.Body}

		s.mu.Lock()
		s.requests = append(s.requests, Request{
			Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body,
		})
		var fault *Fault
		if len(s.faults) > 0 {
			f := s.faults[0]
			s.faults = s.faults[1:]
			fault = &f
		}
		s.mu.Unlock()

		switch {
		case fault == nil:
			next.ServeHTTP(w, r)
		case fault.Apply:
			next.ServeHTTP(httptest.NewRecorder(), r)
			writeError(w, fault.Status, "injected failure after the request was applied")
		default:
			writeError(w, fault.Status, "injected failure")
		}
	})
}

// writeError answers as the API does when it fails.
func writeError(w http.ResponseWriter, status int, message string) {
	var body struct {
		Error struct {
			Status  int    `json:"status"`
			Message string `json:"message"`
		} `json:"error"`
	}
	body.Error.Status, body.Error.Message = status, message
	b, _ := json.Marshal(body) // cannot fail: a struct of an int and a string
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}
