package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

// forEachBackendStore is forEachBackend with the store at hand and its clock under the test's
// control, for sweeps the test runs itself.
func forEachBackendStore(t *testing.T, cfg api.Config, fn func(t *testing.T, c *client, s *jobs.Service, clock *testClock)) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			clock := &testClock{now: time.Now().UTC().Truncate(time.Second)}
			cfg := cfg
			cfg.Registry = prometheus.NewRegistry()
			store := jobs.New(open(t), jobs.Config{Now: clock.Now, OnCommit: metrics.NewJobs(cfg.Registry).Commit})
			srv := httptest.NewServer(api.New(store, cfg).Handler())
			t.Cleanup(srv.Close)
			fn(t, &client{t: t, base: srv.URL}, store, clock)
		})
	}
}

type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func (c *client) crashed(body, crash string) statemachine.Job {
	c.t.Helper()
	job := c.create(body)
	r := c.do("POST", job.Href()+"/finish", `{"state":"CRASHED","crash":`+crash+`}`)
	expectStatus(c.t, r, 200)
	return r.job(c.t)
}

func (c *client) events(path string) []storage.HistoryEntry {
	c.t.Helper()
	r := c.do("GET", path+"/events", "")
	expectStatus(c.t, r, 200)
	var events struct {
		Data []storage.HistoryEntry `json:"data"`
	}
	if err := json.Unmarshal(r.body, &events); err != nil {
		c.t.Fatal(err)
	}
	return events.Data
}

func TestRescheduleOne(t *testing.T) {
	cfg := api.Config{Tokens: map[string]api.Token{"s3cret": {Name: "alice"}}}
	forEachBackend(t, cfg, func(t *testing.T, c *client) {
		c.token = "s3cret"
		parent := c.crashed(trigger, `{"notify":"taskotron","cause":"minion","keyvals":{"step":"MINION_CREATION"}}`)
		r := c.do("POST", parent.Href()+"/reschedule", `{"reason":"minion host rebooted"}`)
		expectStatus(t, r, 201)
		succ := r.job(t)
		if r.header.Get("Location") != succ.Href() {
			t.Errorf("Location: got %q, want %q", r.header.Get("Location"), succ.Href())
		}
		if succ.State != statemachine.Scheduled || succ.Attempt != 2 || succ.RescheduledFrom == nil || *succ.RescheduledFrom != parent.UUID ||
			succ.TaskName != parent.TaskName || succ.Item != parent.Item || fmt.Sprint(succ.Data) != fmt.Sprint(parent.Data) {
			t.Errorf("successor: got %s", r.body)
		}
		got := c.do("GET", parent.Href(), "").job(t)
		if got.RescheduledTo == nil || *got.RescheduledTo != succ.UUID || got.State != statemachine.Crashed {
			t.Errorf("parent: got %+v, want rescheduled_to %s", got, succ.UUID)
		}
		again := c.do("POST", parent.Href()+"/reschedule", ``) // an empty body is allowed
		expectStatus(t, again, 200)
		if again.job(t).UUID != succ.UUID {
			t.Errorf("repeat: got %s, want the successor %s", again.body, succ.UUID)
		}
		pe := c.events(parent.Href())
		last := pe[len(pe)-1]
		if len(pe) != 4 || pe[2].Kind != statemachine.EventReschedule || pe[2].Verdict != statemachine.Applied || pe[2].Actor != "alice" ||
			last.Verdict != statemachine.Duplicate || !strings.Contains(string(pe[2].Detail), `"reason":"minion host rebooted"`) {
			t.Errorf("parent events: got %+v", pe)
		}
		se := c.events(succ.Href())
		if len(se) != 1 || se[0].Kind != statemachine.EventCreate || se[0].Actor != "alice" || !strings.Contains(string(se[0].Detail), `"why":"manual"`) {
			t.Errorf("successor events: got %+v", se)
		}

		fatal := c.crashed(trigger, `{"notify":"task","cause":"task","fatal":true}`)
		r = c.do("POST", fatal.Href()+"/reschedule", `{}`)
		expectStatus(t, r, 409)
		if e := r.err(t); e.Error.Field != "force" || e.Job == nil || e.Job.UUID != fatal.UUID || !strings.Contains(e.Error.Message, "fatal") {
			t.Errorf("fatal without force: got %s", r.body)
		}
		r = c.do("POST", fatal.Href()+"/reschedule", `{"force":true}`)
		expectStatus(t, r, 201)

		scheduled := c.create(trigger)
		running := c.create(trigger)
		expectStatus(t, c.do("POST", running.Href()+"/start", ``), 200)
		finished := c.create(trigger)
		expectStatus(t, c.do("POST", finished.Href()+"/finish", `{"state":"FINISHED"}`), 200)
		for _, j := range []statemachine.Job{scheduled, running, finished} {
			r := c.do("POST", j.Href()+"/reschedule", `{"force":true}`)
			expectStatus(t, r, 409)
			if e := r.err(t); e.Job == nil || e.Job.UUID != j.UUID || !strings.Contains(e.Error.Message, "only a CRASHED job") {
				t.Errorf("reschedule of a %s job: got %s", e.Job.State, r.body)
			}
		}

		for _, tc := range []struct {
			path, body string
			status     int
			field      string
		}{
			{parent.Href() + "/reschedule", `{"forse":true}`, 400, "forse"},
			{parent.Href() + "/reschedule", `{"force":"yes"}`, 400, "force"},
			{parent.Href() + "/reschedule", `{"reason":` + fmt.Sprintf("%q", strings.Repeat("x", 1025)) + `}`, 400, "reason"},
			{parent.Href() + "/reschedule", `[]`, 400, ""},
			{"/api/v1/jobs/nope/reschedule", `{}`, 400, "uuid"},
			{"/api/v1/jobs/" + uuid.NewString() + "/reschedule", `{}`, 404, ""},
		} {
			r := c.do("POST", tc.path, tc.body)
			expectStatus(t, r, tc.status)
			if e := r.err(t); e.Error.Field != tc.field {
				t.Errorf("%s %s: got field %q, want %q", tc.path, tc.body, e.Error.Field, tc.field)
			}
		}
		c.token = ""
		expectStatus(t, c.do("POST", parent.Href()+"/reschedule", `{}`), 401)

		m := string(c.do("GET", "/metrics", "").body)
		// 5 jobs made by hand, 2 successors.
		if !strings.Contains(m, `execdb_events_total{kind="create",source="http",verdict="applied"} 7`) {
			t.Errorf("metrics: successors are not counted as creates:\n%s", grep(m, "execdb_events_total"))
		}
	})
}

func grep(text, prefix string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, prefix) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

type bulkAnswer struct {
	DryRun      bool `json:"dry_run"`
	Force       bool `json:"force"`
	Matched     int  `json:"matched"`
	Rescheduled int  `json:"rescheduled"`
	Skipped     int  `json:"skipped"`
	Data        []struct {
		UUID      uuid.UUID  `json:"uuid"`
		Outcome   string     `json:"outcome"`
		Reason    string     `json:"reason"`
		Successor *uuid.UUID `json:"successor"`
		State     string     `json:"state"`
	} `json:"data"`
}

func (b bulkAnswer) outcomes() map[uuid.UUID]string {
	out := map[uuid.UUID]string{}
	for _, d := range b.Data {
		out[d.UUID] = d.Outcome + "/" + d.Reason + "/" + fmt.Sprint(d.Successor != nil)
	}
	return out
}

func TestRescheduleBulk(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		timedOut := c.crashed(trigger, `{"cause":"minion","keyvals":{"reason":"TIMED_OUT"}}`)
		timedOut2 := c.crashed(trigger, `{"cause":"minion","keyvals":{"reason":"TIMED_OUT"}}`)
		fatal := c.crashed(trigger, `{"cause":"minion","fatal":true,"keyvals":{"reason":"TIMED_OUT"}}`)
		other := c.crashed(trigger, `{"cause":"minion","keyvals":{"reason":"BACKING_STORE"}}`)
		network := c.crashed(trigger, `{"cause":"network"}`)
		expectStatus(t, c.do("POST", timedOut2.Href()+"/reschedule", `{}`), 201)
		finished := c.create(trigger)
		expectStatus(t, c.do("POST", finished.Href()+"/finish", `{"state":"FINISHED"}`), 200)

		post := func(body string) bulkAnswer {
			t.Helper()
			r := c.do("POST", "/api/v1/reschedule", body)
			expectStatus(t, r, 200)
			var a bulkAnswer
			if err := json.Unmarshal(r.body, &a); err != nil {
				t.Fatal(err)
			}
			return a
		}
		filter := `{"state":"CRASHED","cause":"minion","kv.reason":"TIMED_OUT","since":"30d"}`
		dry := post(`{"filter":` + filter + `,"dry_run":true}`)
		want := map[uuid.UUID]string{
			timedOut.UUID:  "would_reschedule//false",
			timedOut2.UUID: "skipped/already_rescheduled/true",
			fatal.UUID:     "skipped/fatal/false",
		}
		if got := dry.outcomes(); fmt.Sprint(got) != fmt.Sprint(want) || !dry.DryRun || dry.Matched != 3 || dry.Rescheduled != 1 || dry.Skipped != 2 {
			t.Errorf("dry run: got %+v, want %v", dry, want)
		}
		if j := c.do("GET", timedOut.Href(), "").job(t); j.RescheduledTo != nil {
			t.Fatal("a dry run rescheduled a job")
		}
		real := post(`{"filter":` + filter + `}`)
		want[timedOut.UUID] = "rescheduled//true"
		if got := real.outcomes(); fmt.Sprint(got) != fmt.Sprint(want) || real.DryRun || real.Rescheduled != 1 {
			t.Errorf("bulk: got %+v, want %v", real, want)
		}
		if j := c.do("GET", timedOut.Href(), "").job(t); j.RescheduledTo == nil {
			t.Error("bulk did not reschedule the job")
		}
		// Lists, booleans and force; a successor (SCHEDULED) is not crashed.
		forced := post(`{"filter":{"cause":["minion","network"],"fatal":true,"state":"CRASHED"},"force":true,"reason":"known flake"}`)
		if got := forced.outcomes(); len(got) != 1 || got[fatal.UUID] != "rescheduled//true" {
			t.Errorf("forced: got %v", got)
		}
		all := post(`{"filter":{"taskname":"rpmlint"},"dry_run":true}`)
		got := all.outcomes()
		if got[other.UUID] != "would_reschedule//false" || got[network.UUID] != "would_reschedule//false" || got[finished.UUID] != "skipped/not_crashed/false" {
			t.Errorf("everything: got %v", got)
		}

		for _, tc := range []struct{ body, field string }{
			{``, ""},
			{`{"dry_run":true}`, "filter"},
			{`{"filter":{}}`, "filter"},
			{`{"filter":"state=CRASHED"}`, "filter"},
			{`{"filter":{"colour":"red"}}`, "filter.colour"},
			{`{"filter":{"state":"DONE"}}`, "filter.state"},
			{`{"filter":{"state":[]}}`, "filter.state"},
			{`{"filter":{"state":null}}`, "filter.state"},
			{`{"filter":{"state":["CRASHED",null]}}`, "filter.state"},
			{`{"filter":null}`, "filter"},
			{`{"filter":{"state":{"a":1}}}`, "filter.state"},
			{`{"filter":{"since":"yesterday"}}`, "filter.since"},
			{`{"filter":{"state":"CRASHED","limit":"5"}}`, "filter.limit"},
			{`{"filter":{"state":"CRASHED"},"dryrun":true}`, "dryrun"},
			{`{"filter":{"state":"CRASHED"},"dry_run":"yes"}`, "dry_run"},
		} {
			r := c.do("POST", "/api/v1/reschedule", tc.body)
			expectStatus(t, r, 400)
			if e := r.err(t); e.Error.Field != tc.field {
				t.Errorf("%s: got field %q (%s), want %q", tc.body, e.Error.Field, e.Error.Message, tc.field)
			}
		}
	})
}

func TestRetryStats(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		for i := range 4 {
			j := c.crashed(trigger, `{"cause":"minion","keyvals":{"reason":"TIMED_OUT"}}`)
			r := c.do("POST", j.Href()+"/reschedule", `{}`)
			expectStatus(t, r, 201)
			succ := r.job(t)
			switch i {
			case 0, 1:
				expectStatus(t, c.do("POST", succ.Href()+"/finish", `{"state":"FINISHED"}`), 200)
			case 2:
				expectStatus(t, c.do("POST", succ.Href()+"/finish", `{"state":"CRASHED","crash":{"cause":"minion"}}`), 200)
			}
		}
		j := c.crashed(trigger, `{"cause":"network"}`)
		succ := c.do("POST", j.Href()+"/reschedule", `{}`).job(t)
		expectStatus(t, c.do("POST", succ.Href()+"/finish", `{"state":"CRASHED","crash":{"cause":"network"}}`), 200)
		c.crashed(trigger, `{"cause":"task"}`) // never rescheduled

		r := c.do("GET", "/api/v1/stats/retries?state=CRASHED&since=30d&group_by=cause,kv.reason", "")
		expectStatus(t, r, 200)
		var stats struct {
			Total   int64    `json:"total"`
			GroupBy []string `json:"group_by"`
			Data    []struct {
				Group       map[string]*string `json:"group"`
				Rescheduled int64              `json:"rescheduled"`
				Finished    int64              `json:"finished"`
				Crashed     int64              `json:"crashed"`
				Pending     int64              `json:"pending"`
				SuccessRate *float64           `json:"success_rate"`
			} `json:"data"`
		}
		if err := json.Unmarshal(r.body, &stats); err != nil {
			t.Fatal(err)
		}
		if stats.Total != 5 || len(stats.Data) != 2 || fmt.Sprint(stats.GroupBy) != "[cause kv.reason]" {
			t.Fatalf("got %s, want 5 rescheduled crashes in 2 groups", r.body)
		}
		m, n := stats.Data[0], stats.Data[1]
		if *m.Group["cause"] != "minion" || *m.Group["kv.reason"] != "TIMED_OUT" || m.Rescheduled != 4 || m.Finished != 2 || m.Crashed != 1 ||
			m.Pending != 1 || m.SuccessRate == nil || *m.SuccessRate != 2.0/3 {
			t.Errorf("minion row: got %s", r.body)
		}
		if *n.Group["cause"] != "network" || n.Group["kv.reason"] != nil || n.Rescheduled != 1 || n.Crashed != 1 || *n.SuccessRate != 0 {
			t.Errorf("network row: got %s", r.body)
		}
		r = c.do("GET", "/api/v1/stats/retries?cause=task", "")
		expectStatus(t, r, 200)
		if !strings.Contains(string(r.body), `"total":0`) || !strings.Contains(string(r.body), `"data":[]`) {
			t.Errorf("nothing rescheduled: got %s", r.body)
		}
		for path, field := range map[string]string{
			"/api/v1/stats/retries?group_by=colour": "group_by",
			"/api/v1/stats/retries?bucket=month":    "bucket",
			"/api/v1/stats/retries?colour=red":      "colour",
		} {
			r := c.do("GET", path, "")
			expectStatus(t, r, 400)
			if e := r.err(t); e.Error.Field != field {
				t.Errorf("%s: got field %q, want %q", path, e.Error.Field, field)
			}
		}
	})
}

// TestWatchdogThenRealEnd: a job the watchdog crashed answers the runner's own end, when it
// finally comes, with 409 and the job as the watchdog left it; the report is kept as a conflict.
func TestWatchdogThenRealEnd(t *testing.T) {
	forEachBackendStore(t, api.Config{}, func(t *testing.T, c *client, s *jobs.Service, clock *testClock) {
		running := c.create(trigger)
		expectStatus(t, c.do("POST", running.Href()+"/start", `{}`), 200)
		scheduled := c.create(trigger)
		clock.Advance(2 * time.Hour)
		crashed, err := s.Watchdog(context.Background(), statemachine.Timeouts{Run: time.Hour, Schedule: time.Hour})
		if err != nil || len(crashed) != 2 {
			t.Fatalf("watchdog: got %d crashes (%v), want 2", len(crashed), err)
		}
		for _, tc := range []struct {
			job    statemachine.Job
			reason string
		}{{running, "TIMED_OUT"}, {scheduled, "NEVER_STARTED"}} {
			job, reason := tc.job, tc.reason
			for _, body := range []string{`{"state":"FINISHED"}`, `{"state":"CRASHED","crash":{"notify":"taskotron","cause":"unknown"}}`} {
				r := c.do("POST", job.Href()+"/finish", body)
				expectStatus(t, r, 409)
				e := r.err(t)
				if e.Job == nil || e.Job.State != statemachine.Crashed || e.Job.Crash.KeyVals["reason"][0] != reason ||
					e.Job.Crash.KeyVals["detected_by"][0] != "watchdog" {
					t.Errorf("end after the watchdog: got %s", r.body)
				}
			}
			ev := c.events(job.Href())
			var verdicts []string
			for _, e := range ev {
				verdicts = append(verdicts, string(e.Origin)+":"+string(e.Verdict))
			}
			if got := strings.Join(verdicts[len(verdicts)-3:], ","); got != "watchdog:applied,http:conflict,http:conflict" {
				t.Errorf("history: got %s", strings.Join(verdicts, ","))
			}
		}
		// A late start is late, as after any end.
		expectStatus(t, c.do("POST", scheduled.Href()+"/start", `{}`), 409)
	})
}

// TestAutoRescheduleOverHTTP: what the automatic rescheduler did shows in the API.
func TestAutoRescheduleOverHTTP(t *testing.T) {
	forEachBackendStore(t, api.Config{}, func(t *testing.T, c *client, s *jobs.Service, clock *testClock) {
		ctx := context.Background()
		job := c.crashed(trigger, `{"cause":"network"}`)
		p := statemachine.AutoPolicy{Limit: 2, FirstDelay: 30 * time.Second}
		if d, err := s.DecideAutoReschedules(ctx, p); err != nil || len(d) != 1 {
			t.Fatalf("decide: got %d (%v)", len(d), err)
		}
		clock.Advance(30 * time.Second)
		r, err := s.RescheduleDue(ctx)
		if err != nil || len(r) != 1 {
			t.Fatalf("due: got %d (%v)", len(r), err)
		}
		succ := c.do("GET", job.Href(), "").job(t).RescheduledTo
		if succ == nil || *succ != r[0].Successor.UUID {
			t.Fatalf("rescheduled_to: got %v, want %s", succ, r[0].Successor.UUID)
		}
		ev := c.events(job.Href())
		var kinds []string
		for _, e := range ev {
			kinds = append(kinds, string(e.Kind)+":"+string(e.Verdict)+":"+string(e.Origin))
		}
		if got := strings.Join(kinds, ","); got != "create:applied:http,end:applied:http,auto_reschedule:applied:reschedule,reschedule:applied:reschedule" {
			t.Errorf("history: got %s", got)
		}
		// A manual reschedule afterwards finds the automatic successor.
		again := c.do("POST", job.Href()+"/reschedule", `{}`)
		expectStatus(t, again, 200)
		if again.job(t).UUID != *succ {
			t.Errorf("manual after automatic: got %s", again.body)
		}
	})
}
