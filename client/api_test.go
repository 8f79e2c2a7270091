package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/client"
	"github.com/fedora-qa/execdb/client/clienttest"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// These tests run the client against the real API (clienttest starts it on a SQLite database).

func setup(t *testing.T) (*clienttest.Server, *client.Client) {
	t.Helper()
	srv := clienttest.New(t, clienttest.Options{Token: "s3cret"})
	c, err := client.New(srv.URL, "s3cret", client.WithBudget(5*time.Second), client.WithBackoff(time.Millisecond, 5*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	return srv, c
}

func TestLifecycle(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := context.Background()
	created, err := c.CreateJob(ctx, client.CreateJobRequest{
		TaskName: "rpmlint", Item: "foo-1.0-1.fc40", ItemType: "koji_build",
		Data:   statemachine.KeyVals{"koji_tag": {"f40-updates-testing"}},
		Source: &statemachine.Source{MsgID: "2024-abc", Topic: "org.fedoraproject.prod.buildsys.build.state.change"},
	})
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if !created.Created() || created.Job.State != statemachine.Scheduled || created.Job.Arch != "noarch" {
		t.Fatalf("create: got status %d, job %+v; want 201, SCHEDULED noarch", created.Status, created.Job)
	}
	id := created.Job.UUID
	started := created.Job.CreatedAt.Add(time.Second) // a reported time that fits is kept
	runner := &statemachine.Runner{Name: "buildbot", JobID: "all/4821", Worker: "client10-3", URL: "http://bb/builds/4821"}
	s, err := c.StartJob(ctx, id, statemachine.Start{StartedAt: &started, Runner: runner})
	if err != nil {
		t.Fatalf("StartJob: %v", err)
	}
	if s.Job.State != statemachine.Running || !s.Job.StartedAt.Equal(started) || *s.Job.Runner != *runner {
		t.Errorf("start: got %+v", s.Job)
	}
	crash := &statemachine.Crash{Notify: statemachine.NotifyTaskotron, Cause: statemachine.CauseMinion,
		KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {"TIMED_OUT"}}}
	f, err := c.FinishJob(ctx, id, statemachine.End{State: statemachine.Crashed, Crash: crash, LogURL: "http://logs/x"})
	if err != nil {
		t.Fatalf("FinishJob: %v", err)
	}
	if f.Job.State != statemachine.Crashed || f.Job.Crash.Cause != statemachine.CauseMinion || f.Job.LogURL != "http://logs/x" {
		t.Errorf("finish: got %+v", f.Job)
	}
	// The same report again is a harmless duplicate.
	if _, err := c.FinishJob(ctx, id, statemachine.End{State: statemachine.Crashed, Crash: crash}); err != nil {
		t.Errorf("repeated FinishJob: %v", err)
	}
	// A different report is a conflict that carries the job as it stands.
	_, err = c.FinishJob(ctx, id, statemachine.End{State: statemachine.Finished})
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusConflict || apiErr.Job == nil || apiErr.Job.State != statemachine.Crashed {
		t.Errorf("conflicting FinishJob: got %v (%+v), want 409 with the CRASHED job", err, apiErr)
	}
	// A late start is refused likewise.
	if _, err := c.StartJob(ctx, id, statemachine.Start{}); client.StatusOf(err) != http.StatusConflict {
		t.Errorf("late StartJob: got %v, want 409", err)
	}
	got, err := c.Job(ctx, id)
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	if got.Job.State != statemachine.Crashed || got.Job.Data["koji_tag"][0] != "f40-updates-testing" {
		t.Errorf("job: got %+v", got.Job)
	}
	ev, err := c.Events(ctx, id)
	if err != nil {
		t.Fatalf("Events: %v", err)
	}
	var verdicts []statemachine.Verdict
	for _, e := range ev.Events {
		verdicts = append(verdicts, e.Verdict)
		if e.JobUUID != id {
			t.Errorf("event %d: job_uuid %s, want %s", e.ID, e.JobUUID, id)
		}
	}
	want := []statemachine.Verdict{"applied", "applied", "applied", "duplicate", "conflict", "late"}
	if len(verdicts) != len(want) {
		t.Fatalf("verdicts: got %v, want %v", verdicts, want)
	}
	for i := range want {
		if verdicts[i] != want[i] {
			t.Errorf("verdicts: got %v, want %v", verdicts, want)
			break
		}
	}
	if jobs := srv.Jobs(t); len(jobs) != 1 || jobs[0].State != statemachine.Crashed {
		t.Errorf("jobs in the database: got %+v, want the one CRASHED job", jobs)
	}
}

// crashed makes a job and reports it CRASHED, fatally or not.
func crashed(t *testing.T, c *client.Client, fatal bool) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	j, err := c.CreateJob(ctx, client.CreateJobRequest{TaskName: "rpmlint", Item: "foo-1.0-1.fc40", ItemType: "koji_build",
		Data: statemachine.KeyVals{"koji_tag": {"f40"}}})
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	end := statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Cause: statemachine.CauseMinion, Fatal: fatal}}
	if _, err := c.FinishJob(ctx, j.Job.UUID, end); err != nil {
		t.Fatalf("FinishJob: %v", err)
	}
	return j.Job.UUID
}

// TestReschedule follows CONTRACT section 6: 201 with the successor of a crashed job, 200 with
// the same successor when asked again; a fatal crash needs force, else 409.
func TestReschedule(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := context.Background()
	id := crashed(t, c, false)
	r, err := c.RescheduleJob(ctx, id, false)
	if err != nil {
		t.Fatalf("RescheduleJob: %v", err)
	}
	if !r.Created() || r.Job.State != statemachine.Scheduled || r.Job.Attempt != 2 ||
		r.Job.RescheduledFrom == nil || *r.Job.RescheduledFrom != id ||
		r.Job.TaskName != "rpmlint" || r.Job.Data["koji_tag"][0] != "f40" {
		t.Errorf("reschedule: got %d %+v, want 201 with a SCHEDULED attempt 2 of rpmlint from %s", r.Status, r.Job, id)
	}
	parent, err := c.Job(ctx, id)
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	if parent.Job.RescheduledTo == nil || *parent.Job.RescheduledTo != r.Job.UUID || parent.Job.State != statemachine.Crashed {
		t.Errorf("parent: got %+v, want CRASHED with rescheduled_to %s", parent.Job, r.Job.UUID)
	}
	again, err := c.RescheduleJob(ctx, id, false)
	if err != nil {
		t.Fatalf("repeated RescheduleJob: %v", err)
	}
	if again.Created() || again.Job.UUID != r.Job.UUID {
		t.Errorf("repeated reschedule: got %d %s, want 200 with %s", again.Status, again.Job.UUID, r.Job.UUID)
	}
	if n := len(srv.Jobs(t)); n != 2 {
		t.Errorf("jobs: got %d, want 2", n)
	}

	fatal := crashed(t, c, true)
	_, err = c.RescheduleJob(ctx, fatal, false)
	if client.StatusOf(err) != http.StatusConflict {
		t.Errorf("reschedule of a fatal crash without force: got %v, want 409", err)
	}
	forced, err := c.RescheduleJob(ctx, fatal, true)
	if err != nil {
		t.Fatalf("RescheduleJob with force: %v", err)
	}
	if !forced.Created() || forced.Job.RescheduledFrom == nil || *forced.Job.RescheduledFrom != fatal {
		t.Errorf("forced reschedule: got %d %+v, want 201 with the successor of %s", forced.Status, forced.Job, fatal)
	}
}

func TestCreateRepeatedIsIdempotent(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := context.Background()
	req := client.CreateJobRequest{TaskName: "t", Item: "i", ItemType: "k", RequestID: "trigger-42"}
	a, err := c.CreateJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	b, err := c.CreateJob(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	if !a.Created() || b.Created() || a.Job.UUID != b.Job.UUID {
		t.Errorf("got %d %s then %d %s, want 201 then 200 with the same job", a.Status, a.Job.UUID, b.Status, b.Job.UUID)
	}
	for _, r := range srv.Requests() {
		if k := r.Header.Get("Idempotency-Key"); k != "trigger-42" {
			t.Errorf("Idempotency-Key: got %q, want the request id", k)
		}
	}
}

// TestCreateRetryAfterLostAnswer: the first create is applied but its answer is lost (500); the
// retry carries the same Idempotency-Key and gets the same job, not a second one.
func TestCreateRetryAfterLostAnswer(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	srv.Inject(clienttest.Fault{Status: 500, Apply: true}, clienttest.Fault{Status: 503})
	resp, err := c.CreateJob(context.Background(), client.CreateJobRequest{TaskName: "t", Item: "i", ItemType: "k"})
	if err != nil {
		t.Fatalf("CreateJob: %v", err)
	}
	if jobs := srv.Jobs(t); len(jobs) != 1 || jobs[0].UUID != resp.Job.UUID {
		t.Fatalf("jobs: got %d, want the one job answered", len(jobs))
	}
	if resp.Created() {
		t.Errorf("status: got 201, want 200 (the job the lost answer made)")
	}
	reqs := srv.Requests()
	if len(reqs) != 3 {
		t.Fatalf("requests: got %d, want 3", len(reqs))
	}
	key := reqs[0].Header.Get("Idempotency-Key")
	for _, r := range reqs {
		if r.Header.Get("Idempotency-Key") != key || key == "" {
			t.Errorf("Idempotency-Key: got %q, want %q on every attempt", r.Header.Get("Idempotency-Key"), key)
		}
	}
}

func TestBadRequestNamesField(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := context.Background()
	job, err := c.CreateJob(ctx, client.CreateJobRequest{TaskName: "t", Item: "i", ItemType: "k"})
	if err != nil {
		t.Fatal(err)
	}
	n := len(srv.Requests())
	_, err = c.FinishJob(ctx, job.Job.UUID, statemachine.End{State: statemachine.Crashed,
		Crash: &statemachine.Crash{Cause: "gremlins"}})
	var apiErr *client.APIError
	if !errors.As(err, &apiErr) || apiErr.Status != 400 || apiErr.Field != "crash.cause" {
		t.Fatalf("got %v, want 400 naming crash.cause", err)
	}
	if got := len(srv.Requests()) - n; got != 1 {
		t.Errorf("requests: got %d, want 1 (a 400 is not retried)", got)
	}
	_, err = c.CreateJob(ctx, client.CreateJobRequest{TaskName: "t", ItemType: "k"})
	if !errors.As(err, &apiErr) || apiErr.Field != "item" {
		t.Errorf("create without item: got %v, want 400 naming item", err)
	}
}

func TestUnknownJobAndToken(t *testing.T) {
	t.Parallel()
	srv, c := setup(t)
	ctx := context.Background()
	if _, err := c.Job(ctx, uuid.New()); client.StatusOf(err) != 404 {
		t.Errorf("unknown job: got %v, want 404", err)
	}
	wrong, _ := client.New(c.BaseURL(), "nope", client.WithBudget(time.Second))
	if _, err := wrong.CreateJob(ctx, client.CreateJobRequest{TaskName: "t", Item: "i", ItemType: "k"}); client.StatusOf(err) != 403 {
		t.Errorf("wrong token: got %v, want 403", err)
	}
	none, _ := client.New(c.BaseURL(), "", client.WithBudget(time.Second))
	if _, err := none.CreateJob(ctx, client.CreateJobRequest{TaskName: "t", Item: "i", ItemType: "k"}); client.StatusOf(err) != 401 {
		t.Errorf("no token: got %v, want 401", err)
	}
	if jobs := srv.Jobs(t); len(jobs) != 0 {
		t.Errorf("jobs: got %d, want none", len(jobs))
	}
}

func TestGetStats(t *testing.T) {
	t.Parallel()
	_, c := setup(t)
	ctx := context.Background()
	for _, item := range []string{"a", "b", "c"} {
		j, err := c.CreateJob(ctx, client.CreateJobRequest{TaskName: "t", Item: item, ItemType: "k"})
		if err != nil {
			t.Fatal(err)
		}
		end := statemachine.End{State: statemachine.Finished}
		if item != "a" {
			end = statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Cause: statemachine.CauseNetwork}}
		}
		if _, err := c.FinishJob(ctx, j.Job.UUID, end); err != nil {
			t.Fatal(err)
		}
	}
	resp, err := c.Get(ctx, "/stats", url.Values{"state": {"CRASHED"}, "group_by": {"cause"}})
	if err != nil {
		t.Fatal(err)
	}
	var stats struct {
		Data []struct {
			Group map[string]string `json:"group"`
			Count int               `json:"count"`
		} `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &stats); err != nil {
		t.Fatal(err)
	}
	if len(stats.Data) != 1 || stats.Data[0].Count != 2 || stats.Data[0].Group["cause"] != "network" {
		t.Errorf("stats: got %s", resp.Body)
	}
}
