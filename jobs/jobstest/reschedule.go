package jobstest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// rescheduleTests cover rescheduling (one job, in bulk, automatically), the watchdog and retry
// statistics, including that concurrent sweeps act exactly once.
var rescheduleTests = []test{
	{"RescheduleMakesLinkedSuccessor", testReschedule},
	{"RescheduleIsIdempotent", testRescheduleIdempotent},
	{"RescheduleRefusals", testRescheduleRefusals},
	{"RescheduleChain", testRescheduleChain},
	{"ConcurrentReschedulesOfOneJob", testConcurrentReschedules},
	{"RescheduleBulk", testRescheduleBulk},
	{"WatchdogCrashesOverdueJobs", testWatchdog},
	{"WatchdogSweepsConcurrently", testWatchdogConcurrent},
	{"AutoReschedule", testAutoReschedule},
	{"AutoRescheduleDeclines", testAutoDeclines},
	{"AutoRescheduleAfterManual", testAutoAfterManual},
	{"AutoRescheduleDecidedWithTheCrash", testAutoWithTheCrash},
	{"AutoRescheduleSweepsConcurrently", testAutoConcurrent},
	{"AutoRescheduleDeclinesTakenRequestID", testAutoRequestIDTaken},
	{"RescheduleTakenRequestID", testRescheduleRequestIDTaken},
	{"SweepsGoOnPastAFailingJob", testSweepJobFailure},
	{"RetryStats", testRetryStats},
}

// manualClock is a Store clock that moves only when told to.
type manualClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *manualClock) Advance(d time.Duration) time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	return c.now
}

// clockedStore returns a store on a fresh backend whose clock moves only when told to.
func clockedStore(t *testing.T, open env) (*jobs.Service, storage.Backend, *manualClock) {
	t.Helper()
	b := open.backend(t)
	c := &manualClock{now: t0}
	return open.service(t, b, jobs.Config{TopicPrefix: "org.example", Now: c.Now}), b, c
}

func crashedJob(t *testing.T, s *jobs.Service, n statemachine.NewJob, fatal bool) statemachine.Job {
	t.Helper()
	j := create(t, s, n)
	ev := crash(statemachine.CauseMinion, statemachine.KeyVals{"step": {"MINION_CREATION"}})
	ev.End.Crash.Fatal = fatal
	return apply(t, s, j.UUID, ev).Job
}

func reschedule(t *testing.T, s *jobs.Service, id uuid.UUID, force bool) jobs.RescheduleResult {
	t.Helper()
	r, err := s.Reschedule(context.Background(), id, jobs.RescheduleOptions{Force: force, Reason: "flaky minion"}, httpMeta("resched"))
	if err != nil {
		t.Fatalf("reschedule %s: %v", id, err)
	}
	return r
}

// entries returns the history entries of a job of the given kind.
func entries(t *testing.T, b storage.Backend, id uuid.UUID, kind statemachine.EventKind) []storage.HistoryEntry {
	t.Helper()
	hist, err := b.History(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var out []storage.HistoryEntry
	for _, h := range hist {
		if h.Kind == kind {
			out = append(out, h)
		}
	}
	return out
}

func detailOf(t *testing.T, h storage.HistoryEntry) map[string]any {
	t.Helper()
	var d map[string]any
	if err := json.Unmarshal(h.Detail, &d); err != nil {
		t.Fatalf("history detail %s: %v", h.Detail, err)
	}
	return d
}

// messagesFor returns the outbox messages of a job.
func messagesFor(t *testing.T, b storage.Backend, id uuid.UUID) []storage.OutboxMessage {
	t.Helper()
	var out []storage.OutboxMessage
	for _, m := range outbox(t, b) {
		if m.JobUUID == id {
			out = append(out, m)
		}
	}
	return out
}

func testReschedule(t *testing.T, open env) {
	s, b := newStore(t, open)
	n := newJob()
	n.Arch = "x86_64"
	n.Data = statemachine.KeyVals{"koji_tag": {"f45-updates"}, "critpath": {"zsh", "bash"}}
	n.Source = &statemachine.Source{MsgID: "2026-koji-1", Topic: "org.fedoraproject.prod.buildsys.build.state.change"}
	parent := crashedJob(t, s, n, false)
	r := reschedule(t, s, parent.UUID, false)
	if !r.Created {
		t.Fatal("got Created false for a first reschedule")
	}
	succ := readBack(t, b, r.Successor)
	if succ.State != statemachine.Scheduled || succ.TaskName != n.TaskName || succ.Item != n.Item ||
		succ.ItemType != n.ItemType || succ.Arch != "x86_64" || !reflect.DeepEqual(succ.Data, n.Data) ||
		succ.Source == nil || *succ.Source != *n.Source {
		t.Errorf("successor does not repeat the trigger: %s", js(succ))
	}
	if succ.Attempt != 2 || succ.RescheduledFrom == nil || *succ.RescheduledFrom != parent.UUID || succ.RescheduledTo != nil {
		t.Errorf("successor lineage: got attempt %d from %v to %v, want 2 %s nil", succ.Attempt, succ.RescheduledFrom, succ.RescheduledTo, parent.UUID)
	}
	if succ.UUID == parent.UUID || succ.UUID.Version() != 7 || succ.RequestID != "reschedule:"+parent.UUID.String() {
		t.Errorf("successor uuid %s (v%d) request_id %q", succ.UUID, succ.UUID.Version(), succ.RequestID)
	}
	if succ.Crash != nil || succ.StartedAt != nil || succ.FinishedAt != nil || succ.Runner != nil {
		t.Errorf("successor carries the parent's run: %s", js(succ))
	}
	got := readBack(t, b, r.Parent)
	if got.State != statemachine.Crashed || got.RescheduledTo == nil || *got.RescheduledTo != succ.UUID || got.Crash == nil ||
		!reflect.DeepEqual(got.Crash.KeyVals, statemachine.KeyVals{"step": {"MINION_CREATION"}}) {
		t.Errorf("parent after reschedule: %s", js(got))
	}

	ph := entries(t, b, parent.UUID, statemachine.EventReschedule)
	if len(ph) != 1 || ph[0].Verdict != statemachine.Applied || ph[0].Origin != statemachine.OriginHTTP || ph[0].Actor != "tester" ||
		ph[0].StateFrom != statemachine.Crashed || ph[0].StateTo != statemachine.Crashed {
		t.Fatalf("parent history: got %s", js(ph))
	}
	d := detailOf(t, ph[0])
	if d["why"] != "manual" || d["force"] != false || d["reason"] != "flaky minion" || d["successor"] != succ.UUID.String() {
		t.Errorf("parent history detail: got %s", ph[0].Detail)
	}
	sh := entries(t, b, succ.UUID, statemachine.EventCreate)
	if len(sh) != 1 || sh[0].Verdict != statemachine.Applied || sh[0].Actor != "tester" || sh[0].StateTo != statemachine.Scheduled {
		t.Fatalf("successor history: got %s", js(sh))
	}
	if d := detailOf(t, sh[0]); d["why"] != "manual" || d["rescheduled_from"] != parent.UUID.String() || d["reason"] != "flaky minion" {
		t.Errorf("successor history detail: got %s", sh[0].Detail)
	}

	msgs := messagesFor(t, b, succ.UUID)
	if len(msgs) != 1 || msgs[0].Topic != "org.example.execdb.job.scheduled" {
		t.Fatalf("successor messages: got %s", js(msgs))
	}
	var body map[string]any
	json.Unmarshal(msgs[0].Body, &body)
	if body["previous_state"] != nil || body["attempt"] != float64(2) || body["rescheduled_from"] != parent.UUID.String() {
		t.Errorf("scheduled message body: got %s", msgs[0].Body)
	}
	if n := len(messagesFor(t, b, parent.UUID)); n != 2 {
		t.Errorf("parent messages: got %d, want 2 (scheduled, crashed): rescheduling announces only the successor", n)
	}
}

func testRescheduleIdempotent(t *testing.T, open env) {
	s, b := newStore(t, open)
	parent := crashedJob(t, s, newJob(), false)
	first := reschedule(t, s, parent.UUID, false)
	again := reschedule(t, s, parent.UUID, false)
	if again.Created || again.Successor.UUID != first.Successor.UUID {
		t.Errorf("second reschedule: got created=%v successor %s, want false %s", again.Created, again.Successor.UUID, first.Successor.UUID)
	}
	// A fatal-looking force, or a repeat once the successor ran, changes nothing either.
	apply(t, s, first.Successor.UUID, start(nil))
	third := reschedule(t, s, parent.UUID, true)
	if third.Created || third.Successor.UUID != first.Successor.UUID || third.Successor.State != statemachine.Running {
		t.Errorf("third reschedule: got created=%v %s %s", third.Created, third.Successor.UUID, third.Successor.State)
	}
	ph := entries(t, b, parent.UUID, statemachine.EventReschedule)
	if len(ph) != 3 || ph[0].Verdict != statemachine.Applied || ph[1].Verdict != statemachine.Duplicate || ph[2].Verdict != statemachine.Duplicate {
		t.Errorf("parent history: got %s, want applied, duplicate, duplicate", js(ph))
	}
	if n := len(messagesFor(t, b, first.Successor.UUID)); n != 2 {
		t.Errorf("successor messages: got %d, want 2 (scheduled, running)", n)
	}
	found, _, err := s.Search(context.Background(), storage.Filter{}, storage.Page{Limit: 10})
	if err != nil || len(found) != 2 {
		t.Errorf("got %d jobs (%v), want 2", len(found), err)
	}
}

func testRescheduleRefusals(t *testing.T, open env) {
	s, b := newStore(t, open)
	ctx := context.Background()
	scheduled := create(t, s, newJob())
	running := create(t, s, newJob())
	apply(t, s, running.UUID, start(nil))
	finished := create(t, s, newJob())
	apply(t, s, finished.UUID, finish())
	fatal := crashedJob(t, s, newJob(), true)
	before := len(outbox(t, b))
	for _, tc := range []struct {
		name string
		id   uuid.UUID
		want statemachine.SkipReason
	}{
		{"scheduled", scheduled.UUID, statemachine.SkipNotCrashed},
		{"running", running.UUID, statemachine.SkipNotCrashed},
		{"finished", finished.UUID, statemachine.SkipNotCrashed},
		{"fatal", fatal.UUID, statemachine.SkipFatal},
	} {
		_, err := s.Reschedule(ctx, tc.id, jobs.RescheduleOptions{}, httpMeta("r"))
		var refused *jobs.RefusedError
		if !errors.As(err, &refused) || refused.Reason != tc.want || refused.Job.UUID != tc.id {
			t.Errorf("%s: got %v, want a refusal %s with the job", tc.name, err, tc.want)
		}
		if n := len(entries(t, b, tc.id, statemachine.EventReschedule)); n != 0 {
			t.Errorf("%s: a refusal left %d history entries", tc.name, n)
		}
	}
	if _, err := s.Reschedule(ctx, uuid.New(), jobs.RescheduleOptions{}, httpMeta("r")); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown job: got %v, want ErrNotFound", err)
	}
	if after := len(outbox(t, b)); after != before {
		t.Errorf("refusals queued %d messages", after-before)
	}
	r := reschedule(t, s, fatal.UUID, true)
	if !r.Created || r.Successor.Attempt != 2 {
		t.Errorf("forced reschedule of a fatal crash: got created=%v attempt %d", r.Created, r.Successor.Attempt)
	}
	if d := detailOf(t, entries(t, b, fatal.UUID, statemachine.EventReschedule)[0]); d["force"] != true {
		t.Errorf("forced reschedule: detail %v, want force true", d)
	}
}

func testRescheduleChain(t *testing.T, open env) {
	s, b := newStore(t, open)
	job := crashedJob(t, s, newJob(), false)
	ids := []uuid.UUID{job.UUID}
	for attempt := 2; attempt <= 4; attempt++ {
		r := reschedule(t, s, ids[len(ids)-1], false)
		if r.Successor.Attempt != attempt || *r.Successor.RescheduledFrom != ids[len(ids)-1] {
			t.Fatalf("attempt %d: got %d from %v", attempt, r.Successor.Attempt, r.Successor.RescheduledFrom)
		}
		ids = append(ids, r.Successor.UUID)
		apply(t, s, r.Successor.UUID, crash(statemachine.CauseNetwork, nil))
	}
	for i, id := range ids[:len(ids)-1] {
		j, _ := b.Job(context.Background(), id)
		if j.RescheduledTo == nil || *j.RescheduledTo != ids[i+1] {
			t.Errorf("job %d: rescheduled_to %v, want %s", i, j.RescheduledTo, ids[i+1])
		}
	}
}

func testConcurrentReschedules(t *testing.T, open env) {
	s, b := newStore(t, open)
	s2 := open.service(t, b, jobs.Config{TopicPrefix: "org.example"})
	parent := crashedJob(t, s, newJob(), false)
	const writers = 10
	results := make([]jobs.RescheduleResult, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := s
			if i%2 == 1 {
				st = s2
			}
			results[i], errs[i] = st.Reschedule(context.Background(), parent.UUID, jobs.RescheduleOptions{}, httpMeta(fmt.Sprint(i)))
		}()
	}
	wg.Wait()
	created := 0
	for i := range writers {
		if errs[i] != nil {
			t.Fatalf("writer %d: %v", i, errs[i])
		}
		if results[i].Created {
			created++
		}
		if results[i].Successor.UUID != results[0].Successor.UUID {
			t.Errorf("writer %d got successor %s, writer 0 %s", i, results[i].Successor.UUID, results[0].Successor.UUID)
		}
	}
	if created != 1 {
		t.Errorf("got %d successors made, want 1", created)
	}
	if n := len(messagesFor(t, b, results[0].Successor.UUID)); n != 1 {
		t.Errorf("got %d scheduled messages, want 1", n)
	}
}

func testRescheduleBulk(t *testing.T, open env) {
	s, b := newStore(t, open)
	ctx := context.Background()
	mk := func(task string) statemachine.NewJob { n := newJob(); n.TaskName = task; return n }
	plain := crashedJob(t, s, mk("rpmlint"), false)
	fatal := crashedJob(t, s, mk("rpmlint"), true)
	done := crashedJob(t, s, mk("rpmlint"), false)
	earlier := reschedule(t, s, done.UUID, false)
	fin := create(t, s, mk("rpmlint"))
	apply(t, s, fin.UUID, finish())
	other := crashedJob(t, s, mk("depcheck"), false) // not matched by the filter
	filter := parseFilter(t, s, "taskname=rpmlint")
	before := len(outbox(t, b))

	type outcome struct {
		outcome   jobs.BulkOutcome
		reason    statemachine.SkipReason
		successor bool
	}
	check := func(name string, res jobs.BulkResult, want map[uuid.UUID]outcome, rescheduled, skipped int) {
		t.Helper()
		got := map[uuid.UUID]outcome{}
		for _, it := range res.Items {
			got[it.UUID] = outcome{it.Outcome, it.Reason, it.Successor != nil}
		}
		if !reflect.DeepEqual(got, want) || res.Matched != len(want) || res.Rescheduled != rescheduled || res.Skipped != skipped {
			t.Errorf("%s: got %s\nwant %v, %d rescheduled, %d skipped", name, js(res), want, rescheduled, skipped)
		}
	}
	dry, err := s.RescheduleBulk(ctx, filter, true, jobs.RescheduleOptions{}, httpMeta("bulk-dry"))
	if err != nil {
		t.Fatal(err)
	}
	check("dry run", dry, map[uuid.UUID]outcome{
		plain.UUID:             {jobs.BulkWouldReschedule, "", false},
		fatal.UUID:             {jobs.BulkSkipped, statemachine.SkipFatal, false},
		done.UUID:              {jobs.BulkSkipped, statemachine.SkipAlreadyRescheduled, true},
		fin.UUID:               {jobs.BulkSkipped, statemachine.SkipNotCrashed, false},
		earlier.Successor.UUID: {jobs.BulkSkipped, statemachine.SkipNotCrashed, false},
	}, 1, 4)
	if after := len(outbox(t, b)); after != before {
		t.Fatalf("a dry run queued %d messages", after-before)
	}
	if j, _ := b.Job(ctx, plain.UUID); j.RescheduledTo != nil {
		t.Fatal("a dry run rescheduled a job")
	}

	// The filter as the API gets it: only crashes.
	crashes := parseFilter(t, s, "taskname=rpmlint&state=CRASHED")
	res, err := s.RescheduleBulk(ctx, crashes, false, jobs.RescheduleOptions{Reason: "minion outage"}, httpMeta("bulk-1"))
	if err != nil {
		t.Fatal(err)
	}
	check("bulk", res, map[uuid.UUID]outcome{
		plain.UUID: {jobs.BulkRescheduled, "", true},
		fatal.UUID: {jobs.BulkSkipped, statemachine.SkipFatal, false},
		done.UUID:  {jobs.BulkSkipped, statemachine.SkipAlreadyRescheduled, true},
	}, 1, 2)
	for _, item := range res.Items {
		if item.UUID != plain.UUID || item.Successor == nil {
			continue
		}
		if succ, err := b.Job(ctx, *item.Successor); err != nil || succ.RescheduledFrom == nil || *succ.RescheduledFrom != plain.UUID {
			t.Errorf("bulk successor: got %s (%v), want a job rescheduled from %s", js(succ), err, plain.UUID)
		}
	}
	ph := entries(t, b, plain.UUID, statemachine.EventReschedule)
	if len(ph) != 1 || detailOf(t, ph[0])["why"] != "bulk" || detailOf(t, ph[0])["reason"] != "minion outage" || ph[0].Actor != "tester" {
		t.Errorf("bulk history: got %s", js(ph))
	}
	if n := len(entries(t, b, done.UUID, statemachine.EventReschedule)); n != 1 {
		t.Errorf("a bulk skip recorded history: %d reschedule entries on an already rescheduled job, want 1", n)
	}

	forced, err := s.RescheduleBulk(ctx, crashes, false, jobs.RescheduleOptions{Force: true}, httpMeta("bulk-2"))
	if err != nil {
		t.Fatal(err)
	}
	check("forced", forced, map[uuid.UUID]outcome{
		plain.UUID: {jobs.BulkSkipped, statemachine.SkipAlreadyRescheduled, true},
		fatal.UUID: {jobs.BulkRescheduled, "", true},
		done.UUID:  {jobs.BulkSkipped, statemachine.SkipAlreadyRescheduled, true},
	}, 1, 2)
	if j, _ := b.Job(ctx, other.UUID); j.RescheduledTo != nil {
		t.Error("bulk rescheduled a job its filter does not match")
	}
	empty, err := s.RescheduleBulk(ctx, parseFilter(t, s, "taskname=nothing"), false, jobs.RescheduleOptions{}, httpMeta("bulk-3"))
	if err != nil || empty.Matched != 0 || empty.Items == nil {
		t.Errorf("bulk matching nothing: got %s %v", js(empty), err)
	}
}

// overdueSet creates jobs around the watchdog's limits (run 1h, schedule 2h) and returns the
// ones it must crash, with the state each was in.
func overdueSet(t *testing.T, s *jobs.Service, c *manualClock) (overdue map[uuid.UUID]statemachine.State, spared []uuid.UUID) {
	t.Helper()
	overdue = map[uuid.UUID]statemachine.State{}
	oldSched := create(t, s, newJob()) // created at t0
	overdue[oldSched.UUID] = statemachine.Scheduled
	oldRun := create(t, s, newJob())
	apply(t, s, oldRun.UUID, start(nil)) // started at t0
	overdue[oldRun.UUID] = statemachine.Running
	oldDone := create(t, s, newJob())
	apply(t, s, oldDone.UUID, finish())
	oldCrash := crashedJob(t, s, newJob(), false)
	c.Advance(90 * time.Minute)
	// A job whose worker's clock is 4 hours behind: it says it started long before ExecDB
	// heard of it. The watchdog counts from when ExecDB applied the start (CONTRACT section 4,
	// v1.1), so it is not overdue.
	behind := c.Now().Add(-4 * time.Hour)
	skewed := create(t, s, newJob()) // created at t0+90m
	apply(t, s, skewed.UUID, start(&behind))
	recentRun := create(t, s, newJob())
	apply(t, s, recentRun.UUID, start(nil)) // started at t0+90m
	recentSched := create(t, s, newJob())
	c.Advance(40 * time.Minute) // now t0+130m
	return overdue, []uuid.UUID{oldDone.UUID, oldCrash.UUID, skewed.UUID, recentRun.UUID, recentSched.UUID}
}

var timeouts = statemachine.Timeouts{Run: time.Hour, Schedule: 2 * time.Hour}

func testWatchdog(t *testing.T, open env) {
	s, b, c := clockedStore(t, open)
	ctx := context.Background()
	overdue, spared := overdueSet(t, s, c)
	before := map[uuid.UUID]statemachine.Job{}
	for _, id := range spared {
		before[id], _ = b.Job(ctx, id)
	}
	crashed, err := s.Watchdog(ctx, timeouts)
	if err != nil {
		t.Fatal(err)
	}
	if len(crashed) != len(overdue) {
		t.Fatalf("got %d crashes, want %d: %s", len(crashed), len(overdue), js(crashed))
	}
	now := c.Now()
	for _, r := range crashed {
		last, ok := overdue[r.Job.UUID]
		if !ok {
			t.Fatalf("crashed %s, which is not overdue", r.Job.UUID)
		}
		got := readBack(t, b, r.Job)
		reason := "TIMED_OUT"
		if last == statemachine.Scheduled {
			reason = "NEVER_STARTED"
		}
		want := statemachine.Crash{Notify: statemachine.NotifyTaskotron, Cause: statemachine.CauseUnknown, Fatal: false,
			KeyVals: statemachine.KeyVals{"reason": {reason}, "detected_by": {"watchdog"}, "last_state": {string(last)}}}
		if got.State != statemachine.Crashed || got.Crash == nil || !reflect.DeepEqual(*got.Crash, want) ||
			r.Verdict != statemachine.Applied || r.StateFrom != last || got.FinishedAt == nil || !got.FinishedAt.Equal(now) {
			t.Errorf("watchdog crash of a %s job: got %s, want %+v at %v", last, js(got), want, now)
		}
		ends := entries(t, b, r.Job.UUID, statemachine.EventEnd)
		if len(ends) != 1 || ends[0].Origin != statemachine.OriginWatchdog || ends[0].Verdict != statemachine.Applied || ends[0].StateFrom != last {
			t.Errorf("watchdog history: got %s", js(ends))
		}
		msgs := messagesFor(t, b, r.Job.UUID)
		m := msgs[len(msgs)-1]
		if m.Topic != "org.example.execdb.job.crashed.taskotron.unknown" || m.Headers["execdb_cause"] != "unknown" || m.Headers["fedora_messaging_severity"] != "30" {
			t.Errorf("watchdog crash message: got %s %v", m.Topic, m.Headers)
		}
		var body map[string]any
		json.Unmarshal(m.Body, &body)
		if body["previous_state"] != string(last) {
			t.Errorf("watchdog crash message: previous_state %v, want %s", body["previous_state"], last)
		}
	}
	for _, id := range spared {
		if got, _ := b.Job(ctx, id); !reflect.DeepEqual(normal(got), normal(before[id])) {
			t.Errorf("the watchdog changed a job it must spare\n got %s\nwant %s", js(got), js(before[id]))
		}
	}
	again, err := s.Watchdog(ctx, timeouts)
	if err != nil || len(again) != 0 {
		t.Errorf("second sweep: got %d crashes (%v), want none", len(again), err)
	}
	// Exactly at the limit a job is not overdue; a microsecond later it is.
	c.Advance(time.Hour - 40*time.Minute) // t0+150m: skewed and recentRun started at t0+90m
	if r, _ := s.Watchdog(ctx, timeouts); len(r) != 0 {
		t.Errorf("at the run timeout: got %d crashes, want none", len(r))
	}
	c.Advance(time.Microsecond)
	r, _ := s.Watchdog(ctx, timeouts)
	if got := []uuid.UUID{}; len(r) == 2 {
		got = append(got, r[0].Job.UUID, r[1].Job.UUID)
		slices.SortFunc(got, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		want := []uuid.UUID{spared[2], spared[3]}
		slices.SortFunc(want, func(a, b uuid.UUID) int { return strings.Compare(a.String(), b.String()) })
		if !slices.Equal(got, want) {
			t.Errorf("past the run timeout: got %s, want the two jobs started at t0+90m", js(r))
		}
	} else {
		t.Errorf("past the run timeout: got %s, want the two jobs started at t0+90m", js(r))
	}
	// A zero timeout switches that half off.
	c.Advance(10 * time.Hour)
	if r, _ := s.Watchdog(ctx, statemachine.Timeouts{Run: time.Hour}); len(r) != 0 {
		t.Errorf("without a schedule timeout: got %d crashes, want none", len(r))
	}

	// The runner's own end arriving afterwards is a conflict, and changes nothing.
	var runID uuid.UUID
	for id, st := range overdue {
		if st == statemachine.Running {
			runID = id
		}
	}
	crashedJob, _ := b.Job(ctx, runID)
	for _, ev := range []statemachine.Event{finish(), crash(statemachine.CauseUnknown, nil)} {
		res := apply(t, s, runID, ev)
		if res.Verdict != statemachine.Conflict || res.Job.State != statemachine.Crashed {
			t.Errorf("a real end after the watchdog: got %s %s, want conflict CRASHED", res.Verdict, res.Job.State)
		}
	}
	if got, _ := b.Job(ctx, runID); !reflect.DeepEqual(normal(got), normal(crashedJob)) {
		t.Errorf("a conflicting end changed the job: %s", js(got))
	}
}

// testWatchdogConcurrent lets two stores (two processes, as far as the database can tell)
// sweep one database at once: every overdue job is crashed exactly once.
func testWatchdogConcurrent(t *testing.T, open env) {
	b := open.backend(t)
	c := &manualClock{now: t0}
	stores := []*jobs.Service{
		open.service(t, b, jobs.Config{TopicPrefix: "org.example", Now: c.Now}),
		open.service(t, b, jobs.Config{TopicPrefix: "org.example", Now: c.Now}),
	}
	const jobs = 130 // more than one sweep batch
	var ids []uuid.UUID
	for i := range jobs {
		j := create(t, stores[0], newJob())
		if i%2 == 0 {
			apply(t, stores[0], j.UUID, start(nil))
		}
		ids = append(ids, j.UUID)
	}
	c.Advance(3 * time.Hour)
	total := sweepConcurrently(t, 6, func(i int) (int, error) {
		r, err := stores[i%2].Watchdog(context.Background(), timeouts)
		return len(r), err
	})
	if total != jobs {
		t.Errorf("got %d watchdog crashes in all, want %d", total, jobs)
	}
	crashMessages := map[uuid.UUID]int{}
	for _, m := range outbox(t, b) {
		if m.Headers["execdb_state"] == "CRASHED" {
			crashMessages[m.JobUUID]++
		}
	}
	for _, id := range ids {
		if n := len(entries(t, b, id, statemachine.EventEnd)); n != 1 {
			t.Errorf("job %s: %d end entries, want 1", id, n)
		}
		if n := crashMessages[id]; n != 1 {
			t.Errorf("job %s: %d crash messages, want 1", id, n)
		}
	}
}

// sweepConcurrently runs sweep in n goroutines at once and sums what they report.
func sweepConcurrently(t *testing.T, n int, sweep func(i int) (int, error)) int {
	t.Helper()
	counts := make([]int, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			counts[i], errs[i] = sweep(i)
		}()
	}
	wg.Wait()
	total := 0
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("sweep %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	return total
}

var policy = statemachine.AutoPolicy{Limit: 3, FirstDelay: 30 * time.Second}

func decide(t *testing.T, s *jobs.Service, p statemachine.AutoPolicy) []jobs.AutoDecisionResult {
	t.Helper()
	d, err := s.DecideAutoReschedules(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func due(t *testing.T, s *jobs.Service) []jobs.RescheduleResult {
	t.Helper()
	r, err := s.RescheduleDue(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func testAutoReschedule(t *testing.T, open env) {
	s, b, c := clockedStore(t, open)
	id := crashedJob(t, s, newJob(), false).UUID
	for _, step := range []struct {
		attempt int
		delay   time.Duration
	}{{1, 30 * time.Second}, {2, time.Minute}} {
		decided := c.Now()
		ds := decide(t, s, policy)
		if len(ds) != 1 || ds[0].Job.UUID != id || !ds[0].Decision.Planned || ds[0].Decision.Delay != step.delay {
			t.Fatalf("attempt %d: got decisions %s, want one planned after %s", step.attempt, js(ds), step.delay)
		}
		if again := decide(t, s, policy); len(again) != 0 {
			t.Fatalf("attempt %d: a second sweep decided again: %s", step.attempt, js(again))
		}
		h := entries(t, b, id, statemachine.EventAutoReschedule)
		if len(h) != 1 || h[0].Verdict != statemachine.Applied || h[0].Origin != statemachine.OriginReschedule {
			t.Fatalf("attempt %d: decision history %s", step.attempt, js(h))
		}
		d := detailOf(t, h[0])
		wantDue := decided.Add(step.delay).UTC().Format(time.RFC3339Nano)
		if d["decision"] != "planned" || d["due_at"] != wantDue || d["delay"] != step.delay.String() ||
			d["attempt"] != float64(step.attempt) || d["limit"] != float64(3) {
			t.Errorf("attempt %d: decision detail %s, want planned due %s", step.attempt, h[0].Detail, wantDue)
		}
		c.Advance(step.delay - time.Microsecond)
		if r := due(t, s); len(r) != 0 {
			t.Fatalf("attempt %d: rescheduled %s before it was due", step.attempt, js(r))
		}
		c.Advance(time.Microsecond)
		r := due(t, s)
		if len(r) != 1 || !r[0].Created || r[0].Parent.UUID != id || r[0].Successor.Attempt != step.attempt+1 {
			t.Fatalf("attempt %d: got %s, want the successor", step.attempt, js(r))
		}
		if again := due(t, s); len(again) != 0 {
			t.Fatalf("attempt %d: rescheduled twice: %s", step.attempt, js(again))
		}
		rh := entries(t, b, id, statemachine.EventReschedule)
		if len(rh) != 1 || rh[0].Origin != statemachine.OriginReschedule || rh[0].Verdict != statemachine.Applied || detailOf(t, rh[0])["why"] != "automatic" {
			t.Errorf("attempt %d: reschedule history %s", step.attempt, js(rh))
		}
		succ := r[0].Successor
		if sh := entries(t, b, succ.UUID, statemachine.EventCreate); len(sh) != 1 || sh[0].Origin != statemachine.OriginReschedule {
			t.Errorf("attempt %d: successor history %s", step.attempt, js(sh))
		}
		if m := messagesFor(t, b, succ.UUID); len(m) != 1 || m[0].Topic != "org.example.execdb.job.scheduled" {
			t.Errorf("attempt %d: successor messages %s", step.attempt, js(m))
		}
		// The successor's decision waits for its own crash.
		if ds := decide(t, s, policy); len(ds) != 0 {
			t.Fatalf("decided about a job that has not crashed: %s", js(ds))
		}
		apply(t, s, succ.UUID, crash(statemachine.CauseNetwork, nil))
		id = succ.UUID
	}
	ds := decide(t, s, policy)
	if len(ds) != 1 || ds[0].Decision.Planned || ds[0].Decision.Reason != statemachine.SkipAttemptLimit {
		t.Fatalf("attempt 3 of 3: got %s, want declined, attempt limit", js(ds))
	}
	h := entries(t, b, id, statemachine.EventAutoReschedule)
	if len(h) != 1 || h[0].Verdict != statemachine.Declined || detailOf(t, h[0])["reason"] != "attempt_limit" {
		t.Errorf("declined decision history: %s", js(h))
	}
	c.Advance(24 * time.Hour)
	if r := due(t, s); len(r) != 0 {
		t.Errorf("rescheduled past the limit: %s", js(r))
	}
}

func testAutoDeclines(t *testing.T, open env) {
	s, b, c := clockedStore(t, open)
	fatal := crashedJob(t, s, newJob(), true)
	manual := crashedJob(t, s, newJob(), false)
	reschedule(t, s, manual.UUID, false)
	fin := create(t, s, newJob())
	apply(t, s, fin.UUID, finish())
	ds := decide(t, s, policy)
	got := map[uuid.UUID]statemachine.SkipReason{}
	for _, d := range ds {
		got[d.Job.UUID] = d.Decision.Reason
	}
	want := map[uuid.UUID]statemachine.SkipReason{fatal.UUID: statemachine.SkipFatal, manual.UUID: statemachine.SkipAlreadyRescheduled}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got decisions %v, want %v", got, want)
	}
	off := crashedJob(t, s, newJob(), false)
	ds = decide(t, s, statemachine.AutoPolicy{})
	if len(ds) != 1 || ds[0].Job.UUID != off.UUID || ds[0].Decision.Reason != statemachine.SkipAutoOff {
		t.Errorf("switched off: got %s, want one declined, auto_reschedule_off", js(ds))
	}
	// Switched off, the decline is only marked: a history entry per crash would say the obvious.
	if h := entries(t, b, off.UUID, statemachine.EventAutoReschedule); len(h) != 0 {
		t.Errorf("switched off: got history %s, want none", js(h))
	}
	if j, err := b.Job(context.Background(), off.UUID); err != nil || j.Auto != statemachine.AutoDeclined {
		t.Errorf("switched off: got mark %q (%v), want declined", j.Auto, err)
	}
	// Decided once, a crash is not decided again when the policy changes.
	if ds := decide(t, s, policy); len(ds) != 0 {
		t.Errorf("decided again: %s", js(ds))
	}
	c.Advance(time.Hour)
	if r := due(t, s); len(r) != 0 {
		t.Errorf("rescheduled a declined crash: %s", js(r))
	}
	if n := len(entries(t, b, fin.UUID, statemachine.EventAutoReschedule)); n != 0 {
		t.Errorf("a finished job got %d decisions", n)
	}
}

func testAutoAfterManual(t *testing.T, open env) {
	s, b, c := clockedStore(t, open)
	job := crashedJob(t, s, newJob(), false)
	if ds := decide(t, s, policy); len(ds) != 1 || !ds[0].Decision.Planned {
		t.Fatalf("got %s, want planned", js(ds))
	}
	manual := reschedule(t, s, job.UUID, false)
	c.Advance(time.Minute)
	r := due(t, s)
	if len(r) != 1 || r[0].Created || r[0].Successor.UUID != manual.Successor.UUID {
		t.Fatalf("due after a manual reschedule: got %s, want the manual successor, not created", js(r))
	}
	h := entries(t, b, job.UUID, statemachine.EventReschedule)
	if len(h) != 2 || h[1].Verdict != statemachine.Duplicate || h[1].Origin != statemachine.OriginReschedule {
		t.Errorf("history: got %s, want the manual reschedule then an automatic duplicate", js(h))
	}
	if jobs, _, _ := s.Search(context.Background(), storage.Filter{}, storage.Page{Limit: 10}); len(jobs) != 2 {
		t.Errorf("got %d jobs, want 2", len(jobs))
	}
}

// testAutoConcurrent lets two stores decide and reschedule at once: each crash gets exactly one
// decision and exactly one successor.
func testAutoConcurrent(t *testing.T, open env) {
	b := open.backend(t)
	c := &manualClock{now: t0}
	stores := []*jobs.Service{
		open.service(t, b, jobs.Config{TopicPrefix: "org.example", Now: c.Now}),
		open.service(t, b, jobs.Config{TopicPrefix: "org.example", Now: c.Now}),
	}
	const jobs = 120 // more than one sweep batch
	var ids []uuid.UUID
	for range jobs {
		ids = append(ids, crashedJob(t, stores[0], newJob(), false).UUID)
	}
	decided := sweepConcurrently(t, 6, func(i int) (int, error) {
		d, err := stores[i%2].DecideAutoReschedules(context.Background(), policy)
		return len(d), err
	})
	c.Advance(time.Minute)
	made := sweepConcurrently(t, 6, func(i int) (int, error) {
		r, err := stores[i%2].RescheduleDue(context.Background())
		n := 0
		for _, x := range r {
			if x.Created {
				n++
			}
		}
		return n, err
	})
	if decided != jobs || made != jobs {
		t.Errorf("got %d decisions and %d successors, want %d of each", decided, made, jobs)
	}
	for _, id := range ids {
		if n := len(entries(t, b, id, statemachine.EventAutoReschedule)); n != 1 {
			t.Errorf("job %s: %d decisions, want 1", id, n)
		}
		if n := len(entries(t, b, id, statemachine.EventReschedule)); n != 1 {
			t.Errorf("job %s: %d reschedule entries, want 1", id, n)
		}
	}
	scheduled := 0
	for _, m := range outbox(t, b) {
		if m.Topic == "org.example.execdb.job.scheduled" {
			scheduled++
		}
	}
	if scheduled != 2*jobs {
		t.Errorf("got %d scheduled messages, want %d", scheduled, 2*jobs)
	}
}

// testAutoRequestIDTaken: a client created a job under the request id that the successor of a
// planned automatic reschedule would get. No retry can make that successor, so the sweep
// declines the reschedule, says why in the job's history, and still makes the other successors
// due in the same sweep; later sweeps leave the job alone.
func testAutoRequestIDTaken(t *testing.T, open env) {
	s, b, c := clockedStore(t, open)
	ctx := context.Background()
	blocked := crashedJob(t, s, newJob(), false)
	if ds := decide(t, s, policy); len(ds) != 1 || !ds[0].Decision.Planned {
		t.Fatalf("got decisions %s, want one planned", js(ds))
	}
	c.Advance(time.Second) // blocked is due first
	other := crashedJob(t, s, newJob(), false)
	if ds := decide(t, s, policy); len(ds) != 1 || !ds[0].Decision.Planned {
		t.Fatalf("got decisions %s, want one planned", js(ds))
	}
	n := newJob()
	n.TaskName = "squatter"
	n.RequestID = "reschedule:" + blocked.UUID.String()
	squatter := create(t, s, n)

	c.Advance(time.Minute)
	r, err := s.RescheduleDue(ctx)
	if err != nil {
		t.Fatalf("due: got error %v, want none: a taken request id declines the reschedule", err)
	}
	got := map[uuid.UUID]jobs.RescheduleResult{}
	for _, x := range r {
		got[x.Parent.UUID] = x
	}
	if d := got[blocked.UUID]; len(r) != 2 || d.Declined != statemachine.SkipRequestIDTaken || d.Created || d.Successor.UUID != uuid.Nil {
		t.Fatalf("due: got %s, want the blocked job declined (successor_request_id_taken) and the other rescheduled", js(r))
	}
	if o := got[other.UUID]; !o.Created || o.Successor.Attempt != 2 || o.Successor.RescheduledFrom == nil || *o.Successor.RescheduledFrom != other.UUID {
		t.Errorf("the other due job: got %s, want its successor", js(o))
	}

	if j, _ := b.Job(ctx, blocked.UUID); j.RescheduledTo != nil || j.State != statemachine.Crashed {
		t.Errorf("blocked job: got %s, want CRASHED without a successor", js(j))
	}
	h := entries(t, b, blocked.UUID, statemachine.EventAutoReschedule)
	if len(h) != 2 || h[0].Verdict != statemachine.Applied || h[1].Verdict != statemachine.Declined || h[1].Origin != statemachine.OriginReschedule {
		t.Fatalf("blocked job's decisions: got %s, want planned, then declined", js(h))
	}
	d := detailOf(t, h[1])
	if d["decision"] != "declined" || d["reason"] != "successor_request_id_taken" || d["taken_by"] != squatter.UUID.String() ||
		d["request_id"] != "reschedule:"+blocked.UUID.String() || d["attempt"] != float64(1) {
		t.Errorf("decline detail: got %s", h[1].Detail)
	}
	if n := len(entries(t, b, blocked.UUID, statemachine.EventReschedule)); n != 0 {
		t.Errorf("blocked job: %d reschedule entries, want none", n)
	}
	if j, _ := b.Job(ctx, squatter.UUID); j.Attempt != 1 || j.RescheduledFrom != nil || j.State != statemachine.Scheduled {
		t.Errorf("the client's job changed: %s", js(j))
	}
	if m := messagesFor(t, b, squatter.UUID); len(m) != 1 {
		t.Errorf("the client's job: %d messages, want its own scheduled one", len(m))
	}

	c.Advance(time.Hour)
	if r, err := s.RescheduleDue(ctx); len(r) != 0 || err != nil {
		t.Errorf("a later sweep: got %s (%v), want nothing", js(r), err)
	}
	if ds := decide(t, s, policy); len(ds) != 0 {
		t.Errorf("decided about the declined job again: %s", js(ds))
	}
	if h := entries(t, b, blocked.UUID, statemachine.EventAutoReschedule); len(h) != 2 {
		t.Errorf("blocked job: %d decisions after later sweeps, want 2", len(h))
	}
}

// testRescheduleRequestIDTaken: by hand, a job whose successor's request id a client took is a
// conflict; in bulk it is skipped with the reason, and the bulk goes on.
func testRescheduleRequestIDTaken(t *testing.T, open env) {
	s, b := newStore(t, open)
	ctx := context.Background()
	blocked := crashedJob(t, s, newJob(), false)
	plain := crashedJob(t, s, newJob(), false)
	n := newJob()
	n.TaskName = "squatter"
	n.RequestID = "reschedule:" + blocked.UUID.String()
	squatter := create(t, s, n)

	_, err := s.Reschedule(ctx, blocked.UUID, jobs.RescheduleOptions{}, httpMeta("r"))
	if !errors.Is(err, storage.ErrConflict) || !strings.Contains(err.Error(), squatter.UUID.String()) {
		t.Errorf("reschedule: got %v, want ErrConflict naming job %s", err, squatter.UUID)
	}
	res, err := s.RescheduleBulk(ctx, parseFilter(t, s, "taskname=rpmlint&state=CRASHED"), false, jobs.RescheduleOptions{}, httpMeta("bulk"))
	if err != nil {
		t.Fatalf("bulk: %v", err)
	}
	got := map[uuid.UUID]string{}
	for _, it := range res.Items {
		got[it.UUID] = fmt.Sprintf("%s/%s/%v", it.Outcome, it.Reason, it.Successor != nil)
	}
	want := map[uuid.UUID]string{
		blocked.UUID: "skipped/successor_request_id_taken/false",
		plain.UUID:   "rescheduled//true",
	}
	if !reflect.DeepEqual(got, want) || res.Rescheduled != 1 || res.Skipped != 1 {
		t.Errorf("bulk: got %s, want %v", js(res), want)
	}
	if n := len(entries(t, b, blocked.UUID, statemachine.EventReschedule)); n != 0 {
		t.Errorf("blocked job: %d reschedule entries, want none", n)
	}
}

// faultyBackend makes LockJob fail for one job, as for a job whose row cannot be read or
// written; every other job works.
type faultyBackend struct {
	storage.Backend
	mu   sync.Mutex
	fail uuid.UUID
}

var errInjected = errors.New("injected failure")

func (b *faultyBackend) failOn(id uuid.UUID) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.fail = id
}

func (b *faultyBackend) InTx(ctx context.Context, fn func(storage.Tx) error) error {
	b.mu.Lock()
	fail := b.fail
	b.mu.Unlock()
	return b.Backend.InTx(ctx, func(tx storage.Tx) error { return fn(faultyTx{Tx: tx, fail: fail}) })
}

type faultyTx struct {
	storage.Tx
	fail uuid.UUID
}

func (t faultyTx) Load(ctx context.Context, l storage.Load) (storage.Loaded, error) {
	if slices.Contains(l.Jobs, t.fail) {
		return storage.Loaded{}, errInjected
	}
	return t.Tx.Load(ctx, l)
}

// testSweepJobFailure: a job a sweep fails on is rolled back alone, reported in a
// *jobs.SweepError, and tried again next sweep; the sweep handles the jobs after it.
func testSweepJobFailure(t *testing.T, open env) {
	ctx := context.Background()
	setup := func(t *testing.T) (*jobs.Service, *faultyBackend, *manualClock) {
		fb := &faultyBackend{Backend: open.backend(t)}
		c := &manualClock{now: t0}
		return open.service(t, fb, jobs.Config{TopicPrefix: "org.example", Now: c.Now}), fb, c
	}
	failedOn := func(t *testing.T, err error, bad uuid.UUID) {
		t.Helper()
		var se *jobs.SweepError
		if !errors.As(err, &se) || se.Err != nil || len(se.Jobs) != 1 || se.Jobs[0].JobUUID != bad || !errors.Is(err, errInjected) {
			t.Fatalf("got error %v, want a *jobs.SweepError for job %s alone", err, bad)
		}
	}

	t.Run("Watchdog", func(t *testing.T) {
		s, fb, c := setup(t)
		bad := create(t, s, newJob()).UUID // overdue first
		c.Advance(time.Second)
		good := create(t, s, newJob()).UUID
		c.Advance(3 * time.Hour)
		fb.failOn(bad)
		crashed, err := s.Watchdog(ctx, timeouts)
		failedOn(t, err, bad)
		if len(crashed) != 1 || crashed[0].Job.UUID != good {
			t.Fatalf("got crashes %s, want the good job's", js(crashed))
		}
		if j, _ := fb.Job(ctx, bad); j.State != statemachine.Scheduled || len(entries(t, fb, bad, statemachine.EventEnd)) != 0 {
			t.Errorf("the failed job: got %s, want it untouched", js(j))
		}
		fb.failOn(uuid.Nil)
		if crashed, err := s.Watchdog(ctx, timeouts); err != nil || len(crashed) != 1 || crashed[0].Job.UUID != bad {
			t.Errorf("next sweep: got %s (%v), want the failed job crashed", js(crashed), err)
		}
	})

	t.Run("DecideAutoReschedules", func(t *testing.T) {
		s, fb, c := setup(t)
		bad := crashedJob(t, s, newJob(), false).UUID // undecided first
		c.Advance(time.Second)
		good := crashedJob(t, s, newJob(), false).UUID
		fb.failOn(bad)
		ds, err := s.DecideAutoReschedules(ctx, policy)
		failedOn(t, err, bad)
		if len(ds) != 1 || ds[0].Job.UUID != good || !ds[0].Decision.Planned {
			t.Fatalf("got decisions %s, want the good job planned", js(ds))
		}
		if n := len(entries(t, fb, bad, statemachine.EventAutoReschedule)); n != 0 {
			t.Errorf("the failed job: %d decisions, want none", n)
		}
		fb.failOn(uuid.Nil)
		if ds, err := s.DecideAutoReschedules(ctx, policy); err != nil || len(ds) != 1 || ds[0].Job.UUID != bad {
			t.Errorf("next sweep: got %s (%v), want the failed job decided", js(ds), err)
		}
	})

	t.Run("RescheduleDue", func(t *testing.T) {
		s, fb, c := setup(t)
		bad := crashedJob(t, s, newJob(), false).UUID
		decide(t, s, policy) // due first
		c.Advance(time.Second)
		good := crashedJob(t, s, newJob(), false).UUID
		decide(t, s, policy)
		c.Advance(time.Minute)
		fb.failOn(bad)
		r, err := s.RescheduleDue(ctx)
		failedOn(t, err, bad)
		if len(r) != 1 || r[0].Parent.UUID != good || !r[0].Created {
			t.Fatalf("got %s, want the good job's successor", js(r))
		}
		if j, _ := fb.Job(ctx, bad); j.RescheduledTo != nil || len(entries(t, fb, bad, statemachine.EventReschedule)) != 0 {
			t.Errorf("the failed job: got %s, want it untouched", js(j))
		}
		fb.failOn(uuid.Nil)
		if r, err := s.RescheduleDue(ctx); err != nil || len(r) != 1 || r[0].Parent.UUID != bad || !r[0].Created {
			t.Errorf("next sweep: got %s (%v), want the failed job's successor", js(r), err)
		}
	})
}

func testRetryStats(t *testing.T, open env) {
	s, _ := newStore(t, open)
	ctx := context.Background()
	type spec struct {
		cause   statemachine.Cause
		reason  string
		outcome statemachine.State // the successor's state; "" for no successor
	}
	specs := []spec{
		{statemachine.CauseMinion, "TIMED_OUT", statemachine.Finished},
		{statemachine.CauseMinion, "TIMED_OUT", statemachine.Finished},
		{statemachine.CauseMinion, "TIMED_OUT", statemachine.Crashed},
		{statemachine.CauseMinion, "BACKING_STORE", statemachine.Scheduled},
		{statemachine.CauseMinion, "BACKING_STORE", statemachine.Running},
		{statemachine.CauseNetwork, "", statemachine.Crashed},
		{statemachine.CauseNetwork, "", statemachine.Crashed},
		{statemachine.CauseNetwork, "", ""},
		{statemachine.CauseTask, "OOM", ""},
	}
	for _, sp := range specs {
		j := create(t, s, newJob())
		var kv statemachine.KeyVals
		if sp.reason != "" {
			kv = statemachine.KeyVals{"reason": {sp.reason}}
		}
		apply(t, s, j.UUID, crash(sp.cause, kv))
		if sp.outcome == "" {
			continue
		}
		succ := reschedule(t, s, j.UUID, false).Successor.UUID
		switch sp.outcome {
		case statemachine.Finished:
			apply(t, s, succ, finish())
		case statemachine.Crashed:
			apply(t, s, succ, crash(sp.cause, kv))
		case statemachine.Running:
			apply(t, s, succ, start(nil))
		}
	}
	retry := func(query string, groupBy ...storage.Field) storage.RetryStatsResult {
		t.Helper()
		res, err := s.RetryStats(ctx, storage.StatsQuery{Filter: parseFilter(t, s, query), GroupBy: groupBy})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	type row struct {
		group                                   string
		rescheduled, finished, crashed, pending int64
		rate                                    float64 // -1: null
	}
	flatten := func(res storage.RetryStatsResult, groupBy ...storage.Field) []row {
		var out []row
		for _, r := range res.Rows {
			g := fmt.Sprint(deref(r.Group, groupBy))
			rate := -1.0
			if r.SuccessRate != nil {
				rate = *r.SuccessRate
			}
			out = append(out, row{g, r.Rescheduled, r.Finished, r.Crashed, r.Pending, rate})
		}
		return out
	}
	res := retry("state=CRASHED", storage.FieldCause)
	want := []row{
		{"[minion]", 5, 2, 1, 2, 2.0 / 3},
		{"[network]", 2, 0, 2, 0, 0},
	}
	if got := flatten(res, storage.FieldCause); res.Total != 7 || !reflect.DeepEqual(got, want) {
		t.Errorf("by cause: got total %d %+v\nwant total 7 %+v", res.Total, got, want)
	}
	// The successors that crashed again are rescheduled crashes only once they are rescheduled.
	res = retry("cause=minion", storage.FieldCause, storage.Field("kv.reason"))
	want = []row{
		{"[minion TIMED_OUT]", 3, 2, 1, 0, 2.0 / 3},
		{"[minion BACKING_STORE]", 2, 0, 0, 2, -1},
	}
	if got := flatten(res, storage.FieldCause, "kv.reason"); res.Total != 5 || !reflect.DeepEqual(got, want) {
		t.Errorf("minion by reason: got total %d %+v\nwant total 5 %+v", res.Total, got, want)
	}
	res = retry("")
	if got := flatten(res); res.Total != 7 || !reflect.DeepEqual(got, []row{{"[]", 7, 2, 3, 2, 2.0 / 5}}) {
		t.Errorf("ungrouped: got total %d %+v", res.Total, got)
	}
	res = retry("cause=task", storage.FieldCause)
	if res.Total != 0 || len(res.Rows) != 0 || res.Rows == nil {
		t.Errorf("nothing rescheduled: got %s, want total 0 and no rows", js(res))
	}
	res, err := s.RetryStats(ctx, storage.StatsQuery{Filter: parseFilter(t, s, "state=CRASHED"), GroupBy: []storage.Field{storage.FieldFatal}, Bucket: storage.BucketDay})
	if err != nil || len(res.Rows) != 1 || res.Rows[0].Bucket == nil || !res.Rows[0].Bucket.Equal(t0.Truncate(24*time.Hour)) ||
		*res.Rows[0].Group[storage.FieldFatal] != "false" || res.Rows[0].Rescheduled != 7 {
		t.Errorf("by fatal, bucketed by day: got %s %v", js(res), err)
	}
}

// testAutoWithTheCrash: a service with a policy decides about a crash in the unit of work that
// crashes the job, whichever way it crashed (an end over HTTP, one from the bus, the
// watchdog): the mark and the decision's history entry commit with the crash, and the sweep
// finds nothing left to decide. Switched off, the crash is marked declined, silently.
func testAutoWithTheCrash(t *testing.T, open env) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		policy statemachine.AutoPolicy
		want   statemachine.AutoMark
	}{{"on", policy, statemachine.AutoPlanned}, {"off", statemachine.AutoPolicy{}, statemachine.AutoDeclined}} {
		t.Run(tc.name, func(t *testing.T) {
			b := open.backend(t)
			c := &manualClock{now: t0}
			p := tc.policy
			var commits []jobs.Commit
			var mu sync.Mutex
			s := open.service(t, b, jobs.Config{TopicPrefix: "org.example", Now: c.Now, AutoReschedule: &p,
				OnCommit: func(cm jobs.Commit) { mu.Lock(); commits = append(commits, cm); mu.Unlock() }})
			overHTTP := crashedJob(t, s, newJob(), false)
			fromBus := create(t, s, newJob())
			if _, err := s.ApplyBus(ctx, []jobs.BusMessage{busEnd("end-1", fromBus.UUID, statemachine.Crashed, statemachine.CauseMinion)}); err != nil {
				t.Fatal(err)
			}
			overdue := create(t, s, newJob())
			c.Advance(48 * time.Hour)
			if _, err := s.Watchdog(ctx, statemachine.Timeouts{Schedule: time.Hour}); err != nil {
				t.Fatal(err)
			}
			for _, id := range []uuid.UUID{overHTTP.UUID, fromBus.UUID, overdue.UUID} {
				j, err := b.Job(ctx, id)
				if err != nil || j.State != statemachine.Crashed || j.Auto != tc.want {
					t.Errorf("job %s: got %s marked %q (%v), want CRASHED marked %q", id, j.State, j.Auto, err, tc.want)
				}
				h := entries(t, b, id, statemachine.EventAutoReschedule)
				if tc.want == statemachine.AutoPlanned && (len(h) != 1 || h[0].Verdict != statemachine.Applied || h[0].Origin != statemachine.OriginReschedule) {
					t.Errorf("job %s: decision history %s, want one planned entry", id, js(h))
				}
				if tc.want == statemachine.AutoDeclined && len(h) != 0 {
					t.Errorf("job %s: decision history %s, want none while switched off", id, js(h))
				}
			}
			if ds := decide(t, s, tc.policy); len(ds) != 0 {
				t.Errorf("the sweep decided again: %s", js(ds))
			}
			// The commit hook heard each decision with its crash, in the same commit.
			mu.Lock()
			defer mu.Unlock()
			decided := 0
			for _, cm := range commits {
				for i, ev := range cm.Events {
					if ev.Kind != statemachine.EventAutoReschedule {
						continue
					}
					decided++
					if ev.Auto == nil || !ev.Auto.Planned || i == 0 || cm.Events[i-1].Result.Job.State != statemachine.Crashed {
						t.Errorf("decision event %+v: want a planned decision right after its crash", ev)
					}
				}
			}
			if want := map[bool]int{true: 3, false: 0}[tc.want == statemachine.AutoPlanned]; decided != want {
				t.Errorf("the commit hook heard %d decisions, want %d", decided, want)
			}
		})
	}
}
