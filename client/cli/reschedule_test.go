package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/server"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

func TestRescheduleDelaySetting(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  map[string]string
		want time.Duration
	}{
		{nil, nil, 30 * time.Second},
		{nil, map[string]string{"EXECDB_RESCHEDULE_DELAY": "2m"}, 2 * time.Minute},
		{[]string{"--reschedule-delay", "5s"}, map[string]string{"EXECDB_RESCHEDULE_DELAY": "2m"}, 5 * time.Second},
	} {
		var stderr bytes.Buffer
		e := env{stdout: &bytes.Buffer{}, stderr: &stderr, getenv: func(k string) string { return tc.env[k] }}
		cfg, err := parseServeConfig("serve", serveSynopsis, tc.args, e)
		if err != nil || cfg.RescheduleDelay != tc.want {
			t.Errorf("%v %v: got %s (%v %s), want %s", tc.args, tc.env, cfg.RescheduleDelay, err, stderr.String(), tc.want)
		}
	}
	var stderr bytes.Buffer
	e := env{stdout: &bytes.Buffer{}, stderr: &stderr, getenv: func(string) string { return "" }}
	if _, err := parseServeConfig("serve", serveSynopsis, []string{"--reschedule-delay", "0s"}, e); err == nil {
		t.Error("--reschedule-delay 0s: accepted, want a usage error")
	}
	var stdout bytes.Buffer
	e = env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	parseServeConfig("serve", serveSynopsis, []string{"--help"}, e)
	if !strings.Contains(stdout.String(), "--reschedule-delay") || !strings.Contains(stdout.String(), "EXECDB_RESCHEDULE_DELAY") {
		t.Errorf("serve --help does not document the setting:\n%s", stdout.String())
	}
}

// sharedDatabases open a second backend on the database of the first, as a second serve
// process would.
var sharedDatabases = map[string]func(t *testing.T) (storage.Backend, storage.Backend){
	"sqlite": func(t *testing.T) (storage.Backend, storage.Backend) {
		path := filepath.Join(t.TempDir(), "execdb.db")
		return testenv.SQLite(t, path), testenv.SQLite(t, path)
	},
	"postgres": func(t *testing.T) (storage.Backend, storage.Backend) {
		url := testenv.PostgresSchema(t)
		return testenv.Postgres(t, url), testenv.Postgres(t, url)
	},
}

// TestWatchdogTwoProcesses runs the watchdog and the automatic rescheduler of two "processes"
// (each its own backend, connection pool, store and metrics) on one database, sweeping every
// 20ms with timeouts of 300ms: every verdict, decision and successor happens exactly once, and
// the two processes' metrics add up to exactly that.
func TestWatchdogTwoProcesses(t *testing.T) {
	for name, open := range sharedDatabases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			b1, b2 := open(t)
			cfg := serveConfig{RunTimeout: 300 * time.Millisecond, ScheduleTimeout: 300 * time.Millisecond,
				AutoReschedule: 2, RescheduleDelay: 100 * time.Millisecond}
			ctx, cancel := context.WithCancel(context.Background())
			var registries []*prometheus.Registry
			var waits []func()
			var stores []*jobs.Service
			for _, b := range []storage.Backend{b1, b2} {
				reg := prometheus.NewRegistry()
				auto := statemachine.AutoPolicy{Limit: cfg.AutoReschedule, FirstDelay: cfg.RescheduleDelay}
				store := jobs.New(b, jobs.Config{AutoReschedule: &auto, OnCommit: server.CommitHook(zap.NewNop(), metrics.NewJobs(reg))})
				stores = append(stores, store)
				registries = append(registries, reg)
				waits = append(waits, startWatchdog(ctx, watchdogDeps{cfg: cfg, store: store, log: zap.NewNop(),
					registry: reg, interval: 20 * time.Millisecond}))
			}
			stopped := false
			stop := func() {
				if !stopped {
					cancel()
					for _, w := range waits {
						w()
					}
					stopped = true
				}
			}
			t.Cleanup(stop)

			const n = 12
			for i := range n {
				res, err := stores[i%2].Create(ctx, statemachine.NewJob{TaskName: "rpmlint", Item: fmt.Sprint("pkg-", i), ItemType: "koji_build"},
					statemachine.Meta{Origin: statemachine.OriginHTTP})
				if err != nil {
					t.Fatal(err)
				}
				if i%2 == 0 {
					if _, err := stores[1].Apply(ctx, res.Job.UUID, statemachine.Event{Meta: statemachine.Meta{Origin: statemachine.OriginHTTP}, Start: &statemachine.Start{}}); err != nil {
						t.Fatal(err)
					}
				}
			}
			// Each job: crashed by the watchdog, rescheduled after 100ms, its successor (attempt 2
			// of 2) never started, crashed too, and declined.
			deadline := time.Now().Add(20 * time.Second)
			var all []statemachine.Job
			for {
				var err error
				all, _, err = stores[0].Search(ctx, storage.Filter{}, storage.Page{Limit: 100})
				if err != nil {
					t.Fatal(err)
				}
				done := len(all) == 2*n
				for _, j := range all {
					done = done && j.State == statemachine.Crashed
				}
				if done && declinedAll(t, b1, all) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not settled after 20s: %d jobs", len(all))
				}
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(200 * time.Millisecond) // a few more sweeps that must change nothing
			stop()

			ctx = context.Background()
			all, _, err := stores[0].Search(ctx, storage.Filter{}, storage.Page{Limit: 100})
			if err != nil {
				t.Fatal(err)
			}
			attempts := map[int]int{}
			for _, j := range all {
				attempts[j.Attempt]++
				hist, err := b1.History(ctx, j.UUID)
				if err != nil {
					t.Fatal(err)
				}
				count := map[string]int{}
				for _, h := range hist {
					count[string(h.Kind)+":"+string(h.Verdict)+":"+string(h.Origin)]++
				}
				if count["end:applied:watchdog"] != 1 || count["auto_reschedule:applied:reschedule"]+count["auto_reschedule:declined:reschedule"] != 1 {
					t.Errorf("job %s (attempt %d): history %v, want one watchdog crash and one decision", j.UUID, j.Attempt, count)
				}
				if j.Attempt == 1 && (count["reschedule:applied:reschedule"] != 1 || j.RescheduledTo == nil) {
					t.Errorf("job %s: history %v, want one automatic reschedule", j.UUID, count)
				}
				if j.Attempt == 2 && j.RescheduledTo != nil {
					t.Errorf("job %s: attempt 2 of 2 was rescheduled", j.UUID)
				}
			}
			if attempts[1] != n || attempts[2] != n || len(attempts) != 2 {
				t.Errorf("got jobs by attempt %v, want %d of attempts 1 and 2", attempts, n)
			}
			sum := func(name string, labels ...string) float64 {
				total := 0.0
				for _, reg := range registries {
					families, _ := reg.Gather()
					for _, f := range families {
						if f.GetName() != name {
							continue
						}
						for _, m := range f.GetMetric() {
							match := true
							for i := 0; i+1 < len(labels); i += 2 {
								found := false
								for _, l := range m.GetLabel() {
									found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
								}
								match = match && found
							}
							if match {
								total += m.GetCounter().GetValue()
							}
						}
					}
				}
				return total
			}
			if got := sum("execdb_events_total", "source", "watchdog", "kind", "end", "verdict", "applied"); got != 2*n {
				t.Errorf("metrics: %v watchdog crashes counted, want %d", got, 2*n)
			}
			if got := sum("execdb_events_total", "source", "reschedule", "kind", "create"); got != n {
				t.Errorf("metrics: %v automatic successors counted, want %d", got, n)
			}
			if got := sum("execdb_auto_reschedule_decisions_total", "decision", "planned"); got != n {
				t.Errorf("metrics: %v planned decisions, want %d", got, n)
			}
			if got := sum("execdb_auto_reschedule_decisions_total", "decision", "attempt_limit"); got != n {
				t.Errorf("metrics: %v attempt-limit decisions, want %d", got, n)
			}
			if got := sum("execdb_sweep_errors_total"); got != 0 {
				t.Errorf("metrics: %v failed sweeps", got)
			}
		})
	}
}

// declinedAll reports whether every attempt-2 job has its (declined) decision.
func declinedAll(t *testing.T, b storage.Backend, jobs []statemachine.Job) bool {
	t.Helper()
	for _, j := range jobs {
		if j.Attempt != 2 {
			continue
		}
		hist, err := b.History(context.Background(), j.UUID)
		if err != nil {
			t.Fatal(err)
		}
		decided := false
		for _, h := range hist {
			decided = decided || h.Kind == statemachine.EventAutoReschedule
		}
		if !decided {
			return false
		}
	}
	return true
}

// TestTwoServersEndToEnd starts two `execdb serve` processes on one database with timeouts of
// a second and automatic rescheduling on, leaves jobs alone and counts: every job crashed by
// the watchdog exactly once, one successor each, none past the attempt limit.
func TestTwoServersEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	for name, db := range databases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dsn := db(t)
			flags := []string{"--run-timeout", "1s", "--schedule-timeout", "1s", "--auto-reschedule", "2", "--reschedule-delay", "1s"}
			a := startServer(t, dsn, flags...)
			b := startServer(t, dsn, flags...)
			const jobs = 6
			for i := range jobs {
				status, body := httpDo(t, "POST", a.url+"/api/v1/jobs", fmt.Sprintf(`{"taskname":"rpmlint","item":"pkg-%d","item_type":"koji_build"}`, i))
				if status != 201 {
					t.Fatalf("create: %d %s", status, body)
				}
				if i%2 == 0 {
					var j statemachine.Job
					json.Unmarshal([]byte(body), &j)
					if status, body := httpDo(t, "POST", b.url+j.Href()+"/start", `{}`); status != 200 {
						t.Fatalf("start: %d %s", status, body)
					}
				}
			}
			var all []statemachine.Job
			deadline := time.Now().Add(60 * time.Second)
			for {
				_, body := httpDo(t, "GET", b.url+"/api/v1/jobs?limit=100", "")
				var page struct {
					Data []statemachine.Job `json:"data"`
				}
				json.Unmarshal([]byte(body), &page)
				all = page.Data
				settled := len(all) == 2*jobs
				for _, j := range all {
					settled = settled && j.State == statemachine.Crashed
					if j.Attempt == 2 && settled {
						settled = eventCount(t, a.url, j, "auto_reschedule") == 1
					}
				}
				if settled {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not settled after 60s: %d jobs\nserver a:\n%s\nserver b:\n%s", len(all), a.logs, b.logs)
				}
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(1100 * time.Millisecond) // another sweep, which must change nothing
			_, body := httpDo(t, "GET", a.url+"/api/v1/jobs?limit=100", "")
			var page struct {
				Data []statemachine.Job `json:"data"`
			}
			json.Unmarshal([]byte(body), &page)
			if len(page.Data) != 2*jobs {
				t.Fatalf("got %d jobs, want %d", len(page.Data), 2*jobs)
			}
			successors := 0
			for _, j := range page.Data {
				if j.Crash == nil || j.Crash.KeyVals["detected_by"][0] != "watchdog" {
					t.Errorf("job %s: crash %+v, want the watchdog's", j.UUID, j.Crash)
				}
				if n := eventCount(t, b.url, j, "end"); n != 1 {
					t.Errorf("job %s: %d end events, want 1", j.UUID, n)
				}
				if j.RescheduledFrom != nil {
					successors++
				}
				if j.Attempt > 2 || j.Attempt == 2 && j.RescheduledTo != nil {
					t.Errorf("job %s: attempt %d rescheduled to %v, beyond the limit", j.UUID, j.Attempt, j.RescheduledTo)
				}
			}
			if successors != jobs {
				t.Errorf("got %d successors, want %d", successors, jobs)
			}
		})
	}
}

func eventCount(t *testing.T, base string, j statemachine.Job, kind string) int {
	t.Helper()
	_, body := httpDo(t, "GET", base+j.Href()+"/events", "")
	var events struct {
		Data []storage.HistoryEntry `json:"data"`
	}
	json.Unmarshal([]byte(body), &events)
	n := 0
	for _, e := range events.Data {
		if string(e.Kind) == kind {
			n++
		}
	}
	return n
}

// rescheduleServer is a real API on SQLite for the command's tests.
func rescheduleServer(t *testing.T, names map[string]string) (*jobs.Service, map[string]string) {
	t.Helper()
	store := jobs.New(testenv.SQLite(t, ""), jobs.Config{})
	tokens := map[string]api.Token{}
	for token, name := range names {
		tokens[token] = api.Token{Name: name}
	}
	srv := httptest.NewServer(api.New(store, api.Config{Tokens: tokens}).Handler())
	t.Cleanup(srv.Close)
	vars := map[string]string{"EXECDB_SERVER": srv.URL, "EXECDB_TIMEOUT": "10s"}
	for token := range tokens {
		vars["EXECDB_TOKEN"] = token
	}
	return store, vars
}

type execdbRun struct {
	code           int
	stdout, stderr string
}

func runExecdb(vars map[string]string, args ...string) execdbRun {
	var stdout, stderr bytes.Buffer
	e := env{stdout: &stdout, stderr: &stderr, getenv: func(k string) string { return vars[k] }}
	code := run(context.Background(), args, e)
	return execdbRun{code, stdout.String(), stderr.String()}
}

func (r execdbRun) want(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

func crashedVia(t *testing.T, s *jobs.Service, item string, cause statemachine.Cause, fatal bool) statemachine.Job {
	t.Helper()
	ctx := context.Background()
	res, err := s.Create(ctx, statemachine.NewJob{TaskName: "rpmlint", Item: item, ItemType: "koji_build"}, statemachine.Meta{Origin: statemachine.OriginHTTP})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Apply(ctx, res.Job.UUID, statemachine.Event{Meta: statemachine.Meta{Origin: statemachine.OriginHTTP},
		End: &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Cause: cause, Fatal: fatal,
			KeyVals: statemachine.KeyVals{"reason": {"TIMED_OUT"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return r.Job
}

func TestRescheduleCommand(t *testing.T) {
	t.Parallel()
	store, vars := rescheduleServer(t, map[string]string{"s3cret": "ops"})
	plain := crashedVia(t, store, "foo-1.0-1.fc45", statemachine.CauseMinion, false)
	fatal := crashedVia(t, store, "bar-2.0-1.fc45", statemachine.CauseMinion, true)
	crashedVia(t, store, "baz-3.0-1.fc45", statemachine.CauseNetwork, false)

	r := runExecdb(vars, "reschedule", "state=CRASHED", "--filter", "cause=minion", "kv.reason=TIMED_OUT", "--dry-run")
	r.want(t, exitOK)
	for _, want := range []string{"Dry run: nothing was changed.", "would reschedule", plain.UUID.String(), fatal.UUID.String(),
		"fatal crash (use --force)", "2 matched: 1 would be rescheduled, 1 skipped (1 fatal)."} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, r.stdout)
		}
	}
	if j, _ := store.Job(context.Background(), plain.UUID); j.RescheduledTo != nil {
		t.Fatal("--dry-run rescheduled")
	}

	r = runExecdb(vars, "reschedule", "state=CRASHED", "cause=minion", "--reason", "minion outage")
	r.want(t, exitOK)
	j, _ := store.Job(context.Background(), plain.UUID)
	if j.RescheduledTo == nil || !strings.Contains(r.stdout, j.RescheduledTo.String()) || !strings.Contains(r.stdout, "1 rescheduled, 1 skipped (1 fatal)") {
		t.Errorf("reschedule output:\n%s", r.stdout)
	}
	hist, _ := store.History(context.Background(), plain.UUID)
	last := hist[len(hist)-1]
	if last.Kind != statemachine.EventReschedule || last.Actor != "ops" || !strings.Contains(string(last.Detail), `"reason":"minion outage"`) {
		t.Errorf("history: got %+v", last)
	}

	r = runExecdb(vars, "reschedule", "state=CRASHED", "cause=minion", "--force", "--json")
	r.want(t, exitOK)
	var answer bulkAnswer
	if err := json.Unmarshal([]byte(r.stdout), &answer); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	outcomes := map[uuid.UUID]string{}
	for _, it := range answer.Data {
		outcomes[it.UUID] = it.Outcome + "/" + it.Reason
	}
	if outcomes[plain.UUID] != "skipped/already_rescheduled" || outcomes[fatal.UUID] != "rescheduled/" || !answer.Force {
		t.Errorf("--force --json: got %s", r.stdout)
	}

	r = runExecdb(vars, "reschedule", "taskname=nothing")
	r.want(t, exitOK)
	if !strings.Contains(r.stdout, "0 matched: 0 rescheduled, 0 skipped.") {
		t.Errorf("nothing matched: got %q", r.stdout)
	}
}

func TestRescheduleCommandErrors(t *testing.T) {
	t.Parallel()
	_, vars := rescheduleServer(t, map[string]string{"s3cret": "ops"})
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"reschedule"}, exitUsage, "give at least one filter"},
		{[]string{"reschedule", "CRASHED"}, exitUsage, `"CRASHED" is not KEY=VALUE`},
		{[]string{"reschedule", "state=CRASHED", "--bogus"}, exitUsage, "bogus"},
		{[]string{"reschedule", "colour=red"}, exitRefused, "filter.colour"},
		{[]string{"reschedule", "state=DONE"}, exitRefused, "filter.state"},
		{[]string{"reschedule", "state=CRASHED", "--token", "wrong"}, exitRefused, "403"},
		{[]string{"reschedule", "state=CRASHED", "--server", "http://127.0.0.1:1"}, exitRefused, "execdb reschedule:"},
	} {
		r := runExecdb(vars, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%v: got %d %q, want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.stderr)
		}
	}
	r := runExecdb(vars, "reschedule", "colour=red", "--json")
	r.want(t, exitRefused)
	if !strings.Contains(r.stdout, `"field":"filter.colour"`) {
		t.Errorf("--json refusal: stdout %q, want the error body", r.stdout)
	}
	r = runExecdb(vars, "reschedule", "--help")
	r.want(t, exitOK)
	for _, want := range []string{"Usage: execdb reschedule", "--dry-run", "--force", "--reason", "kv.<key>", "EXECDB_SERVER", "Exit status",
		"retries", "already rescheduled"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--help lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestPrintBulkReasons(t *testing.T) {
	blocked, done, succ := uuid.New(), uuid.New(), uuid.New()
	var out bytes.Buffer
	printBulk(&out, bulkAnswer{Matched: 2, Skipped: 2, Data: []bulkItem{
		{UUID: blocked, TaskName: "rpmlint", State: "CRASHED", Attempt: 1, Outcome: "skipped", Reason: "successor_request_id_taken"},
		{UUID: done, TaskName: "rpmlint", State: "CRASHED", Attempt: 1, Outcome: "skipped", Reason: "already_rescheduled", Successor: &succ},
	}})
	for _, want := range []string{
		"request id reschedule:" + blocked.String() + " is taken by another job",
		"already rescheduled as " + succ.String(),
		"2 matched: 0 rescheduled, 2 skipped (1 already rescheduled, 1 successor request id taken).",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
