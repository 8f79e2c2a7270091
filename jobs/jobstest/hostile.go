package jobstest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// hostileTests cover what producers that send odd times and reports in odd orders do
// (CONTRACT sections 1-3, v1.1): times stay in order, late and repeated reports fill in,
// rejections name their job.
var hostileTests = []test{
	{"TimesStayInOrderWhateverTheArrival", testTimesInOrder},
	{"LateAndRepeatedBusReportsFillIn", testBusFillIn},
	{"RejectionsNameTheirJob", testRejectionsNameTheirJob},
	{"RetriedBuildReplacesTheLostAttempt", testRetriedBuild},
}

// checkTimes fails unless created_at <= started_at <= finished_at <= updated_at.
func checkTimes(t *testing.T, j statemachine.Job) {
	t.Helper()
	prev := j.CreatedAt
	for _, tm := range []*time.Time{j.StartedAt, j.FinishedAt, &j.UpdatedAt} {
		if tm == nil {
			continue
		}
		if tm.Before(prev) {
			t.Errorf("job %s: times out of order: created %v started %v finished %v updated %v",
				j.UUID, j.CreatedAt, j.StartedAt, j.FinishedAt, j.UpdatedAt)
			return
		}
		prev = *tm
	}
}

func testTimesInOrder(t *testing.T, open env) {
	s, b := newStore(t, open)
	ctx := context.Background()
	future := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	past := t0.Add(-10 * time.Minute)

	// End, start and trigger arrive in the reverse order, each in its batch; the start says
	// 2030, the end ten minutes before the job existed.
	reversed := uuid.New()
	n := newJob()
	n.UUID = reversed
	end := busEnd("end", reversed, statemachine.Crashed, statemachine.CauseMinion)
	end.Event.End.FinishedAt = &past
	late := busStart("start", reversed)
	late.Event.Start.StartedAt = &future
	wantOutcomes(t, applyBus(t, s, end), jobs.BusParked)
	wantOutcomes(t, applyBus(t, s, late), jobs.BusParked)
	created := applyBus(t, s, busTrigger("trigger", n))[0].Result.Job
	checkTimes(t, created)
	readBack(t, b, created)
	if created.State != statemachine.Crashed || created.StartedAt == nil || created.FinishedAt == nil {
		t.Errorf("reversed arrival: got %s", js(created))
	}

	// A reporter whose end is ten minutes before its start, over HTTP.
	j := create(t, s, newJob())
	apply(t, s, j.UUID, start(nil))
	early := j.CreatedAt.Add(-10 * time.Minute)
	ev := finish()
	ev.End.FinishedAt = &early
	done := readBack(t, b, apply(t, s, j.UUID, ev).Job)
	checkTimes(t, done)
	if !done.FinishedAt.Equal(*done.StartedAt) {
		t.Errorf("an end before its start: got finished %v, want the start %v", done.FinishedAt, done.StartedAt)
	}

	// A start in the future is taken at the time ExecDB received it.
	j = create(t, s, newJob())
	ahead := apply(t, s, j.UUID, start(&future)).Job
	checkTimes(t, ahead)
	if ahead.StartedAt.After(ahead.UpdatedAt) || ahead.StartedAt.Year() == 2030 {
		t.Errorf("a start in 2030: got started %v", ahead.StartedAt)
	}

	// No duration stats report is negative.
	res, err := b.Stats(ctx, storage.StatsQuery{GroupBy: []storage.Field{}})
	if err != nil {
		t.Fatal(err)
	}
	for _, row := range res.Rows {
		for _, d := range []*storage.Durations{row.QueueWait, row.RunTime} {
			if d != nil && (d.P50 < 0 || d.P90 < 0 || d.Max < 0) {
				t.Errorf("negative durations in stats: %+v", *d)
			}
		}
	}
}

func testBusFillIn(t *testing.T, open env) {
	s, b := newStore(t, open)
	id := uuid.New()
	n := newJob()
	n.UUID = id
	// The end overtakes the start; it names no runner, no log.
	wantOutcomes(t, applyBus(t, s, busTrigger("t", n), busEnd("e1", id, statemachine.Finished, "")),
		jobs.BusApplied, jobs.BusApplied)
	// The late start names no time of its own: it fills in started_at (never after the end)
	// and the runner.
	rs := applyBus(t, s, busStart("s", id))
	wantOutcomes(t, rs, jobs.BusLate)
	job := readBack(t, b, rs[0].Result.Job)
	if job.StartedAt == nil || job.StartedAt.After(*job.FinishedAt) || job.Runner == nil || job.Runner.JobID != "all/7" {
		t.Errorf("after the late start: got %s", js(job))
	}
	// The same end again, now with the log and artifacts urls and a worker: it fills in, and
	// changes nothing else.
	again := busEnd("e2", id, statemachine.Finished, "")
	again.Event.End.LogURL, again.Event.End.ArtifactsURL = "http://logs/1", "http://artifacts/1"
	again.Event.End.Runner = &statemachine.Runner{Name: "other", Worker: "w1"}
	rs = applyBus(t, s, again)
	wantOutcomes(t, rs, jobs.BusDuplicate)
	job = readBack(t, b, rs[0].Result.Job)
	if job.LogURL != "http://logs/1" || job.ArtifactsURL != "http://artifacts/1" || job.Runner.Worker != "w1" ||
		job.Runner.Name != "buildbot" || job.State != statemachine.Finished {
		t.Errorf("after the repeated end: got %s", js(job))
	}
	checkTimes(t, job)
}

func testRejectionsNameTheirJob(t *testing.T, open env) {
	s, b := newStore(t, open)
	known := create(t, s, newJob())
	unknown := uuid.New()
	reject := func(id string, job uuid.UUID) jobs.BusMessage {
		return jobs.BusMessage{Meta: busMeta(id), Topic: "org.example.taskotron.runtask.end", Body: []byte(`{}`),
			Reject: &jobs.Rejection{Reason: storage.RejectSchema, Field: "crash.cause", Detail: "must be one of …",
				JobUUID: &job, Kind: statemachine.EventEnd}}
	}
	applyBus(t, s, reject("bad-known", known.UUID), reject("bad-unknown", unknown))
	h, err := b.History(context.Background(), known.UUID)
	if err != nil {
		t.Fatal(err)
	}
	last := h[len(h)-1]
	if last.Verdict != statemachine.Rejected || last.Kind != statemachine.EventEnd || last.MessageID != "bad-known" ||
		last.StateTo != statemachine.Scheduled || last.Origin != statemachine.OriginAMQP {
		t.Errorf("history of the known job: got %s, want the rejected end last", js(h))
	}
	if got := readBack(t, b, known); got.State != statemachine.Scheduled {
		t.Errorf("a rejection changed the job: %s", js(got))
	}
	byJob := rejectedList(t, b, storage.RejectedQuery{JobUUID: &known.UUID})
	if len(byJob) != 1 || byJob[0].MessageID != "bad-known" {
		t.Errorf("rejected of the known job: got %s", js(byJob))
	}
	byUnknown := rejectedList(t, b, storage.RejectedQuery{JobUUID: &unknown})
	if len(byUnknown) != 1 || byUnknown[0].MessageID != "bad-unknown" {
		t.Errorf("rejected naming an unknown job: got %s", js(byUnknown))
	}
	byID := rejectedList(t, b, storage.RejectedQuery{MessageID: "bad-unknown"})
	if len(byID) != 1 || byID[0].JobUUID == nil || *byID[0].JobUUID != unknown {
		t.Errorf("rejected by message id: got %s", js(byID))
	}
}

// testRetriedBuild: Buildbot retries a build whose worker was lost as a new build with the same
// uuid; its start replaces the lost attempt's runner and start time, and is announced.
func testRetriedBuild(t *testing.T, open env) {
	s, b := newStore(t, open)
	j := create(t, s, newJob())
	apply(t, s, j.UUID, start(nil)) // all/1 on client-1
	retry := statemachine.Event{Meta: httpMeta("retry"), Start: &statemachine.Start{
		Runner: &statemachine.Runner{Name: "buildbot", JobID: "all/2", Worker: "client-2", URL: "http://bb/2"}}}
	res := apply(t, s, j.UUID, retry)
	got := readBack(t, b, res.Job)
	if res.Verdict != statemachine.Applied || got.Runner.JobID != "all/2" || got.Runner.Worker != "client-2" || !got.StartedAt.Equal(got.UpdatedAt) {
		t.Errorf("after the retried build's start: got %s %s", res.Verdict, js(got))
	}
	var running int
	for _, m := range outbox(t, b) {
		if m.JobUUID == j.UUID && strings.HasSuffix(m.Topic, ".running") {
			running++
		}
	}
	if running != 2 {
		t.Errorf("got %d running announcements, want 2", running)
	}
}
