package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// The tests of this file run against small handlers written for each case, for answers the
// real API does not give on demand; api_test.go runs the client against the real API.

// fast are options that keep retries in milliseconds.
func fast(budget time.Duration) []Option {
	return []Option{WithBudget(budget), WithBackoff(time.Millisecond, 4*time.Millisecond), withoutJitter()}
}

func newTestClient(t *testing.T, base string, opts ...Option) *Client {
	t.Helper()
	c, err := New(base, "s3cret", opts...)
	if err != nil {
		t.Fatalf("New(%q): %v", base, err)
	}
	return c
}

func jobJSON(state statemachine.State) []byte {
	b, _ := json.Marshal(statemachine.Job{UUID: uuid.MustParse("0190f3a0-0000-7000-8000-000000000001"), State: state, Attempt: 1})
	return b
}

func TestNewRejectsBadURLs(t *testing.T) {
	t.Parallel()
	for _, u := range []string{"ftp://x", "http://", "127.0.0.1:5003", "http://h/?q=1", "http://u:p@h/", "://"} {
		if _, err := New(u, ""); err == nil {
			t.Errorf("New(%q): got no error, want one", u)
		}
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	cases := []struct {
		base, path string
		query      url.Values
		want       string
	}{
		{"http://h:1", "/jobs", nil, "http://h:1/api/v1/jobs"},
		{"http://h:1/", "jobs", nil, "http://h:1/api/v1/jobs"},
		{"http://h:1/api/v1", "/stats", url.Values{"group_by": {"kv.reason"}}, "http://h:1/api/v1/stats?group_by=kv.reason"},
		{"https://h/execdb/", "/jobs/x/events", nil, "https://h/execdb/api/v1/jobs/x/events"},
		{"http://h:1", "/api/v1/jobs?after=abc", url.Values{"state": {"CRASHED"}}, "http://h:1/api/v1/jobs?after=abc&state=CRASHED"},
		{"http://h:1", "http://h:1/api/v1/jobs?after=abc", nil, "http://h:1/api/v1/jobs?after=abc"},
	}
	for _, c := range cases {
		cl := newTestClient(t, c.base)
		u, err := cl.resolve(c.path, c.query)
		if err != nil {
			t.Errorf("resolve(%q, %q): %v", c.base, c.path, err)
			continue
		}
		if u.String() != c.want {
			t.Errorf("resolve(%q, %q): got %s, want %s", c.base, c.path, u, c.want)
		}
	}
	cl := newTestClient(t, "http://h:1")
	if _, err := cl.resolve("http://elsewhere/api/v1/jobs", nil); err == nil {
		t.Errorf("resolve of another host: got no error, want one")
	}
}

func TestRetries5xxThenSucceeds(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusBadGateway)
			w.Write([]byte("<html>bad gateway</html>"))
		case 2:
			http.Error(w, `{"error":{"status":503,"message":"database unavailable"}}`, http.StatusServiceUnavailable)
		default:
			w.Write(jobJSON(statemachine.Running))
		}
	}))
	defer srv.Close()
	var logged []string
	c := newTestClient(t, srv.URL, append(fast(5*time.Second), WithLogf(func(f string, a ...any) {
		logged = append(logged, f)
	}))...)
	resp, err := c.StartJob(context.Background(), uuid.New(), statemachine.Start{})
	if err != nil {
		t.Fatalf("StartJob: %v", err)
	}
	if resp.Job.State != statemachine.Running {
		t.Errorf("state: got %s, want RUNNING", resp.Job.State)
	}
	if got := n.Load(); got != 3 {
		t.Errorf("requests: got %d, want 3", got)
	}
	if len(logged) != 2 {
		t.Errorf("retry log lines: got %d, want 2", len(logged))
	}
}

func TestNever4xxRetried(t *testing.T) {
	t.Parallel()
	for _, status := range []int{400, 401, 403, 404, 409, 413, 429} {
		var n atomic.Int32
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			n.Add(1)
			w.WriteHeader(status)
			fmt.Fprintf(w, `{"error":{"status":%d,"message":"no","field":"crash.cause"}}`, status)
		}))
		c := newTestClient(t, srv.URL, fast(5*time.Second)...)
		_, err := c.FinishJob(context.Background(), uuid.New(), statemachine.End{State: statemachine.Finished})
		srv.Close()
		var apiErr *APIError
		if !errors.As(err, &apiErr) {
			t.Errorf("status %d: got error %v, want an *APIError", status, err)
			continue
		}
		if apiErr.Status != status || apiErr.Message != "no" || apiErr.Field != "crash.cause" {
			t.Errorf("status %d: got %+v, want status %d, message no, field crash.cause", status, apiErr, status)
		}
		if got := n.Load(); got != 1 {
			t.Errorf("status %d: got %d requests, want 1", status, got)
		}
	}
}

func TestGivesUpWhenBudgetSpent(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusInternalServerError)
		w.Write([]byte(`{"error":{"status":500,"message":"internal error"}}`))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, fast(30*time.Millisecond)...)
	start := time.Now()
	_, err := c.Job(context.Background(), uuid.New())
	if StatusOf(err) != 500 {
		t.Fatalf("got %v, want an *APIError with status 500", err)
	}
	if !strings.Contains(err.Error(), "gave up after") || !strings.Contains(err.Error(), "internal error") {
		t.Errorf("error %q: want it to say it gave up and why", err)
	}
	if n.Load() < 3 {
		t.Errorf("requests: got %d, want several", n.Load())
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %s, want about the 30ms budget", d)
	}
}

func TestNoBudgetMeansOneAttempt(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, WithBudget(0))
	_, err := c.Job(context.Background(), uuid.New())
	if StatusOf(err) != 503 || n.Load() != 1 {
		t.Errorf("got %v after %d requests, want a 503 after 1", err, n.Load())
	}
	var apiErr *APIError
	errors.As(err, &apiErr)
	if apiErr.Message != "Service Unavailable" {
		t.Errorf("message of an empty 503: got %q, want the status text", apiErr.Message)
	}
}

// TestRetriesUntilServerComesUp starts the server late on a port that first refuses
// connections, as after an ExecDB restart.
func TestRetriesUntilServerComesUp(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	started := make(chan *httptest.Server, 1)
	go func() {
		time.Sleep(150 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen again on %s: %v", addr, err)
			started <- nil
			return
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Write(jobJSON(statemachine.Finished))
		}))
		srv.Listener = l
		srv.Start()
		started <- srv
	}()
	var attempts atomic.Int32
	c := newTestClient(t, "http://"+addr, WithBudget(10*time.Second), WithBackoff(5*time.Millisecond, 20*time.Millisecond),
		WithLogf(func(string, ...any) { attempts.Add(1) }))
	resp, err := c.FinishJob(context.Background(), uuid.New(), statemachine.End{State: statemachine.Finished})
	if srv := <-started; srv != nil {
		defer srv.Close()
	}
	if err != nil {
		t.Fatalf("FinishJob: %v", err)
	}
	if resp.Job.State != statemachine.Finished {
		t.Errorf("state: got %s, want FINISHED", resp.Job.State)
	}
	if attempts.Load() == 0 {
		t.Errorf("retries: got none, want some while the port refused connections")
	}
}

func TestConnectionRefusedGivesUp(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	c := newTestClient(t, "http://"+addr, fast(20*time.Millisecond)...)
	_, err = c.Job(context.Background(), uuid.New())
	if err == nil || StatusOf(err) != 0 || !strings.Contains(err.Error(), "gave up after") {
		t.Errorf("got %v, want a connection error after retries", err)
	}
}

func TestContextCancelStopsRetrying(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, WithBudget(time.Minute), WithBackoff(time.Second, time.Second))
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Job(ctx, uuid.New())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("got %v, want context.DeadlineExceeded", err)
	}
	if d := time.Since(start); d > 900*time.Millisecond {
		t.Errorf("took %s, want it to stop when the context ended", d)
	}
}

func TestAttemptTimeoutIsRetried(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		w.Write(jobJSON(statemachine.Scheduled))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, append(fast(5*time.Second), WithAttemptTimeout(50*time.Millisecond))...)
	if _, err := c.Job(context.Background(), uuid.New()); err != nil {
		t.Fatalf("Job: %v", err)
	}
	if n.Load() != 2 {
		t.Errorf("requests: got %d, want 2", n.Load())
	}
}

func TestConflictCarriesJob(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusConflict)
		w.Write([]byte(`{"error":{"status":409,"message":"job already ended as FINISHED"},"job":` + string(jobJSON(statemachine.Finished)) + `}`))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, fast(time.Second)...)
	_, err := c.FinishJob(context.Background(), uuid.New(), statemachine.End{State: statemachine.Crashed})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 409 {
		t.Fatalf("got %v, want a 409 *APIError", err)
	}
	if apiErr.Job == nil || apiErr.Job.State != statemachine.Finished {
		t.Errorf("job of the conflict: got %+v, want the FINISHED job", apiErr.Job)
	}
	want := "server answered 409 Conflict: job already ended as FINISHED"
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error: got %q, want it to contain %q", err, want)
	}
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	var got []http.Header
	var paths []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Clone())
		paths = append(paths, r.Method+" "+r.URL.Path)
		if r.Method == http.MethodPost && r.Header.Get("Content-Type") != "application/json" {
			t.Errorf("%s: Content-Type %q, want application/json", r.URL.Path, r.Header.Get("Content-Type"))
		}
		if strings.HasSuffix(r.URL.Path, "/events") {
			w.Write([]byte(`{"data":[]}`))
			return
		}
		w.Write(jobJSON(statemachine.Scheduled))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	ctx := context.Background()
	id := uuid.New()
	if _, err := c.CreateJob(ctx, CreateJobRequest{TaskName: "t", Item: "i", ItemType: "k"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Job(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Events(ctx, id); err != nil {
		t.Fatal(err)
	}
	if _, err := c.RescheduleJob(ctx, id, true); err != nil {
		t.Fatal(err)
	}
	for i, h := range got {
		write := strings.HasPrefix(paths[i], "POST")
		if a := h.Get("Authorization"); write && a != "Bearer s3cret" || !write && a != "" {
			t.Errorf("%s: Authorization %q", paths[i], a)
		}
		if h.Get("Accept") != "application/json" {
			t.Errorf("%s: Accept %q, want application/json", paths[i], h.Get("Accept"))
		}
	}
	if k := got[0].Get("Idempotency-Key"); uuid.Validate(k) != nil {
		t.Errorf("create: Idempotency-Key %q, want a UUID", k)
	}
	for i := 1; i < len(got); i++ {
		if k := got[i].Get("Idempotency-Key"); k != "" {
			t.Errorf("%s: Idempotency-Key %q, want none", paths[i], k)
		}
	}
}

func TestUndecodableAnswer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`<html>hello</html>`))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL)
	if _, err := c.Job(context.Background(), uuid.New()); err == nil || !strings.Contains(err.Error(), "decode job") {
		t.Errorf("got %v, want a decode error", err)
	}
}

func TestNotImplementedNotRetried(t *testing.T) {
	t.Parallel()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		w.WriteHeader(http.StatusNotImplemented)
		w.Write([]byte(`{"error":{"status":501,"message":"stats are not implemented yet"}}`))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, fast(5*time.Second)...)
	_, err := c.Get(context.Background(), "/stats", nil)
	if StatusOf(err) != 501 || n.Load() != 1 {
		t.Errorf("got %v after %d requests, want a 501 after 1", err, n.Load())
	}
}

// TestRequestIDStableAcrossRetries: the retries of one write carry the X-Request-ID of the first
// attempt, so the server's history shows them as repeats of one request; another call has
// another id.
func TestRequestIDStableAcrossRetries(t *testing.T) {
	t.Parallel()
	var ids []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ids = append(ids, r.Header.Get("X-Request-ID"))
		if len(ids)%2 == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write(jobJSON(statemachine.Running))
	}))
	defer srv.Close()
	c := newTestClient(t, srv.URL, fast(5*time.Second)...)
	for range 2 {
		if _, err := c.StartJob(context.Background(), uuid.New(), statemachine.Start{}); err != nil {
			t.Fatal(err)
		}
	}
	if len(ids) != 4 || ids[0] == "" || ids[0] != ids[1] || ids[2] != ids[3] || ids[1] == ids[2] {
		t.Errorf("X-Request-ID: got %q, want two pairs of equal ids", ids)
	}
}

// TestUnansweredReadGivesUpEarly: a read from a server that never answers at all (a mistyped
// URL) gives up after the short unanswered-read limit, not the whole budget; a read the server
// answers with 503s, and a write, keep the whole budget.
func TestUnansweredReadGivesUpEarly(t *testing.T) {
	t.Parallel()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	opts := append(fast(time.Hour), WithUnansweredRead(30*time.Millisecond))
	c := newTestClient(t, "http://"+addr, opts...)
	_, err = c.Job(context.Background(), uuid.New())
	if err == nil || !strings.Contains(err.Error(), "is the server's URL right?") {
		t.Fatalf("read: got %v, want it to give up on a server that never answered", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := c.FinishJob(ctx, uuid.New(), statemachine.End{State: statemachine.Finished}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("write: got %v, want it to retry until the context ends", err)
	}
	var answers atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if answers.Add(1) < 50 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Write(jobJSON(statemachine.Finished))
	}))
	defer srv.Close()
	c = newTestClient(t, srv.URL, opts...)
	if _, err := c.Job(context.Background(), uuid.New()); err != nil {
		t.Errorf("a read the server answers with 503s: got %v, want it to retry past the unanswered limit", err)
	}
}
