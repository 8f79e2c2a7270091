package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/metrics"
	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/prometheus/client_golang/prometheus"
)

// backends opens a fresh migrated backend of each kind; every HTTP test runs on both.
var backends = map[string]func(t *testing.T) storage.Backend{
	"sqlite":   func(t *testing.T) storage.Backend { return testenv.SQLite(t, "") },
	"postgres": func(t *testing.T) storage.Backend { return testenv.Postgres(t, "") },
}

// forEachBackend runs fn against a server on each backend.
func forEachBackend(t *testing.T, cfg api.Config, fn func(t *testing.T, c *client)) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cfg := cfg
			cfg.Registry = prometheus.NewRegistry()
			// As serve does: the service's commit hook counts the job metrics /metrics shows.
			store := jobs.New(open(t), jobs.Config{OnCommit: metrics.NewJobs(cfg.Registry).Commit})
			srv := httptest.NewServer(api.New(store, cfg).Handler())
			t.Cleanup(srv.Close)
			fn(t, &client{t: t, base: srv.URL, store: store})
		})
	}
}

type client struct {
	t     *testing.T
	base  string
	token string
	store *jobs.Service // the server's
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) job(t *testing.T) statemachine.Job {
	t.Helper()
	var j statemachine.Job
	if err := json.Unmarshal(r.body, &j); err != nil {
		t.Fatalf("decode job from %s: %v", r.body, err)
	}
	return j
}

type apiError struct {
	Error struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
	Job *statemachine.Job `json:"job"`
}

func (r response) err(t *testing.T) apiError {
	t.Helper()
	var e apiError
	if err := json.Unmarshal(r.body, &e); err != nil || e.Error.Status != r.status {
		t.Fatalf("error body %s (%v): want {\"error\":{\"status\":%d,…}}", r.body, err, r.status)
	}
	return e
}

func (c *client) do(method, path, body string, headers ...string) response {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path, strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func (c *client) create(body string) statemachine.Job {
	c.t.Helper()
	r := c.do("POST", "/api/v1/jobs", body)
	if r.status != http.StatusCreated {
		c.t.Fatalf("create: got %d %s, want 201", r.status, r.body)
	}
	return r.job(c.t)
}

func expectStatus(t *testing.T, r response, want int) {
	t.Helper()
	if r.status != want {
		t.Fatalf("got status %d %s, want %d", r.status, r.body, want)
	}
}

const trigger = `{"taskname":"rpmlint","item":"foo-1.0-1.fc45","item_type":"koji_build","data":{"koji_tag":"f45","critpath":["a","b"]}}`

func TestJobLifecycle(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		job := c.create(trigger)
		if job.State != statemachine.Scheduled || job.Arch != "noarch" || job.UUID.Version() != 7 {
			t.Fatalf("got %s %s v%d, want SCHEDULED noarch v7", job.State, job.Arch, job.UUID.Version())
		}
		if got := job.Data["critpath"]; len(got) != 2 || got[1] != "b" {
			t.Errorf("got data %v, want critpath [a b]", job.Data)
		}
		path := job.Href()
		r := c.do("POST", path+"/start", `{"runner":{"name":"buildbot","jobid":"all/4821","worker":"client10","url":"http://bb/4821"}}`)
		expectStatus(t, r, 200)
		if j := r.job(t); j.State != statemachine.Running || j.Runner == nil || j.Runner.JobID != "all/4821" || j.StartedAt == nil {
			t.Errorf("after start: got %+v", j)
		}
		r = c.do("POST", path+"/finish", `{"state":"CRASHED","crash":{"notify":"taskotron","cause":"minion","keyvals":{"step":"MINION_CREATION","reason":"TIMED_OUT","tries":3,"retried":true}},"log_url":"http://logs/1"}`)
		expectStatus(t, r, 200)
		r = c.do("GET", path, "")
		expectStatus(t, r, 200)
		j := r.job(t)
		want := statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {"TIMED_OUT"}, "tries": {"3"}, "retried": {"true"}}
		if j.State != statemachine.Crashed || j.Crash == nil || j.Crash.Cause != "minion" || fmt.Sprint(j.Crash.KeyVals) != fmt.Sprint(want) || j.LogURL != "http://logs/1" {
			t.Errorf("read back: got %s", r.body)
		}
		r = c.do("GET", path+"/events", "")
		expectStatus(t, r, 200)
		var events struct {
			Data []storage.HistoryEntry `json:"data"`
		}
		json.Unmarshal(r.body, &events)
		if len(events.Data) != 3 || events.Data[2].StateTo != statemachine.Crashed || events.Data[1].Origin != statemachine.OriginHTTP {
			t.Errorf("events: got %s", r.body)
		}
	})
}

func TestIdempotentCreate(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		first := c.do("POST", "/api/v1/jobs", trigger, "Idempotency-Key", "key-1")
		expectStatus(t, first, 201)
		again := c.do("POST", "/api/v1/jobs", trigger, "Idempotency-Key", "key-1")
		expectStatus(t, again, 200)
		if first.job(t).UUID != again.job(t).UUID || again.job(t).RequestID != "key-1" {
			t.Errorf("got %s then %s, want the same job with request_id key-1", first.body, again.body)
		}
		body := `{"taskname":"t","item":"i","item_type":"koji_build","request_id":"r-9","uuid":"0193a5c3-7c1e-7abc-8def-0123456789ab"}`
		expectStatus(t, c.do("POST", "/api/v1/jobs", body), 201)
		r := c.do("POST", "/api/v1/jobs", body)
		expectStatus(t, r, 200)
		if r.job(t).UUID.String() != "0193a5c3-7c1e-7abc-8def-0123456789ab" {
			t.Errorf("client uuid not honoured: %s", r.body)
		}
		expectStatus(t, c.do("POST", "/api/v1/jobs", trigger, "Idempotency-Key", "reschedule:x"), 400)
		expectStatus(t, c.do("POST", "/api/v1/jobs", trigger, "Idempotency-Key", strings.Repeat("k", 1025)), 400)
		r = c.do("POST", "/api/v1/jobs", strings.Replace(body, "r-9", "r-10", 1))
		expectStatus(t, r, 409)
		r.err(t)
	})
}

func TestBadInput(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		job := c.create(trigger)
		finish := job.Href() + "/finish"
		cases := []struct {
			name, method, path, body string
			status                   int
			field                    string
		}{
			{"invalid JSON", "POST", "/api/v1/jobs", `{"taskname":`, 400, ""},
			{"not an object", "POST", "/api/v1/jobs", `[1]`, 400, ""},
			{"missing taskname", "POST", "/api/v1/jobs", `{"item":"i","item_type":"k"}`, 400, "taskname"},
			{"unknown field", "POST", "/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k","itemtype":"x"}`, 400, "itemtype"},
			{"unknown source field", "POST", "/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k","source":{"msg_id":"m","topik":"x"}}`, 400, "source.topik"},
			{"bad uuid", "POST", "/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k","uuid":"nope"}`, 400, "uuid"},
			{"data key with colon", "POST", "/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k","data":{"a:b":"c"}}`, 400, "data.a:b"},
			{"data value object", "POST", "/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k","data":{"a":{"b":1}}}`, 400, "data.a"},
			{"data value too long", "POST", "/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k","data":{"a":"` + strings.Repeat("x", 1025) + `"}}`, 400, "data.a"},
			{"too many values", "POST", "/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k","data":{"a":[` + strings.TrimSuffix(strings.Repeat(`"v",`, 17), ",") + `]}}`, 400, "data.a"},
			{"bad state", "POST", finish, `{"state":"DONE"}`, 400, "state"},
			{"bad cause", "POST", finish, `{"state":"CRASHED","crash":{"cause":"gremlins"}}`, 400, "crash.cause"},
			{"bad notify", "POST", finish, `{"state":"CRASHED","crash":{"notify":"everyone"}}`, 400, "crash.notify"},
			{"unknown crash field", "POST", finish, `{"state":"CRASHED","crash":{"reason":"x"}}`, 400, "crash.reason"},
			{"crash keyval key", "POST", finish, `{"state":"CRASHED","crash":{"keyvals":{"bad key":"x"}}}`, 400, "crash.keyvals.bad key"},
			{"crash with FINISHED", "POST", finish, `{"state":"FINISHED","crash":{}}`, 400, "crash"},
			{"fatal not bool", "POST", finish, `{"state":"CRASHED","crash":{"fatal":"yes"}}`, 400, "crash.fatal"},
			{"bad finished_at", "POST", finish, `{"state":"FINISHED","finished_at":"yesterday"}`, 400, "finished_at"},
			{"uuid mismatch", "POST", finish, `{"uuid":"0193a5c3-7c1e-7abc-8def-0123456789ab","state":"FINISHED"}`, 400, "uuid"},
			{"malformed path uuid", "GET", "/api/v1/jobs/xyz", ``, 400, "uuid"},
			{"unknown job", "GET", "/api/v1/jobs/0193a5c3-7c1e-7abc-8def-0123456789ab", ``, 404, ""},
			{"finish unknown job", "POST", "/api/v1/jobs/0193a5c3-7c1e-7abc-8def-0123456789ab/finish", `{"state":"FINISHED"}`, 404, ""},
			{"item too long for an index", "POST", "/api/v1/jobs", `{"taskname":"t","item":"` + strings.Repeat("x", 1025) + `","item_type":"k"}`, 400, "item"},
			{"request_id too long", "POST", "/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k","request_id":"` + strings.Repeat("x", 1025) + `"}`, 400, "request_id"},
			{"reserved request_id", "POST", "/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k","request_id":"reschedule:0193a5c3-7c1e-7abc-8def-0123456789ab"}`, 400, "request_id"},
			{"too large", "POST", "/api/v1/jobs", `{"taskname":"` + strings.Repeat("x", 1<<20) + `"}`, 413, ""},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := c.do(tc.method, tc.path, tc.body)
				expectStatus(t, r, tc.status)
				if e := r.err(t); e.Error.Field != tc.field || e.Error.Message == "" {
					t.Errorf("got field %q message %q, want field %q", e.Error.Field, e.Error.Message, tc.field)
				}
			})
		}
		// None of it touched the job.
		r := c.do("GET", job.Href(), "")
		if j := r.job(t); j.State != statemachine.Scheduled {
			t.Errorf("bad input changed the job: %s", r.body)
		}
	})
}

func TestLateAndConflict(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		job := c.create(trigger)
		expectStatus(t, c.do("POST", job.Href()+"/finish", `{"state":"FINISHED"}`), 200)
		expectStatus(t, c.do("POST", job.Href()+"/finish", `{"state":"FINISHED"}`), 200) // duplicate
		r := c.do("POST", job.Href()+"/start", ``)
		expectStatus(t, r, 409)
		if e := r.err(t); e.Job == nil || e.Job.State != statemachine.Finished {
			t.Errorf("late start: got %s, want 409 with the FINISHED job", r.body)
		}
		r = c.do("POST", job.Href()+"/finish", `{"state":"CRASHED"}`)
		expectStatus(t, r, 409)
		if e := r.err(t); e.Job == nil || e.Job.State != statemachine.Finished {
			t.Errorf("conflict: got %s, want 409 with the FINISHED job", r.body)
		}
		var events struct {
			Data []storage.HistoryEntry `json:"data"`
		}
		json.Unmarshal(c.do("GET", job.Href()+"/events", "").body, &events)
		var verdicts []string
		for _, e := range events.Data {
			verdicts = append(verdicts, string(e.Verdict))
		}
		if got := strings.Join(verdicts, ","); got != "applied,applied,duplicate,late,conflict" {
			t.Errorf("got verdicts %s, want applied,applied,duplicate,late,conflict", got)
		}
	})
}

func TestTokens(t *testing.T) {
	cfg := api.Config{Tokens: map[string]api.Token{"s3cret": {Name: "buildbot"}}}
	forEachBackend(t, cfg, func(t *testing.T, c *client) {
		r := c.do("POST", "/api/v1/jobs", trigger)
		expectStatus(t, r, 401)
		r.err(t)
		c.token = "wrong"
		expectStatus(t, c.do("POST", "/api/v1/jobs", trigger), 403)
		c.token = "s3cret"
		job := c.create(trigger)
		c.token = ""
		expectStatus(t, c.do("GET", job.Href(), ""), 200) // reads are open
		var events struct {
			Data []storage.HistoryEntry `json:"data"`
		}
		json.Unmarshal(c.do("GET", job.Href()+"/events", "").body, &events)
		if len(events.Data) != 1 || events.Data[0].Actor != "buildbot" {
			t.Errorf("got history %+v, want the token name buildbot recorded", events.Data)
		}
	})
}

func TestWritesFromLoopbackOnlyWithoutTokens(t *testing.T) {
	store := jobs.New(backends["sqlite"](t), jobs.Config{})
	h := api.New(store, api.Config{}).Handler()
	for addr, want := range map[string]int{"10.1.2.3:4000": 403, "127.0.0.1:4000": 201, "[::1]:4000": 201} {
		req := httptest.NewRequest("POST", "/api/v1/jobs", strings.NewReader(trigger))
		req.RemoteAddr = addr
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("write from %s: got %d, want %d", addr, rec.Code, want)
		}
	}
}

func TestConcurrentFinishes(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		job := c.create(trigger)
		var wg sync.WaitGroup
		statuses := make([]int, 20)
		for i := range statuses {
			wg.Add(1)
			go func() {
				defer wg.Done()
				body := `{"state":"FINISHED"}`
				if i%2 == 1 {
					body = fmt.Sprintf(`{"state":"CRASHED","crash":{"cause":"network","keyvals":{"writer":"%d"}}}`, i)
				}
				req, _ := http.NewRequest("POST", c.base+job.Href()+"/finish", bytes.NewBufferString(body))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				statuses[i] = resp.StatusCode
			}()
		}
		wg.Wait()
		final := c.do("GET", job.Href(), "").job(t)
		ok := 0
		for i, s := range statuses {
			if s == 200 {
				ok++
				if (i%2 == 0) != (final.State == statemachine.Finished) {
					t.Errorf("writer %d got 200 but the job is %s", i, final.State)
				}
			} else if s != 409 {
				t.Errorf("writer %d: got %d, want 200 or 409", i, s)
			}
		}
		if final.State == statemachine.Crashed && ok != 1 || final.State == statemachine.Finished && ok != 10 {
			t.Errorf("got %d successes for a %s job, want 1 crash or 10 equal finishes", ok, final.State)
		}
	})
}

func TestMetricsAndProbes(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		job := c.create(trigger)
		c.do("POST", job.Href()+"/finish", `{"state":"CRASHED","crash":{"notify":"task","cause":"task"}}`)
		expectStatus(t, c.do("GET", "/healthz", ""), 200)
		r := c.do("GET", "/readyz", "")
		expectStatus(t, r, 200)
		if !strings.Contains(string(r.body), `"database":"ok"`) {
			t.Errorf("readyz: got %s", r.body)
		}
		m := string(c.do("GET", "/metrics", "").body)
		for _, want := range []string{
			`execdb_transitions_total{state="CRASHED"} 1`,
			`execdb_crashes_total{cause="task",notify="task"} 1`,
			`execdb_http_requests_total{code="201",method="POST",route="POST /api/v1/jobs"} 1`,
			`execdb_http_request_duration_seconds_count{method="POST",route="POST /api/v1/jobs/{uuid}/finish"} 1`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
		expectStatus(t, c.do("GET", "/api/v1/nothing", ""), 404)
	})
}
