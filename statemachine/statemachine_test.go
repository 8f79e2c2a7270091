package statemachine_test

import (
	"fmt"
	"reflect"
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
	case sm.Finished:
		job.StartedAt, job.FinishedAt = ptr(t0.Add(time.Minute)), ptr(t0.Add(time.Hour))
	case sm.Crashed:
		job.StartedAt, job.FinishedAt = ptr(t0.Add(time.Minute)), ptr(t0.Add(time.Hour))
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
	if !d.Job.StartedAt.Equal(at) || d.Job.Runner != runner {
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
		reference.UpdatedAt, got.UpdatedAt = time.Time{}, time.Time{}
		if !reflect.DeepEqual(got, reference) {
			t.Fatalf("order %v gave\n%+v\nwant\n%+v", kinds(perm), got, reference)
		}
	})
}

func replay(job sm.Job, events []sm.Event) sm.Job {
	for i, ev := range events {
		ev.ReceivedAt = t0.Add(time.Duration(i+1) * time.Hour)
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
