// Command execdb-perf measures ExecDB's write throughput as ratios against baselines measured
// in the same run on the same machine, where absolute numbers move from run to run:
//
//   - HTTP creates and full job lives (create, start, finish CRASHED with keyvals) through
//     `execdb serve` on PostgreSQL, at 8 and 32 connections (`execdb-load http`), against
//     pgbench committing the same rows one transaction each, in two forms: statement by
//     statement between BEGIN and COMMIT, a round trip each (pgbench/statements/*.sql), and
//     one statement a transaction, one round trip (pgbench/cte/*.sql);
//   - the same lives on SQLite at 32 connections (transitions/s = 3 × lives/s);
//   - the bus: job lives published to RabbitMQ and applied by `execdb serve`, against the null
//     pipeline (`execdb-load --null-pipeline`: the load tool consuming and republishing, no
//     database);
//   - optionally (--kill) a kill -9 of serve in the middle of an HTTP run, a restart, and a
//     check that every job answered 2xx is stored in the state the answer vouched for.
//
// The HTTP runs and pgbench are interleaved, round after round (--rounds, default 3), and the
// report gives the median of each figure and of each round's ratio. It builds execdb and
// execdb-load, creates scratch databases (dropped at the end), starts serve processes on free
// loopback ports and stops everything it started. It needs PostgreSQL (trust or password in
// --pg-url), pgbench, and RabbitMQ for the bus part, all local, on a machine otherwise quiet.
//
//	go run ./cmd/execdb-perf                       # from the repository's root
//	go run ./cmd/execdb-perf --rev HEAD --kill     # execdb as committed, with the crash check
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	repo     string
	rev      string
	pgURL    string
	dbName   string
	amqpURL  string
	rounds   int
	duration time.Duration
	conns    []int
	threads  int
	busJobs  int
	noBus    bool
	noSQLite bool
	kill     bool
	pgbench  string
	forms    []string
	logLevel string
	keep     bool
	jsonPath string
}

func main() {
	var c config
	var conns, forms string
	flag.StringVar(&c.repo, "repo", ".", "the ExecDB repository to build from")
	flag.StringVar(&c.rev, "rev", "", "build execdb from this git revision (git archive) instead of the working tree; execdb-load always comes from the working tree")
	flag.StringVar(&c.pgURL, "pg-url", "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable", "PostgreSQL to create the scratch databases in (a superuser: CREATE DATABASE, CHECKPOINT)")
	flag.StringVar(&c.dbName, "db-name", "execdb_perf", "scratch database for the HTTP runs and pgbench; <name>_bus for the bus runs. Both are DROPPED first and at the end")
	flag.StringVar(&c.amqpURL, "amqp-url", "amqp://guest:guest@127.0.0.1:5672/", "RabbitMQ for the bus runs")
	flag.IntVar(&c.rounds, "rounds", 3, "interleaved rounds; the report gives medians")
	flag.DurationVar(&c.duration, "duration", 10*time.Second, "length of each HTTP and pgbench run (pgbench: whole seconds)")
	flag.StringVar(&conns, "conns", "8,32", "connection counts, comma-separated; SQLite, p99 and --kill use the last")
	flag.IntVar(&c.threads, "pgbench-threads", 2, "pgbench -j")
	flag.IntVar(&c.busJobs, "bus-jobs", 10000, "job lives per bus run (3 messages each)")
	flag.BoolVar(&c.noBus, "no-bus", false, "skip the bus runs")
	flag.BoolVar(&c.noSQLite, "no-sqlite", false, "skip the SQLite runs")
	flag.BoolVar(&c.kill, "kill", false, "also kill -9 serve (PostgreSQL, then SQLite) in the middle of an HTTP lives run, restart it, and check that every job answered 2xx is stored")
	flag.StringVar(&c.pgbench, "pgbench", "pgbench", "the pgbench binary")
	flag.StringVar(&forms, "pgbench-forms", "statements,cte", "pgbench scripts to run, comma-separated: statements (BEGIN, a statement a row, COMMIT), cte (one statement a transaction)")
	flag.StringVar(&c.logLevel, "log-level", "info", "serve's EXECDB_LOG_LEVEL (info, as deployed, logs every write)")
	flag.BoolVar(&c.keep, "keep", false, "keep the scratch databases and the work directory (binaries, logs, pgbench scripts)")
	flag.StringVar(&c.jsonPath, "json", "", "also write every run's figures to this file as JSON")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "Usage: execdb-perf [flags]\n\n"+
			"Runs HTTP load against execdb serve interleaved with pgbench writing the same rows, the\n"+
			"bus against a null pipeline, and SQLite, and prints ratios. About 9 minutes with the\n"+
			"defaults. It DROPS and recreates the databases --db-name and <db-name>_bus.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	for f := range strings.SplitSeq(conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			fmt.Fprintf(os.Stderr, "execdb-perf: --conns: %q is not a connection count\n", f)
			os.Exit(2)
		}
		c.conns = append(c.conns, n)
	}
	for f := range strings.SplitSeq(forms, ",") {
		f = strings.TrimSpace(f)
		if f != "statements" && f != "cte" {
			fmt.Fprintf(os.Stderr, "execdb-perf: --pgbench-forms: %q is neither statements nor cte\n", f)
			os.Exit(2)
		}
		c.forms = append(c.forms, f)
	}
	if c.rounds < 1 || c.duration < time.Second || c.busJobs < 1 {
		fmt.Fprintln(os.Stderr, "execdb-perf: --rounds and --bus-jobs must be positive, --duration at least 1s")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := run(ctx, c)
	if res != nil && c.jsonPath != "" {
		if b, jerr := json.MarshalIndent(res, "", "  "); jerr == nil {
			if werr := os.WriteFile(c.jsonPath, b, 0o644); werr != nil {
				fmt.Fprintln(os.Stderr, "execdb-perf:", werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "execdb-perf:", err)
		os.Exit(1)
	}
}

// results is everything measured; --json writes it.
type results struct {
	Started  time.Time         `json:"started"`
	Machine  map[string]string `json:"machine"`
	Config   map[string]any    `json:"config"`
	Rounds   []*round          `json:"rounds"`
	Bus      []*busPair        `json:"bus,omitempty"`
	Kill     []*killResult     `json:"kill,omitempty"`
	Serves   []*serveSummary   `json:"serves"`
	Finished time.Time         `json:"finished"`
}

type round struct {
	PGBench map[string]*pgbenchRun `json:"pgbench"` // by "creates@8/statements"
	HTTP    map[string]*httpRun    `json:"http"`
	SQLite  *httpRun               `json:"sqlite,omitempty"`
}

type busPair struct {
	Null   *busRun `json:"null"`
	ExecDB *busRun `json:"execdb"`
}

type serveSummary struct {
	Name     string   `json:"name"`
	PeakRSS  float64  `json:"peak_rss_mb"`
	Errors   int      `json:"log_errors"`
	Warnings int      `json:"log_warnings"`
	First    []string `json:"log_first,omitempty"`
	Log      string   `json:"log"`
}

func key(workload string, conns int) string { return fmt.Sprintf("%s@%d", workload, conns) }

func run(ctx context.Context, c config) (res *results, err error) {
	res = &results{Started: time.Now().UTC(), Machine: machineFacts(), Config: map[string]any{
		"rev": c.rev, "rounds": c.rounds, "duration": c.duration.String(), "conns": c.conns,
		"pgbench_threads": c.threads, "pgbench_forms": c.forms, "bus_jobs": c.busJobs, "kill": c.kill, "log_level": c.logLevel}}
	defer func() { res.Finished = time.Now().UTC() }()

	// What is missing should stop the run before it starts, not after minutes of it.
	if _, err := exec.LookPath(c.pgbench); err != nil {
		return res, fmt.Errorf("pgbench: %w (Debian: apt-get install postgresql-client-15, the server's version)", err)
	}
	if !c.noBus {
		v, err := rabbitVersion(c.amqpURL)
		if err != nil {
			return res, fmt.Errorf("RabbitMQ at %s: %w (or --no-bus)", redactURL(c.amqpURL), err)
		}
		res.Machine["rabbitmq"] = v
	}
	work, err := os.MkdirTemp("", "execdb-perf-")
	if err != nil {
		return res, err
	}
	if c.keep {
		fmt.Printf("work directory (kept): %s\n", work)
	} else {
		defer os.RemoveAll(work)
	}
	b, err := build(ctx, c, work)
	if err != nil {
		return res, err
	}
	res.Machine["execdb"] = b.execdbFrom
	db, err := newScratch(ctx, c.pgURL)
	if err != nil {
		return res, err
	}
	defer db.close(c.keep)
	res.Machine["postgresql"] = db.version
	res.Machine["pgbench"] = pgbenchVersion(c.pgbench)
	printHeader(res)

	scripts, err := writeScripts(work)
	if err != nil {
		return res, err
	}
	pgDB, err := db.create(ctx, c.dbName)
	if err != nil {
		return res, err
	}
	var serves []*serve
	defer func() {
		for _, s := range serves {
			s.stop()
		}
	}()
	summarize := func(s *serve) {
		s.stop()
		errs, warns, first := s.logSummary()
		res.Serves = append(res.Serves, &serveSummary{Name: s.name, PeakRSS: float64(s.peakKB) / 1024,
			Errors: errs, Warnings: warns, First: first, Log: s.logPath})
	}
	base := map[string]string{"EXECDB_LOG_LEVEL": c.logLevel}
	pgServe, err := startServe(ctx, "PostgreSQL", b.execdb, work, with(base, "EXECDB_DB", pgDB))
	if err != nil {
		return res, err
	}
	serves = append(serves, pgServe)
	var liteServe *serve
	if !c.noSQLite {
		if liteServe, err = startServe(ctx, "SQLite", b.execdb, work, with(base, "EXECDB_DB", "sqlite:"+filepath.Join(work, "execdb.db"))); err != nil {
			return res, err
		}
		serves = append(serves, liteServe)
	}
	fmt.Printf("serve on PostgreSQL at %s", pgServe.url())
	if liteServe != nil {
		fmt.Printf(", on SQLite at %s", liteServe.url())
	}
	fmt.Printf("; pgbench on %s\n\n", db.name(pgDB))

	top := c.conns[len(c.conns)-1]
	for r := range c.rounds {
		rd := &round{PGBench: map[string]*pgbenchRun{}, HTTP: map[string]*httpRun{}}
		res.Rounds = append(res.Rounds, rd)
		for _, workload := range []string{"creates", "lives"} {
			for _, n := range c.conns {
				k := key(workload, n)
				var line strings.Builder
				line.WriteString("pgbench")
				for _, form := range c.forms {
					db.checkpoint(ctx)
					pg, err := runPGBench(ctx, c, pgDB, scripts[form][workload], n)
					if err != nil {
						return res, fmt.Errorf("round %d, pgbench %s %s: %w", r+1, form, k, err)
					}
					pg.Form = form
					rd.PGBench[k+"/"+form] = pg
					fmt.Fprintf(&line, " %s %5.0f/s", map[string]string{"statements": "stmts", "cte": "cte"}[form], pg.TPS)
				}
				db.checkpoint(ctx)
				h, err := runHTTP(ctx, b.load, pgServe, workload, n, c.duration, "")
				if err != nil {
					return res, fmt.Errorf("round %d, http %s: %w", r+1, k, err)
				}
				rd.HTTP[k] = h
				fmt.Fprintf(&line, "  | ExecDB %5.0f/s", h.UnitRate)
				for _, form := range c.forms {
					fmt.Fprintf(&line, " %.2f×", h.UnitRate/rd.PGBench[k+"/"+form].TPS)
				}
				fmt.Printf("round %d/%d  %-10s %s  p99 %5.1f ms  serve CPU %.2f ms/req  machine %3.0f%% busy%s\n",
					r+1, c.rounds, k, line.String(), h.All.P99, h.ServeCPU, h.MachineBusy, h.trouble())
			}
		}
		if liteServe != nil {
			h, err := runHTTP(ctx, b.load, liteServe, "lives", top, c.duration, "")
			if err != nil {
				return res, fmt.Errorf("round %d, SQLite: %w", r+1, err)
			}
			rd.SQLite = h
			fmt.Printf("round %d/%d  %-10s SQLite %5.0f lives/s = %.0f transitions/s  p99 %5.1f ms  serve CPU %.2f ms/req  machine %3.0f%% busy%s\n",
				r+1, c.rounds, key("lives", top), h.UnitRate, 3*h.UnitRate, h.All.P99, h.ServeCPU, h.MachineBusy, h.trouble())
		}
	}

	if c.kill {
		kr, err := killRun(ctx, b.load, pgServe, top, c.duration, work)
		res.Kill = append(res.Kill, kr)
		if err != nil {
			return res, fmt.Errorf("kill -9 on PostgreSQL: %w", err)
		}
		if liteServe != nil {
			kr, err := killRun(ctx, b.load, liteServe, top, c.duration, work)
			res.Kill = append(res.Kill, kr)
			if err != nil {
				return res, fmt.Errorf("kill -9 on SQLite: %w", err)
			}
		}
	}
	serves = nil
	summarize(pgServe)
	if liteServe != nil {
		summarize(liteServe)
	}

	if !c.noBus {
		busDB, err := db.create(ctx, c.dbName+"_bus")
		if err != nil {
			return res, err
		}
		tag := strconv.Itoa(os.Getpid())
		queue, prefix := "execdb-perf-"+tag, "perf.execdb"+tag
		nullQueue, nullPrefix := "execdb-perf-null-"+tag, "perf.null"+tag
		var busServe *serve
		defer func() {
			if busServe != nil {
				busServe.stop() // before its queue goes, or it declares it again
			}
			deleteQueues(c.amqpURL, queue)
		}()
		busServe, err = startServe(ctx, "bus", b.execdb, work, with(with(with(with(base,
			"EXECDB_DB", busDB), "EXECDB_AMQP_URL", c.amqpURL), "EXECDB_AMQP_QUEUE", queue), "EXECDB_TOPIC_PREFIX", prefix))
		if err != nil {
			return res, err
		}
		serves = append(serves, busServe)
		fmt.Printf("\nbus: serve on %s with queue %s, prefix %s; null pipeline on queue %s, prefix %s\n",
			db.name(busDB), queue, prefix, nullQueue, nullPrefix)
		for r := range c.rounds {
			p := &busPair{}
			res.Bus = append(res.Bus, p)
			if p.Null, err = runBus(ctx, b.load, c.amqpURL, nullPrefix, nullQueue, c.busJobs, nil); err != nil {
				return res, fmt.Errorf("round %d, null pipeline: %w", r+1, err)
			}
			if p.ExecDB, err = runBus(ctx, b.load, c.amqpURL, prefix, "", c.busJobs, busServe); err != nil {
				return res, fmt.Errorf("round %d, bus: %w", r+1, err)
			}
			fmt.Printf("round %d/%d  bus        null %7.0f messages/s  | ExecDB %7.0f messages/s  %4.0f%%  serve CPU %.3f ms/message  machine %3.0f%% busy\n",
				r+1, c.rounds, p.Null.AppliedRate, p.ExecDB.AppliedRate, 100*p.ExecDB.AppliedRate/p.Null.AppliedRate,
				p.ExecDB.ServeCPU, p.ExecDB.MachineBusy)
		}
		serves = nil
		summarize(busServe)
	}
	res.Finished = time.Now().UTC()
	report(os.Stdout, c, res)
	return res, nil
}

func with(m map[string]string, k, v string) map[string]string {
	n := make(map[string]string, len(m)+1)
	for a, b := range m {
		n[a] = b
	}
	n[k] = v
	return n
}
