package statemachine_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	sm "github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
	"pgregory.net/rapid"
)

var t0 = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func newJob(state sm.State) sm.Job {
	job, _ := sm.Create(sm.NewJob{UUID: uuid.New(), TaskName: "rpmlint", Item: "foo-1-1.fc45", ItemType: "koji_build"}, t0)
	job.State = state
	switch state {
	case sm.Running:
		job.StartedAt = ptr(t0.Add(time.Minute))
		job.StateEnteredAt, job.UpdatedAt = t0.Add(time.Minute), t0.Add(time.Minute)
	case sm.Finished:
		job.StartedAt, job.FinishedAt = ptr(t0.Add(time.Minute)), ptr(t0.Add(time.Hour))
		job.StateEnteredAt, job.UpdatedAt = t0.Add(time.Hour), t0.Add(time.Hour)
	case sm.Crashed:
		job.StartedAt, job.FinishedAt = ptr(t0.Add(time.Minute)), ptr(t0.Add(time.Hour))
		job.StateEnteredAt, job.UpdatedAt = t0.Add(time.Hour), t0.Add(time.Hour)
		job.Crash = &sm.Crash{Notify: sm.NotifyTask, Cause: sm.CauseTask, KeyVals: sm.KeyVals{}}
	}
	return job
}

func ptr(t time.Time) *time.Time { return &t }

func meta() sm.Meta { return sm.Meta{Origin: sm.OriginHTTP, ReceivedAt: t0.Add(2 * time.Hour)} }

func startEv() sm.Event { return sm.Event{Meta: meta(), Start: &sm.Start{}} }

func finishEv() sm.Event { return sm.Event{Meta: meta(), End: &sm.End{State: sm.Finished}} }

func crashEv(cause sm.Cause) sm.Event {
	return sm.Event{Meta: meta(), End: &sm.End{State: sm.Crashed, Crash: &sm.Crash{Notify: sm.NotifyTask, Cause: cause}}}
}

// TestApply covers every state × event of CONTRACT section 2.
func TestApply(t *testing.T) {
	cases := []struct {
		from    sm.State
		event   sm.Event
		name    string
		verdict sm.Verdict
		to      sm.State
		topic   string
	}{
		{sm.Scheduled, startEv(), "start", sm.Applied, sm.Running, "execdb.job.running"},
		{sm.Running, startEv(), "start", sm.Duplicate, sm.Running, ""},
		{sm.Finished, startEv(), "start", sm.Late, sm.Finished, ""},
		{sm.Crashed, startEv(), "start", sm.Late, sm.Crashed, ""},

		{sm.Scheduled, finishEv(), "finish", sm.Applied, sm.Finished, "execdb.job.finished"},
		{sm.Running, finishEv(), "finish", sm.Applied, sm.Finished, "execdb.job.finished"},
		{sm.Finished, finishEv(), "finish", sm.Duplicate, sm.Finished, ""},
		{sm.Crashed, finishEv(), "finish", sm.Conflict, sm.Crashed, ""},

		{sm.Scheduled, crashEv(sm.CauseTask), "crash task", sm.Applied, sm.Crashed, "execdb.job.crashed.task.task"},
		{sm.Running, crashEv(sm.CauseMinion), "crash minion", sm.Applied, sm.Crashed, "execdb.job.crashed.task.minion"},
		{sm.Finished, crashEv(sm.CauseTask), "crash task", sm.Conflict, sm.Finished, ""},
		{sm.Crashed, crashEv(sm.CauseTask), "crash task", sm.Duplicate, sm.Crashed, ""},
		{sm.Crashed, crashEv(sm.CauseMinion), "crash minion", sm.Conflict, sm.Crashed, ""},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%s/%s", tc.from, tc.name), func(t *testing.T) {
			job := newJob(tc.from)
			d := sm.Apply(job, tc.event)
			if d.Verdict != tc.verdict || d.Job.State != tc.to {
				t.Fatalf("got %s → %s, want %s → %s", d.Verdict, d.Job.State, tc.verdict, tc.to)
			}
			if tc.topic == "" {
				if d.Message != nil {
					t.Errorf("got message %s, want none", d.Message.TopicSuffix)
				}
				if d.Verdict != sm.Late && !reflect.DeepEqual(d.Job, job) {
					t.Errorf("a %s changed the job", d.Verdict)
				}
				return
			}
			if d.Message == nil || d.Message.TopicSuffix != tc.topic || *d.Message.PreviousState != tc.from {
				t.Fatalf("got message %+v, want %s from %s", d.Message, tc.topic, tc.from)
			}
			if !d.Changed || d.Job.UpdatedAt != meta().ReceivedAt {
				t.Errorf("got changed=%v updated_at=%v, want true %v", d.Changed, d.Job.UpdatedAt, meta().ReceivedAt)
			}
			if tc.to.Terminal() && (d.Job.FinishedAt == nil || !d.Job.FinishedAt.Equal(meta().ReceivedAt)) {
				t.Errorf("got finished_at %v, want the receive time", d.Job.FinishedAt)
			}
			if (tc.to == sm.Crashed) != (d.Job.Crash != nil) {
				t.Errorf("got crash %+v in state %s", d.Job.Crash, tc.to)
			}
		})
	}
}

func TestCrashDefaults(t *testing.T) {
	d := sm.Apply(newJob(sm.Running), sm.Event{Meta: meta(), End: &sm.End{State: sm.Crashed}})
	c := d.Job.Crash
	if c == nil || c.Notify != sm.NotifyUnknown || c.Cause != sm.CauseUnknown || c.Fatal || c.KeyVals == nil {
		t.Fatalf("got crash %+v, want unknown/unknown, not fatal, empty keyvals", c)
	}
	if d.Message.TopicSuffix != "execdb.job.crashed.unknown.unknown" {
		t.Errorf("got topic %s, want execdb.job.crashed.unknown.unknown", d.Message.TopicSuffix)
	}
}

func TestStartedAtFromSender(t *testing.T) {
	at := t0.Add(5 * time.Minute)
	runner := &sm.Runner{Name: "buildbot", JobID: "all/1"}
	d := sm.Apply(newJob(sm.Scheduled), sm.Event{Meta: meta(), Start: &sm.Start{StartedAt: &at, Runner: runner}})
	if !d.Job.StartedAt.Equal(at) || *d.Job.Runner != *runner {
		t.Errorf("got started_at=%v runner=%v, want %v %v", d.Job.StartedAt, d.Job.Runner, at, runner)
	}
}

func TestCreate(t *testing.T) {
	job, msg := sm.Create(sm.NewJob{TaskName: "depcheck"}, t0)
	if job.State != sm.Scheduled || job.Arch != "noarch" || job.Attempt != 1 || !job.CreatedAt.Equal(t0) {
		t.Errorf("got %+v, want SCHEDULED noarch attempt 1 created at %v", job, t0)
	}
	if msg.TopicSuffix != "execdb.job.scheduled" || msg.PreviousState != nil {
		t.Errorf("got message %s previous=%v, want execdb.job.scheduled without previous state", msg.TopicSuffix, msg.PreviousState)
	}
}

// TestOrderIndependence: whatever the order and duplication in which one job's events arrive
// (one start and one end outcome, each possibly repeated), the final job is the same.
func TestOrderIndependence(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		started := t0.Add(time.Duration(rapid.IntRange(1, 600).Draw(t, "start_offset_s")) * time.Second)
		finished := started.Add(time.Duration(rapid.IntRange(1, 3600).Draw(t, "run_s")) * time.Second)
		runner := &sm.Runner{Name: "buildbot", JobID: "all/7", Worker: "w1"}
		start := sm.Event{Start: &sm.Start{StartedAt: &started, Runner: runner}}
		end := sm.End{State: sm.Finished, FinishedAt: &finished, LogURL: "http://logs/7"}
		if rapid.Bool().Draw(t, "crashed") {
			end.State = sm.Crashed
			end.Crash = &sm.Crash{Notify: sm.NotifyTaskotron, Cause: sm.CauseMinion,
				KeyVals: sm.KeyVals{"step": {"MINION_CREATION"}}}
		}
		if rapid.Bool().Draw(t, "end_names_runner") {
			end.Runner = &sm.Runner{Name: "buildbot", JobID: "all/7", Worker: "w2"}
		}
		endEv := sm.Event{End: &end}

		var events []sm.Event
		for range rapid.IntRange(1, 3).Draw(t, "starts") {
			events = append(events, start)
		}
		for range rapid.IntRange(1, 3).Draw(t, "ends") {
			events = append(events, endEv)
		}
		perm := rapid.Permutation(events).Draw(t, "order")

		base := newJob(sm.Scheduled)
		reference := replay(base, []sm.Event{start, endEv})
		got := replay(base, perm)
		// ExecDB's own clock differs with the order: when the job was last touched, and when it
		// entered its final state.
		reference.UpdatedAt, got.UpdatedAt = time.Time{}, time.Time{}
		reference.StateEnteredAt, got.StateEnteredAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, reference) {
			t.Fatalf("order %v gave\n%+v\nwant\n%+v", kinds(perm), got, reference)
		}
	})
}

func replay(job sm.Job, events []sm.Event) sm.Job {
	for i, ev := range events {
		// Received after the times they report, as reports are.
		ev.ReceivedAt = t0.Add(time.Duration(i+2) * time.Hour)
		job = sm.Apply(job, ev).Job
	}
	return job
}

func kinds(events []sm.Event) []sm.EventKind {
	var ks []sm.EventKind
	for _, e := range events {
		ks = append(ks, e.Kind())
	}
	return ks
}

func TestJobJSON(t *testing.T) {
	job := newJob(sm.Crashed)
	b, err := job.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	var back sm.Job
	if err := back.UnmarshalJSON(b); err != nil {
		t.Fatal(err)
	}
	job.Data = sm.KeyVals{}
	job.StateEnteredAt = time.Time{} // ExecDB's own, not on the wire
	if !reflect.DeepEqual(back, job) {
		t.Errorf("round trip: got %+v, want %+v", back, job)
	}
	for _, want := range []string{`"artifacts_url":null`, `"href":"/api/v1/jobs/` + job.UUID.String() + `"`, `"data":{}`, `"rescheduled_to":null`} {
		if !contains(string(b), want) {
			t.Errorf("JSON %s lacks %s", b, want)
		}
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestTimesKeepTheirOrder: whatever times reporters send and whatever order their reports
// arrive in, created_at ≤ started_at ≤ finished_at ≤ updated_at, and no time lies more than
// ClockSkew after the last report was received (CONTRACT section 1, v1.1).
func TestTimesKeepTheirOrder(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		offset := func(name string) *time.Time {
			if rapid.Bool().Draw(t, name+"_absent") {
				return nil
			}
			// From 10 years back to 10 years ahead of the job's creation, in minutes.
			m := rapid.IntRange(-5_256_000, 5_256_000).Draw(t, name+"_min")
			return ptr(t0.Add(time.Duration(m) * time.Minute))
		}
		var events []sm.Event
		for i := range rapid.IntRange(1, 4).Draw(t, "events") {
			var ev sm.Event
			if rapid.Bool().Draw(t, fmt.Sprint("start", i)) {
				ev.Start = &sm.Start{StartedAt: offset(fmt.Sprint("started", i))}
			} else {
				ev.End = &sm.End{State: sm.Finished, FinishedAt: offset(fmt.Sprint("finished", i))}
			}
			// Received from a day before the job was created (a parked event) to a day after.
			ev.ReceivedAt = t0.Add(time.Duration(rapid.IntRange(-1440, 1440).Draw(t, fmt.Sprint("received", i))) * time.Minute)
			events = append(events, ev)
		}
		job := newJob(sm.Scheduled)
		latest := job.CreatedAt
		for _, ev := range events {
			job = sm.Apply(job, ev).Job
			if ev.ReceivedAt.After(latest) {
				latest = ev.ReceivedAt
			}
			times := []*time.Time{&job.CreatedAt, job.StartedAt, job.FinishedAt, &job.UpdatedAt}
			var prev *time.Time
			for _, tm := range times {
				if tm == nil {
					continue
				}
				if prev != nil && tm.Before(*prev) {
					t.Fatalf("times out of order: created %v started %v finished %v updated %v",
						job.CreatedAt, job.StartedAt, job.FinishedAt, job.UpdatedAt)
				}
				if tm.After(latest.Add(sm.ClockSkew)) {
					t.Fatalf("time %v lies in the future of the last report received at %v", tm, latest)
				}
				prev = tm
			}
		}
	})
}

func TestReportedTimes(t *testing.T) {
	received := t0.Add(2 * time.Hour) // meta()'s
	cases := []struct {
		name     string
		job      sm.Job
		event    sm.Event
		started  *time.Time
		finished *time.Time
	}{
		{"a start time that fits is kept", newJob(sm.Scheduled),
			sm.Event{Meta: meta(), Start: &sm.Start{StartedAt: ptr(t0.Add(time.Hour))}}, ptr(t0.Add(time.Hour)), nil},
		{"within the skew ahead is kept", newJob(sm.Scheduled),
			sm.Event{Meta: meta(), Start: &sm.Start{StartedAt: ptr(received.Add(sm.ClockSkew))}}, ptr(received.Add(sm.ClockSkew)), nil},
		{"a start in 2030 becomes the receive time", newJob(sm.Scheduled),
			sm.Event{Meta: meta(), Start: &sm.Start{StartedAt: ptr(time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC))}}, &received, nil},
		{"a start before the job existed becomes created_at", newJob(sm.Scheduled),
			sm.Event{Meta: meta(), Start: &sm.Start{StartedAt: ptr(t0.Add(-4 * time.Hour))}}, &t0, nil},
		{"an end before its start becomes started_at", newJob(sm.Running),
			sm.Event{Meta: meta(), End: &sm.End{State: sm.Finished, FinishedAt: ptr(t0.Add(-10 * time.Minute))}}, ptr(t0.Add(time.Minute)), ptr(t0.Add(time.Minute))},
		{"an end of a job never started, before it was created, becomes created_at", newJob(sm.Scheduled),
			sm.Event{Meta: meta(), End: &sm.End{State: sm.Finished, FinishedAt: ptr(t0.Add(-time.Hour))}}, nil, &t0},
		{"a late start received after the end becomes finished_at", neverStarted(sm.Finished),
			sm.Event{Meta: meta(), Start: &sm.Start{}}, ptr(t0.Add(time.Hour)), ptr(t0.Add(time.Hour))},
		{"a late start that fits is kept", neverStarted(sm.Finished),
			sm.Event{Meta: meta(), Start: &sm.Start{StartedAt: ptr(t0.Add(time.Minute))}}, ptr(t0.Add(time.Minute)), ptr(t0.Add(time.Hour))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := sm.Apply(tc.job, tc.event)
			if !sameTime(d.Job.StartedAt, tc.started) || !sameTime(d.Job.FinishedAt, tc.finished) {
				t.Errorf("got started %v finished %v, want %v %v", d.Job.StartedAt, d.Job.FinishedAt, tc.started, tc.finished)
			}
		})
	}
}

// neverStarted is a job in a final state whose start never arrived.
func neverStarted(state sm.State) sm.Job {
	job := newJob(state)
	job.StartedAt = nil
	return job
}

func sameTime(a, b *time.Time) bool {
	if a == nil || b == nil {
		return a == b
	}
	return a.Equal(*b)
}

// A start that arrives after the end fills in the start time (from when it was received, when
// it names none) and the runner's fields the job lacks (CONTRACT section 2, v1.1).
func TestLateStartFillsIn(t *testing.T) {
	job := newJob(sm.Scheduled)
	end := sm.Apply(job, sm.Event{Meta: sm.Meta{ReceivedAt: t0.Add(time.Hour)},
		End: &sm.End{State: sm.Finished, Runner: &sm.Runner{Name: "buildbot"}}}).Job
	d := sm.Apply(end, sm.Event{Meta: sm.Meta{ReceivedAt: t0.Add(30 * time.Minute)},
		Start: &sm.Start{Runner: &sm.Runner{Name: "other", JobID: "all/9", URL: "http://bb/9"}}})
	if d.Verdict != sm.Late || !d.Changed || d.Message != nil {
		t.Fatalf("got %s changed=%v message=%v, want late, changed, no message", d.Verdict, d.Changed, d.Message)
	}
	want := sm.Runner{Name: "buildbot", JobID: "all/9", URL: "http://bb/9"}
	if *d.Job.Runner != want || !sameTime(d.Job.StartedAt, ptr(t0.Add(30*time.Minute))) {
		t.Errorf("got runner %+v started %v, want %+v and the start's receive time", *d.Job.Runner, d.Job.StartedAt, want)
	}
	// The same late start again finds nothing to fill in.
	if again := sm.Apply(d.Job, sm.Event{Meta: meta(), Start: &sm.Start{Runner: &sm.Runner{Name: "other"}}}); again.Changed {
		t.Errorf("a second late start changed the job: %+v", again.Job)
	}
}

// A repeated end with the same outcome fills in the urls and runner fields the job lacks and
// changes nothing else (CONTRACT section 2, v1.1).
func TestRepeatedEndFillsIn(t *testing.T) {
	job := newJob(sm.Crashed)
	job.LogURL = "http://logs/1"
	repeat := sm.End{State: sm.Crashed, Crash: job.Crash, LogURL: "http://logs/other",
		ArtifactsURL: "http://artifacts/1", Runner: &sm.Runner{Name: "buildbot", Worker: "w1"}}
	d := sm.Apply(job, sm.Event{Meta: meta(), End: &repeat})
	if d.Verdict != sm.Duplicate || !d.Changed || d.Message != nil {
		t.Fatalf("got %s changed=%v message=%v, want a duplicate that changed the job, no message", d.Verdict, d.Changed, d.Message)
	}
	if d.Job.LogURL != "http://logs/1" || d.Job.ArtifactsURL != "http://artifacts/1" || d.Job.Runner == nil || d.Job.Runner.Worker != "w1" {
		t.Errorf("got log %s artifacts %s runner %+v", d.Job.LogURL, d.Job.ArtifactsURL, d.Job.Runner)
	}
	if !d.Job.FinishedAt.Equal(*job.FinishedAt) || d.Job.State != job.State {
		t.Errorf("the repeat changed the outcome: %+v", d.Job)
	}
	if d := sm.Apply(d.Job, sm.Event{Meta: meta(), End: &repeat}); d.Changed {
		t.Error("the same repeat again changed the job")
	}
}

func TestRunnerJSONNullsUnknownFields(t *testing.T) {
	b, err := json.Marshal(sm.Runner{Name: "buildbot"})
	if err != nil || string(b) != `{"name":"buildbot","jobid":null,"worker":null,"url":null}` {
		t.Errorf("got %s, %v", b, err)
	}
	var back sm.Runner
	if err := json.Unmarshal(b, &back); err != nil || back != (sm.Runner{Name: "buildbot"}) {
		t.Errorf("round trip: got %+v, %v", back, err)
	}
}

// The watchdog counts from when ExecDB applied the start, not from the time the worker sent:
// a worker whose clock is 4 hours behind does not make its job overdue at once.
func TestOverdueIgnoresTheWorkersClock(t *testing.T) {
	job := newJob(sm.Scheduled)
	applied := t0.Add(time.Hour)
	d := sm.Apply(job, sm.Event{Meta: sm.Meta{ReceivedAt: applied}, Start: &sm.Start{StartedAt: ptr(applied.Add(-4 * time.Hour))}})
	to := sm.Timeouts{Run: 3 * time.Hour}
	if to.Overdue(d.Job, applied.Add(time.Minute)) {
		t.Error("overdue a minute after the start was applied")
	}
	if !to.Overdue(d.Job, applied.Add(3*time.Hour+time.Second)) {
		t.Error("not overdue 3h after the start was applied")
	}
}

func TestPackages(t *testing.T) {
	cases := []struct {
		itemType, item string
		data           sm.KeyVals
		want           []string
	}{
		{"koji_build", "htop-3.3.0-1.fc45", nil, []string{"htop"}},
		{"koji_build", "python-foo-bar-1.0-2.fc40", nil, []string{"python-foo-bar"}},
		{"koji_build", "weird-1", nil, nil},
		{"koji_build", "-1.0-1", nil, nil},
		{"koji_build", "htop-3.3.0-1.fc45", sm.KeyVals{"packages": {"htop", "", "atop"}}, []string{"atop", "htop"}},
		{"bodhi_update", "FEDORA-2026-abc", sm.KeyVals{"packages": {"b", "a", "b"}}, []string{"a", "b"}},
		{"compose", "Fedora-45-20261130.n.0", nil, nil},
	}
	for _, tc := range cases {
		job := sm.Job{ItemType: tc.itemType, Item: tc.item, Data: tc.data}
		if got := job.Packages(); !slices.Equal(got, tc.want) {
			t.Errorf("%s %s %v: got %v, want %v", tc.itemType, tc.item, tc.data, got, tc.want)
		}
	}
}

// A start from another runner while the job runs is Buildbot retrying a build whose worker was
// lost: it replaces the lost attempt's runner and start time, announces the job running again,
// and restarts the watchdog's count.
func TestRetriedBuildReplacesTheLostAttempt(t *testing.T) {
	job := newJob(sm.Running)
	job.Runner = &sm.Runner{Name: "buildbot", JobID: "all/1", Worker: "w1", URL: "http://bb/1"}
	retry := sm.Event{Meta: meta(), Start: &sm.Start{Runner: &sm.Runner{Name: "buildbot", JobID: "all/2", Worker: "w2"}}}
	d := sm.Apply(job, retry)
	if d.Verdict != sm.Applied || d.Message == nil || d.Message.TopicSuffix != "execdb.job.running" || *d.Message.PreviousState != sm.Running {
		t.Fatalf("got %s message %+v, want applied and announced running again", d.Verdict, d.Message)
	}
	want := sm.Runner{Name: "buildbot", JobID: "all/2", Worker: "w2"}
	if *d.Job.Runner != want || !d.Job.StartedAt.Equal(meta().ReceivedAt) || !d.Job.StateEnteredAt.Equal(meta().ReceivedAt) {
		t.Errorf("got runner %+v started %v entered %v, want the retry's", *d.Job.Runner, d.Job.StartedAt, d.Job.StateEnteredAt)
	}
	// The retry's start again is a duplicate; the lost attempt's start arriving late changes
	// nothing either.
	if again := sm.Apply(d.Job, retry); again.Verdict != sm.Duplicate || again.Changed {
		t.Errorf("the retry's start again: got %s changed=%v", again.Verdict, again.Changed)
	}
	old := sm.Event{Meta: sm.Meta{ReceivedAt: meta().ReceivedAt.Add(time.Minute)},
		Start: &sm.Start{StartedAt: ptr(t0.Add(time.Minute)), Runner: job.Runner}}
	if late := sm.Apply(d.Job, old); late.Verdict != sm.Duplicate || late.Changed {
		t.Errorf("the lost attempt's start after the retry's: got %s changed=%v", late.Verdict, late.Changed)
	}
}
