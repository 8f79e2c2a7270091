package statemachine_test

import (
	"reflect"
	"testing"
	"time"

	sm "github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

func TestCanReschedule(t *testing.T) {
	fatal := newJob(sm.Crashed)
	fatal.Crash.Fatal = true
	done := newJob(sm.Crashed)
	done.RescheduledTo = ptrUUID(uuid.New())
	cases := []struct {
		name  string
		job   sm.Job
		force bool
		want  sm.SkipReason
	}{
		{"crashed", newJob(sm.Crashed), false, ""},
		{"scheduled", newJob(sm.Scheduled), false, sm.SkipNotCrashed},
		{"running", newJob(sm.Running), true, sm.SkipNotCrashed},
		{"finished", newJob(sm.Finished), true, sm.SkipNotCrashed},
		{"fatal", fatal, false, sm.SkipFatal},
		{"fatal forced", fatal, true, ""},
		{"already rescheduled", done, true, sm.SkipAlreadyRescheduled},
	}
	for _, tc := range cases {
		if got := sm.CanReschedule(tc.job, tc.force); got != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, got, tc.want)
		}
	}
}

func ptrUUID(u uuid.UUID) *uuid.UUID { return &u }

func TestSuccessor(t *testing.T) {
	parent := newJob(sm.Crashed)
	parent.Arch = "x86_64"
	parent.Data = sm.KeyVals{"koji_tag": {"f45"}}
	parent.Source = &sm.Source{MsgID: "m-1", Topic: "org.fedoraproject.prod.buildsys.build.state.change"}
	parent.Attempt = 2
	id := uuid.New()
	n := sm.Successor(parent, id)
	want := sm.NewJob{
		UUID: id, TaskName: parent.TaskName, Item: parent.Item, ItemType: parent.ItemType, Arch: "x86_64",
		Data: parent.Data, Source: parent.Source, RequestID: "reschedule:" + parent.UUID.String(),
		Attempt: 3, RescheduledFrom: &parent.UUID,
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got %+v, want %+v", n, want)
	}
	job, msg := sm.Create(n, t0)
	if job.Attempt != 3 || *job.RescheduledFrom != parent.UUID || msg.TopicSuffix != "execdb.job.scheduled" {
		t.Errorf("created successor: got attempt %d from %v topic %s", job.Attempt, job.RescheduledFrom, msg.TopicSuffix)
	}
	linked := sm.LinkSuccessor(parent, id, t0.Add(time.Hour))
	if linked.State != sm.Crashed || *linked.RescheduledTo != id || !linked.UpdatedAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("linked parent: got %+v", linked)
	}
	if parent.RescheduledTo != nil {
		t.Error("LinkSuccessor changed its argument")
	}
}

func TestOverdue(t *testing.T) {
	to := sm.Timeouts{Run: 3 * time.Hour, Schedule: 24 * time.Hour}
	running := newJob(sm.Running) // started at t0+1m
	scheduled := newJob(sm.Scheduled)
	cases := []struct {
		name string
		job  sm.Job
		to   sm.Timeouts
		now  time.Time
		want bool
	}{
		{"running within", running, to, t0.Add(time.Minute + 3*time.Hour), false},
		{"running over", running, to, t0.Add(time.Minute + 3*time.Hour + time.Microsecond), true},
		{"running, no run timeout", running, sm.Timeouts{Schedule: time.Second}, t0.Add(1000 * time.Hour), false},
		{"scheduled within", scheduled, to, t0.Add(24 * time.Hour), false},
		{"scheduled over", scheduled, to, t0.Add(25 * time.Hour), true},
		{"scheduled, no schedule timeout", scheduled, sm.Timeouts{Run: time.Second}, t0.Add(1000 * time.Hour), false},
		{"finished", newJob(sm.Finished), to, t0.Add(1000 * time.Hour), false},
		{"crashed", newJob(sm.Crashed), to, t0.Add(1000 * time.Hour), false},
	}
	for _, tc := range cases {
		if got := tc.to.Overdue(tc.job, tc.now); got != tc.want {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestWatchdogEnd(t *testing.T) {
	for state, reason := range map[sm.State]string{sm.Running: "TIMED_OUT", sm.Scheduled: "NEVER_STARTED"} {
		job := newJob(state)
		now := t0.Add(48 * time.Hour)
		end := sm.WatchdogEnd(job, now)
		d := sm.Apply(job, sm.Event{Meta: sm.Meta{Origin: sm.OriginWatchdog, ReceivedAt: now}, End: &end})
		if d.Verdict != sm.Applied || d.Job.State != sm.Crashed || d.Message == nil {
			t.Fatalf("%s: got %s → %s", state, d.Verdict, d.Job.State)
		}
		want := sm.Crash{Notify: sm.NotifyTaskotron, Cause: sm.CauseUnknown, Fatal: false, KeyVals: sm.KeyVals{
			"reason": {reason}, "detected_by": {"watchdog"}, "last_state": {string(state)},
		}}
		if !reflect.DeepEqual(*d.Job.Crash, want) {
			t.Errorf("%s: got crash %+v, want %+v", state, *d.Job.Crash, want)
		}
		if d.Message.TopicSuffix != "execdb.job.crashed.taskotron.unknown" || !d.Job.FinishedAt.Equal(now) {
			t.Errorf("%s: got topic %s finished_at %v", state, d.Message.TopicSuffix, d.Job.FinishedAt)
		}
		// The runner's own report arriving afterwards differs, however it is classified.
		for _, late := range []sm.End{
			{State: sm.Finished},
			{State: sm.Crashed, Crash: &sm.Crash{Notify: sm.NotifyTaskotron, Cause: sm.CauseUnknown}},
			{State: sm.Crashed, Crash: &sm.Crash{Notify: sm.NotifyTaskotron, Cause: sm.CauseUnknown, KeyVals: sm.KeyVals{"reason": {reason}}}},
		} {
			got := sm.Apply(d.Job, sm.Event{Meta: meta(), End: &late})
			if got.Verdict != sm.Conflict || !reflect.DeepEqual(got.Job, d.Job) {
				t.Errorf("%s: runner's end %+v after the watchdog: got %s, want conflict and no change", state, late, got.Verdict)
			}
		}
		// The watchdog's own end again is a duplicate.
		if got := sm.Apply(d.Job, sm.Event{Meta: meta(), End: &end}); got.Verdict != sm.Duplicate {
			t.Errorf("%s: the watchdog's end again: got %s, want duplicate", state, got.Verdict)
		}
	}
}

func TestAutoDelay(t *testing.T) {
	p := sm.AutoPolicy{Limit: 10, FirstDelay: 30 * time.Second}
	want := []time.Duration{30 * time.Second, time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute}
	for i, w := range want {
		if got := p.Delay(i + 1); got != w {
			t.Errorf("attempt %d: got %s, want %s", i+1, got, w)
		}
	}
	if got := p.Delay(1000); got != sm.DefaultMaxAutoDelay {
		t.Errorf("attempt 1000: got %s, want the cap %s", got, sm.DefaultMaxAutoDelay)
	}
	p.MaxDelay = 90 * time.Second
	if got := p.Delay(3); got != 90*time.Second {
		t.Errorf("attempt 3 capped at 90s: got %s", got)
	}
	if got := (sm.AutoPolicy{Limit: 3}).Delay(2); got != 0 {
		t.Errorf("no first delay: got %s, want 0", got)
	}
}

func TestDecideAuto(t *testing.T) {
	now := t0.Add(5 * time.Hour)
	p := sm.AutoPolicy{Limit: 3, FirstDelay: 30 * time.Second}
	crashed := func(attempt int, fatal bool) sm.Job {
		j := newJob(sm.Crashed)
		j.Attempt = attempt
		j.Crash.Fatal = fatal
		return j
	}
	done := crashed(1, false)
	done.RescheduledTo = ptrUUID(uuid.New())
	cases := []struct {
		name   string
		job    sm.Job
		policy sm.AutoPolicy
		want   sm.AutoDecision
	}{
		{"first attempt", crashed(1, false), p, sm.AutoDecision{Planned: true, Delay: 30 * time.Second, DueAt: now.Add(30 * time.Second)}},
		{"second attempt", crashed(2, false), p, sm.AutoDecision{Planned: true, Delay: time.Minute, DueAt: now.Add(time.Minute)}},
		{"limit reached", crashed(3, false), p, sm.AutoDecision{Reason: sm.SkipAttemptLimit}},
		{"fatal", crashed(1, true), p, sm.AutoDecision{Reason: sm.SkipFatal}},
		{"off", crashed(1, false), sm.AutoPolicy{FirstDelay: time.Second}, sm.AutoDecision{Reason: sm.SkipAutoOff}},
		{"off and fatal", crashed(1, true), sm.AutoPolicy{}, sm.AutoDecision{Reason: sm.SkipAutoOff}},
		{"limit 1 never retries", crashed(1, false), sm.AutoPolicy{Limit: 1}, sm.AutoDecision{Reason: sm.SkipAttemptLimit}},
		{"already rescheduled", done, p, sm.AutoDecision{Reason: sm.SkipAlreadyRescheduled}},
		{"not crashed", newJob(sm.Finished), p, sm.AutoDecision{Reason: sm.SkipNotCrashed}},
	}
	for _, tc := range cases {
		if got := sm.DecideAuto(tc.job, tc.policy, now); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}
