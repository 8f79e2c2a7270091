// Command execdb-bench fills a PostgreSQL database with realistic jobs and measures search and
// stats latencies through the same Store the HTTP API uses. Its numbers are in
// docs/performance.md. Seeding DELETES every job of the database it is given: it never takes
// EXECDB_DB, and it refuses a database that has jobs unless given --wipe.
//
//	go run ./cmd/execdb-bench --db postgres://postgres@127.0.0.1:5432/bench --jobs 1000000
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/postgres"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

func main() {
	db := flag.String("db", "", "PostgreSQL URL (postgres://…) of a database for benchmarks; required, never taken from EXECDB_DB")
	njobs := flag.Int("jobs", 1_000_000, "jobs to seed, after DELETING every job the database has; 0 keeps what it has")
	wipe := flag.Bool("wipe", false, "seed even when the database already has jobs: they are DELETED")
	runs := flag.Int("runs", 30, "runs of each query")
	explain := flag.Bool("explain", false, "print the plan of each query")
	prune := flag.String("prune", "", "after the queries, prune with this retention (e.g. FINISHED=5d,CRASHED=5d) while writers create and finish jobs, and report their latency before and during the prune; the pruned jobs are gone")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: execdb-bench --db postgres://… [--jobs N] [--wipe] [--runs N] [--explain]\n\n"+
			"Seeds N realistic jobs (skewed tasks, states, crash causes and keyvals over 90 days)\n"+
			"and reports p50/p99 latencies of typical searches and stats.\n\n"+
			"Seeding DELETES every job, history entry and outbox message of the database. Give it a\n"+
			"database of its own: it refuses one that has jobs unless given --wipe.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *db == "" {
		fmt.Fprintln(os.Stderr, "execdb-bench: --db is required (it is never taken from EXECDB_DB: seeding deletes the database's jobs)")
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var retention jobs.Retention
	if *prune != "" {
		var err error
		if retention, err = jobs.ParseRetention(*prune); err != nil {
			fmt.Fprintln(os.Stderr, "execdb-bench: --prune:", err)
			os.Exit(2)
		}
	}
	if err := run(ctx, *db, *njobs, *wipe, *runs, *explain, retention); err != nil {
		fmt.Fprintln(os.Stderr, "execdb-bench:", err)
		os.Exit(1)
	}
}

var now = time.Date(2026, 11, 27, 0, 0, 0, 0, time.UTC)

func run(ctx context.Context, db string, njobs int, wipe bool, runs int, explain bool, retention jobs.Retention) error {
	b, err := postgres.Open(ctx, db)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := b.Migrate(ctx); err != nil {
		return err
	}
	if njobs > 0 {
		var have int64
		if err := b.Pool().QueryRow(ctx, `SELECT count(*) FROM (SELECT 1 FROM jobs LIMIT 1) j`).Scan(&have); err != nil {
			return err
		}
		if have > 0 && !wipe {
			return fmt.Errorf("%s has jobs, and seeding would delete them all; give --wipe if that is what you want, or --jobs 0 to measure what it has", redact(db))
		}
		start := time.Now()
		if err := seed(ctx, b, njobs); err != nil {
			return fmt.Errorf("seed: %w", err)
		}
		fmt.Printf("seeded %d jobs in %s\n\n", njobs, time.Since(start).Round(time.Second))
	}
	store := jobs.New(b, jobs.Config{Now: func() time.Time { return now }})
	fmt.Println("| query | p50 | p99 | rows |")
	fmt.Println("|---|---|---|---|")
	for _, q := range queries {
		params, _ := url.ParseQuery(q.params)
		f, err := query.ParseFilter(params, now, "group_by", "bucket")
		if err != nil {
			return fmt.Errorf("%s: %w", q.name, err)
		}
		var stats *storage.StatsQuery
		if q.stats {
			s := storage.StatsQuery{Filter: f}
			for _, g := range splitNonEmpty(params.Get("group_by")) {
				s.GroupBy = append(s.GroupBy, storage.Field(g))
			}
			s.Bucket = storage.Bucket(params.Get("bucket"))
			stats = &s
		}
		var times []time.Duration
		var n int
		for range runs {
			t := time.Now()
			if stats != nil {
				res, err := store.Stats(ctx, *stats)
				if err != nil {
					return fmt.Errorf("%s: %w", q.name, err)
				}
				n = len(res.Rows)
			} else {
				page, _, err := store.Search(ctx, f, storage.Page{Limit: storage.DefaultLimit})
				if err != nil {
					return fmt.Errorf("%s: %w", q.name, err)
				}
				n = len(page)
			}
			times = append(times, time.Since(t))
		}
		sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
		fmt.Printf("| %s `%s` | %s | %s | %d |\n", q.name, q.params, ms(times[len(times)/2]), ms(times[(len(times)*99-1)/100]), n)
		if explain {
			plan, err := b.Explain(ctx, f, stats)
			if err != nil {
				return err
			}
			fmt.Printf("\n```\n%s\n```\n\n", plan)
		}
	}
	if !retention.IsZero() {
		return pruneWhileWriting(ctx, b, retention)
	}
	return nil
}

// pruneWhileWriting measures what a prune does to writes: 8 writers create and finish jobs for
// 10 s, then go on while the store prunes with retention; it prints the writers' throughput and
// latency in both phases, and what the prune removed in how long.
func pruneWhileWriting(ctx context.Context, b *postgres.Backend, r jobs.Retention) error {
	store := jobs.New(b, jobs.Config{Now: func() time.Time { return now }})
	type phase struct {
		mu    sync.Mutex
		times []time.Duration
	}
	var current atomic.Pointer[phase]
	before, during := &phase{}, &phase{}
	current.Store(before)
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			meta := statemachine.Meta{Origin: statemachine.OriginHTTP, MessageID: "bench"}
			for i := 0; wctx.Err() == nil; i++ {
				t := time.Now()
				res, err := store.Create(wctx, statemachine.NewJob{TaskName: "rpmlint", Item: fmt.Sprintf("bench-%d-%d", w, i), ItemType: "koji_build"}, meta)
				if err == nil {
					_, err = store.Apply(wctx, res.Job.UUID, statemachine.Event{Meta: meta, End: &statemachine.End{State: statemachine.Finished}})
				}
				if err != nil {
					if wctx.Err() == nil {
						failed.Add(1)
					}
					continue
				}
				p := current.Load()
				p.mu.Lock()
				p.times = append(p.times, time.Since(t))
				p.mu.Unlock()
			}
		}()
	}
	report := func(name string, p *phase, d time.Duration) {
		p.mu.Lock()
		defer p.mu.Unlock()
		sort.Slice(p.times, func(i, j int) bool { return p.times[i] < p.times[j] })
		n := len(p.times)
		if n == 0 {
			fmt.Printf("| %s | 0 | - | - | - |\n", name)
			return
		}
		fmt.Printf("| %s | %.0f | %s | %s | %s |\n", name, float64(n)/d.Seconds(), ms(p.times[n/2]), ms(p.times[(n*99-1)/100]), ms(p.times[n-1]))
	}
	fmt.Printf("\nWriters (8, each: create a job, finish it) before and during a prune with %s:\n\n", r)
	fmt.Println("| phase | job lives/s | p50 | p99 | max |")
	fmt.Println("|---|---|---|---|---|")
	time.Sleep(10 * time.Second)
	current.Store(during)
	start := time.Now()
	res, err := store.Prune(ctx, r, false, 20*time.Millisecond)
	took := time.Since(start)
	stop()
	wg.Wait()
	report("before (10 s)", before, 10*time.Second)
	report(fmt.Sprintf("during the prune (%s)", took.Round(time.Second)), during, took)
	if err != nil {
		return fmt.Errorf("prune: %w", err)
	}
	var removed int64
	for _, c := range res.Jobs {
		removed += c.Prunable
	}
	fmt.Printf("\npruned %d jobs (%+v) and %d rejected messages in %s; %d writes failed\n", removed, res.Jobs, res.Rejected, took.Round(time.Second), failed.Load())
	return nil
}

var queries = []struct {
	name   string
	params string
	stats  bool
}{
	{"search: newest", "", false},
	{"search: one item", "item=python-requests-2.31.0-3.fc45", false},
	{"search: crashes by cause", "state=CRASHED&cause=minion", false},
	{"search: crash keyval", "kv.reason=BACKING_STORE_LINKING", false},
	{"search: trigger data", "data.koji_tag=f45-updates-testing&taskname=rpmlint", false},
	{"search: item wildcard", "item:like=python-req*", false},
	{"stats: the T833 question", "state=CRASHED&cause=minion&kv.step=MINION_CREATION&since=30d&group_by=kv.reason", true},
	{"stats: by task and state, a week", "since=7d&group_by=taskname,state", true},
	{"stats: crashes a day by cause, a month", "state=CRASHED&since=30d&group_by=cause&bucket=day", true},
	{"stats: everything by state", "group_by=state", true},
	{"stats: everything by task", "group_by=taskname", true},
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func splitNonEmpty(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// pick draws an index from weights.
func pick(r *rand.Rand, weights []float64) int {
	total := 0.0
	for _, w := range weights {
		total += w
	}
	x := r.Float64() * total
	for i, w := range weights {
		if x < w {
			return i
		}
		x -= w
	}
	return len(weights) - 1
}

var (
	tasks       = []string{"rpmlint", "rpmdeplint", "python-versions", "abicheck", "rpmgrill", "upgradepath", "depcheck", "dist.modulemd", "fedora-cloud-tests", "installability"}
	taskWeights = []float64{30, 20, 12, 10, 8, 7, 5, 4, 2, 2}
	arches      = []string{"noarch", "x86_64", "aarch64", "i386", "armhfp", "ppc64le"}
	archWeights = []float64{60, 20, 8, 5, 4, 3}
	tags        = []string{"f45-updates-testing", "f44-updates-testing", "f45-updates", "rawhide", "f43-updates"}
	packages    = []string{"python-requests", "kernel", "glibc", "firefox", "systemd", "gnome-shell", "rust-serde", "golang-x-sys", "nodejs", "perl-Moose"}
)

// seed replaces the database's jobs with n new ones, written with COPY.
func seed(ctx context.Context, b *postgres.Backend, n int) error {
	pool := b.Pool()
	if _, err := pool.Exec(ctx, `TRUNCATE jobs, job_data, crash_keyvals, job_events, outbox, rejected_messages, parked_events`); err != nil {
		return err
	}
	r := rand.New(rand.NewPCG(1, 2))
	const batch = 20_000
	for done := 0; done < n; done += batch {
		var jobRows, dataRows, kvRows, eventRows [][]any
		for i := done; i < min(n, done+batch); i++ {
			id := uuid.New()
			created := now.Add(-time.Duration(r.Int64N(int64(90 * 24 * time.Hour)))).Truncate(time.Microsecond)
			pkg := packages[pick(r, []float64{25, 15, 12, 10, 10, 8, 7, 6, 4, 3})]
			if r.IntN(4) > 0 {
				pkg = fmt.Sprintf("pkg%05d", r.IntN(20000))
			}
			item := fmt.Sprintf("%s-%d.%d.%d-%d.fc45", pkg, r.IntN(4), r.IntN(40), r.IntN(10), 1+r.IntN(3))
			state := []string{"FINISHED", "CRASHED", "RUNNING", "SCHEDULED"}[pick(r, []float64{85, 10, 3, 2})]
			var started, finished *time.Time
			if state != "SCHEDULED" {
				s := created.Add(time.Duration(5+r.ExpFloat64()*60) * time.Second)
				started = &s
			}
			if state == "FINISHED" || state == "CRASHED" {
				f := started.Add(time.Duration(30+r.ExpFloat64()*400) * time.Second)
				finished = &f
			}
			var notify, cause *string
			var fatal *bool
			if state == "CRASHED" {
				c := []string{"minion", "network", "task", "libtaskotron", "unknown"}[pick(r, []float64{45, 20, 20, 10, 5})]
				nt := map[string]string{"minion": "taskotron", "network": "taskotron", "task": "task", "libtaskotron": "taskotron", "unknown": "unknown"}[c]
				fa := c == "task" && r.IntN(3) == 0
				cause, notify, fatal = &c, &nt, &fa
				switch c {
				case "minion":
					step := []string{"MINION_CREATION", "RUNTASK"}[pick(r, []float64{80, 20})]
					reason := []string{"TIMED_OUT", "BACKING_STORE_LINKING", "NO_SPACE"}[pick(r, []float64{60, 25, 15})]
					kvRows = append(kvRows, []any{id, "step", 0, step}, []any{id, "reason", 0, reason})
				case "network":
					kvRows = append(kvRows, []any{id, "reason", 0, []string{"KOJI_UNREACHABLE", "BODHI_ERROR", "DNS"}[pick(r, []float64{50, 30, 20})]})
				case "task":
					kvRows = append(kvRows, []any{id, "reason", 0, []string{"OOM", "FORMULA_PARSING", "DIRECTIVE_CRASHED"}[pick(r, []float64{40, 30, 30})]})
				}
			}
			last := created // updated_at and state_entered_at: when the job entered its state
			for _, t := range []*time.Time{started, finished} {
				if t != nil {
					last = *t
				}
			}
			// Its history, as a life over HTTP leaves it: create, start, end.
			eventRows = append(eventRows, []any{id, "create", "applied", "http", "bench", "", "", "SCHEDULED", created})
			if started != nil {
				eventRows = append(eventRows, []any{id, "start", "applied", "http", "bench", "", "SCHEDULED", "RUNNING", *started})
			}
			if finished != nil {
				eventRows = append(eventRows, []any{id, "end", "applied", "http", "bench", "", "RUNNING", state, *finished})
			}
			jobRows = append(jobRows, []any{id, state, tasks[pick(r, taskWeights)], item,
				[]string{"koji_build", "bodhi_update", "compose"}[pick(r, []float64{70, 28, 2})],
				arches[pick(r, archWeights)], id.String(), created, started, finished, last, last, notify, cause, fatal})
			dataRows = append(dataRows, []any{id, "koji_tag", 0, tags[pick(r, []float64{40, 25, 20, 10, 5})]})
			if r.IntN(10) == 0 {
				dataRows = append(dataRows, []any{id, "critpath_pkgs", 0, pkg}, []any{id, "critpath_pkgs", 1, "glibc"})
			}
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"jobs"}, []string{"uuid", "state", "taskname", "item", "item_type", "arch",
			"request_id", "created_at", "started_at", "finished_at", "updated_at", "state_entered_at", "crash_notify", "crash_cause", "crash_fatal"}, pgx.CopyFromRows(jobRows)); err != nil {
			return err
		}
		if _, err := pool.CopyFrom(ctx, pgx.Identifier{"job_events"}, []string{"job_uuid", "kind", "verdict", "origin", "message_id",
			"actor", "state_from", "state_to", "recorded_at"}, pgx.CopyFromRows(eventRows)); err != nil {
			return err
		}
		for table, rows := range map[string][][]any{"job_data": dataRows, "crash_keyvals": kvRows} {
			if _, err := pool.CopyFrom(ctx, pgx.Identifier{table}, []string{"job_uuid", "key", "position", "value"}, pgx.CopyFromRows(rows)); err != nil {
				return err
			}
		}
	}
	// As migration 0004 marks crashes older than automatic rescheduling.
	if _, err := pool.Exec(ctx, `UPDATE jobs SET auto_reschedule = 'predates' WHERE state = 'CRASHED'`); err != nil {
		return err
	}
	// What autovacuum does after a bulk load: statistics, and the visibility map index-only scans need.
	_, err := pool.Exec(ctx, `VACUUM ANALYZE jobs, job_data, crash_keyvals, job_events`)
	return err
}

// redact hides the password of a database URL.
func redact(db string) string {
	u, err := url.Parse(db)
	if err != nil {
		return "the database"
	}
	return u.Redacted()
}
