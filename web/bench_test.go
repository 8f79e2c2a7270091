package web_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	apiquery "github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/postgres"
	"github.com/fedora-qa/execdb/web"
)

// benchNow is the clock of execdb-bench's seed: its jobs span the 90 days before it.
var benchNow = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

// BenchmarkPages times each page's handler, the server's time for the page, on the database
// execdb-bench seeds (a million jobs):
//
//	createdb -h 127.0.0.1 -U postgres benchpages
//	go run ./cmd/execdb-bench --db 'postgres://postgres@127.0.0.1:5432/benchpages?sslmode=disable' --jobs 1000000 --wipe --runs 1
//	EXECDB_BENCH_POSTGRES_URL='postgres://postgres@127.0.0.1:5432/benchpages?sslmode=disable' \
//	  go test -run '^$' -bench Pages -benchtime 20x ./web/
//
// Each page reports its median and 95th percentile besides the mean.
func BenchmarkPages(b *testing.B) {
	dsn := os.Getenv("EXECDB_BENCH_POSTGRES_URL")
	if dsn == "" {
		b.Skip("EXECDB_BENCH_POSTGRES_URL is unset; set it to a database execdb-bench seeded (see the comment of BenchmarkPages)")
	}
	ctx := context.Background()
	backend, err := postgres.Open(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Close()
	store := jobs.New(backend, jobs.Config{Now: func() time.Time { return benchNow }})
	read := store
	newPages := func() *web.Pages {
		return web.New(web.Config{Reader: read, BaseURL: "https://taskotron.example.org/execdb"})
	}

	// A crashed job with a history, and the second page of a search.
	f, _ := apiquery.ParseFilter(url.Values{"state": {"CRASHED"}, "cause": {"minion"}}, benchNow)
	crashed, _, err := store.Search(ctx, f, storage.Page{Limit: 1})
	if err != nil || len(crashed) == 0 {
		b.Fatalf("no crashed job in the bench database (%v): seed it with execdb-bench", err)
	}
	_, next, err := store.Search(ctx, storage.Filter{}, storage.Page{Limit: storage.DefaultLimit})
	if err != nil || next == nil {
		b.Fatalf("search: %v", err)
	}

	serve := func(b *testing.B, p *web.Pages, path string) time.Duration {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		rec := httptest.NewRecorder()
		start := time.Now()
		p.ServeHTTP(rec, req)
		d := time.Since(start)
		if rec.Code != http.StatusOK {
			b.Fatalf("GET %s: %d\n%s", path, rec.Code, rec.Body.String())
		}
		return d
	}
	report := func(b *testing.B, times []time.Duration) {
		slices.Sort(times)
		b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(times[(len(times)*95-1)/100].Microseconds())/1000, "p95-ms")
	}

	pages := newPages()
	defer pages.Close()
	for _, c := range []struct{ name, path string }{
		{"dashboard", "/"},
		{"jobs", "/jobs"},
		{"jobs_next_page", "/jobs?after=" + next.String()},
		{"jobs_crashed_minion", "/jobs?state=CRASHED&cause=minion"},
		{"jobs_kv_reason", "/jobs?kv.reason=BACKING_STORE_LINKING"},
		{"jobs_data_and_task", "/jobs?data.koji_tag=f45-updates-testing&taskname=rpmlint"},
		{"jobs_item_like", "/jobs?item:like=python-req*"},
		{"job", "/jobs/" + crashed[0].UUID.String()},
		{"stats_form", "/stats"},
		{"stats_T833", "/stats?state=CRASHED&cause=minion&kv.step=MINION_CREATION&since=30d&group_by=kv.reason"},
		{"stats_crashes_a_day_by_cause_30d", "/stats?state=CRASHED&since=30d&group_by=cause&bucket=day"},
		{"stats_task_and_state_7d", "/stats?since=7d&group_by=taskname,state"},
		{"retries_by_cause_30d", "/stats/retries?state=CRASHED&since=30d&group_by=cause"},
		{"rejected", "/rejected"},
	} {
		b.Run(c.name, func(b *testing.B) {
			serve(b, pages, c.path) // warm the dashboard's count and the database's cache
			var times []time.Duration
			for b.Loop() {
				times = append(times, serve(b, pages, c.path))
			}
			report(b, times)
		})
	}
	// The dashboard's count itself, which a request waits for only when there is none yet.
	b.Run("dashboard_count", func(b *testing.B) {
		var times []time.Duration
		for b.Loop() {
			b.StopTimer()
			p := newPages()
			b.StartTimer()
			times = append(times, serve(b, p, "/"))
			b.StopTimer()
			p.Close()
			b.StartTimer()
		}
		report(b, times)
	})
	if strings.Contains(dsn, "@") {
		b.Logf("database %s", dsn[strings.LastIndex(dsn, "@")+1:])
	}
}
