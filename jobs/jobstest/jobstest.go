// Package jobstest is the job service's suite, run over every storage backend: it states once
// what creating, applying, bus batches, parking, rescheduling, the sweeps, search, statistics
// and pruning do, as the service and the backend do it together. Call Run with a function that
// opens a fresh, empty, migrated backend. (What a backend alone must do is storage/storagetest's.)
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

// Open returns a fresh, empty, migrated backend and arranges for it to be closed at the end of
// the test.
type Open func(t *testing.T) storage.Backend

// Options vary how the suite's services are made.
type Options struct {
	// GroupCommit is given to every service the suite makes: the suite's semantics hold
	// with writes grouped as without.
	GroupCommit jobs.GroupCommit
}

// env is what every test gets: fresh backends, and services over them made the suite's way.
type env struct {
	open Open
	opts Options
}

func (e env) backend(t *testing.T) storage.Backend { return e.open(t) }

// service is jobs.New with the suite's options; it is closed when the test ends.
func (e env) service(t *testing.T, b storage.Backend, cfg jobs.Config) *jobs.Service {
	cfg.GroupCommit = e.opts.GroupCommit
	s := jobs.New(b, cfg)
	t.Cleanup(s.Close)
	return s
}

// test is one conformance test.
type test struct {
	name string
	fn   func(t *testing.T, open env)
}

// Run runs the whole suite against the backends open makes, with opts.
func Run(t *testing.T, open Open, opts Options) {
	for _, group := range [][]test{coreTests, searchTests, busTests, rescheduleTests, hostileTests, pruneTests} {
		for _, tc := range group {
			t.Run(tc.name, func(t *testing.T) { tc.fn(t, env{open, opts}) })
		}
	}
}

// RunSearch runs the suite's search and statistics tests alone, for a backend that can answer
// them in another way than Run's (storage/postgres: in SQL where it would count in Go).
func RunSearch(t *testing.T, open Open) {
	for _, tc := range searchTests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, env{open, Options{}}) })
	}
}

// coreTests cover creating jobs, transitions, history and the outbox.
var coreTests = []test{
	{"CreateIssuesUUIDv7AndDefaults", testCreateDefaults},
	{"CreateHonoursClientUUID", testCreateClientUUID},
	{"CreateIsIdempotentOnRequestID", testCreateIdempotent},
	{"CreateRejectsTakenUUID", testCreateTakenUUID},
	{"CreateRejectsRequestIDOfAnotherJob", testCreateRequestIDOfAnotherJob},
	{"KeyValuesRoundTrip", testKeyValuesRoundTrip},
	{"Transitions", testTransitions},
	{"LateStartFillsWhatOnlyTheStartKnows", testLateStart},
	{"HistoryRecordsEveryEvent", testHistory},
	{"OutboxHoldsMessagesInCommitOrder", testOutbox},
	{"OutboxMessagesForFedoraMessaging", testOutboxFedoraMessaging},
	{"ApplyToUnknownJob", testUnknownJob},
	{"ConcurrentWritersOnOneJob", testConcurrentWriters},
	{"ConcurrentCreatesWithOneRequestID", testConcurrentCreates},
}

var t0 = time.Date(2026, 11, 2, 10, 0, 0, 123456000, time.UTC)

// clock is a deterministic Store clock that advances a second a call.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(time.Second)
	return c.now
}

func newStore(t *testing.T, open env) (*jobs.Service, storage.Backend) {
	t.Helper()
	b := open.backend(t)
	c := &clock{now: t0}
	return open.service(t, b, jobs.Config{TopicPrefix: "org.example", Now: c.Now}), b
}

func httpMeta(id string) statemachine.Meta {
	return statemachine.Meta{Origin: statemachine.OriginHTTP, MessageID: id, Actor: "tester"}
}

func newJob() statemachine.NewJob {
	return statemachine.NewJob{TaskName: "rpmlint", Item: "foo-1.0-1.fc45", ItemType: "koji_build"}
}

func create(t *testing.T, s *jobs.Service, n statemachine.NewJob) statemachine.Job {
	t.Helper()
	res, err := s.Create(context.Background(), n, httpMeta("create-"+n.RequestID))
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	return res.Job
}

func start(at *time.Time) statemachine.Event {
	return statemachine.Event{Meta: httpMeta("start"), Start: &statemachine.Start{StartedAt: at,
		Runner: &statemachine.Runner{Name: "buildbot", JobID: "all/1", Worker: "client-1", URL: "http://bb/1"}}}
}

func finish() statemachine.Event {
	return statemachine.Event{Meta: httpMeta("finish"), End: &statemachine.End{State: statemachine.Finished,
		ArtifactsURL: "http://artifacts/1", LogURL: "http://logs/1"}}
}

func crash(cause statemachine.Cause, kv statemachine.KeyVals) statemachine.Event {
	return statemachine.Event{Meta: httpMeta("crash"), End: &statemachine.End{State: statemachine.Crashed,
		Crash: &statemachine.Crash{Notify: statemachine.NotifyTaskotron, Cause: cause, KeyVals: kv}}}
}

func apply(t *testing.T, s *jobs.Service, id uuid.UUID, ev statemachine.Event) jobs.Result {
	t.Helper()
	res, err := s.Apply(context.Background(), id, ev)
	if err != nil {
		t.Fatalf("apply %s: %v", ev.Kind(), err)
	}
	return res
}

// readBack reads the job from the backend and checks it equals what the store answered.
func readBack(t *testing.T, b storage.Backend, want statemachine.Job) statemachine.Job {
	t.Helper()
	got, err := b.Job(context.Background(), want.UUID)
	if err != nil {
		t.Fatalf("read job %s: %v", want.UUID, err)
	}
	if !reflect.DeepEqual(normal(got), normal(want)) {
		t.Fatalf("stored job differs from the answered one\n got %s\nwant %s", js(got), js(want))
	}
	return got
}

// normal makes empty and nil maps compare equal.
func normal(j statemachine.Job) statemachine.Job {
	if len(j.Data) == 0 {
		j.Data = nil
	}
	if j.Crash != nil {
		c := *j.Crash
		if len(c.KeyVals) == 0 {
			c.KeyVals = nil
		}
		j.Crash = &c
	}
	return j
}

func js(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func testCreateDefaults(t *testing.T, open env) {
	s, b := newStore(t, open)
	res, err := s.Create(context.Background(), newJob(), httpMeta("r1"))
	if err != nil {
		t.Fatal(err)
	}
	j := res.Job
	if !res.Created || res.Verdict != statemachine.Applied {
		t.Errorf("got created=%v verdict=%s, want true applied", res.Created, res.Verdict)
	}
	if j.UUID.Version() != 7 {
		t.Errorf("got uuid version %d, want 7", j.UUID.Version())
	}
	if j.State != statemachine.Scheduled || j.Arch != "noarch" || j.Attempt != 1 {
		t.Errorf("got state=%s arch=%s attempt=%d, want SCHEDULED noarch 1", j.State, j.Arch, j.Attempt)
	}
	if j.RequestID != j.UUID.String() {
		t.Errorf("got request_id %q, want the uuid %s", j.RequestID, j.UUID)
	}
	if j.CreatedAt.IsZero() || j.StartedAt != nil || j.FinishedAt != nil || j.Crash != nil {
		t.Errorf("got times created=%v started=%v finished=%v crash=%v", j.CreatedAt, j.StartedAt, j.FinishedAt, j.Crash)
	}
	readBack(t, b, j)
}

func testCreateClientUUID(t *testing.T, open env) {
	s, b := newStore(t, open)
	n := newJob()
	n.UUID = uuid.MustParse("7d0c4e1e-3b1f-4b43-9a55-4f9a2b7c1d00")
	n.Arch = "x86_64"
	n.RequestID = "trigger-42"
	n.Source = &statemachine.Source{MsgID: "2026-abc", Topic: "org.fedoraproject.prod.buildsys.build.state.change"}
	j := create(t, s, n)
	if j.UUID != n.UUID || j.Arch != "x86_64" || j.RequestID != "trigger-42" {
		t.Errorf("got uuid=%s arch=%s request_id=%s, want the requested ones", j.UUID, j.Arch, j.RequestID)
	}
	got := readBack(t, b, j)
	if got.Source == nil || *got.Source != *n.Source {
		t.Errorf("got source %+v, want %+v", got.Source, n.Source)
	}
}

func testCreateIdempotent(t *testing.T, open env) {
	s, b := newStore(t, open)
	n := newJob()
	n.RequestID = "req-1"
	first := create(t, s, n)
	again, err := s.Create(context.Background(), n, httpMeta("again"))
	if err != nil {
		t.Fatal(err)
	}
	if again.Created || again.Verdict != statemachine.Duplicate || again.Job.UUID != first.UUID {
		t.Errorf("got created=%v verdict=%s uuid=%s, want false duplicate %s", again.Created, again.Verdict, again.Job.UUID, first.UUID)
	}
	// A create naming its uuid but no request id is idempotent too.
	n2 := newJob()
	n2.UUID = uuid.New()
	create(t, s, n2)
	res, err := s.Create(context.Background(), n2, httpMeta("again2"))
	if err != nil || res.Created {
		t.Errorf("repeat of a create with a uuid: got created=%v err=%v, want false nil", res.Created, err)
	}
	msgs := outbox(t, b)
	if len(msgs) != 2 {
		t.Errorf("got %d outbox messages, want 2 (one per new job)", len(msgs))
	}
	hist, _ := b.History(context.Background(), first.UUID)
	if len(hist) != 2 || hist[1].Verdict != statemachine.Duplicate {
		t.Errorf("got history %s, want create applied then duplicate", js(hist))
	}
}

func testCreateRequestIDOfAnotherJob(t *testing.T, open env) {
	s, _ := newStore(t, open)
	n := newJob()
	n.RequestID = "trigger-1"
	first := create(t, s, n)
	n.UUID = uuid.New() // the same request, naming another uuid
	_, err := s.Create(context.Background(), n, httpMeta("again"))
	if !errors.Is(err, storage.ErrConflict) || !strings.Contains(err.Error(), first.UUID.String()) {
		t.Errorf("got %v, want ErrConflict naming job %s", err, first.UUID)
	}
}

func testCreateTakenUUID(t *testing.T, open env) {
	s, _ := newStore(t, open)
	n := newJob()
	n.UUID = uuid.New()
	n.RequestID = "a"
	create(t, s, n)
	n.RequestID = "b"
	_, err := s.Create(context.Background(), n, httpMeta("b"))
	if !errors.Is(err, storage.ErrConflict) {
		t.Errorf("got %v, want ErrConflict", err)
	}
}

func testKeyValuesRoundTrip(t *testing.T, open env) {
	s, b := newStore(t, open)
	n := newJob()
	n.Data = statemachine.KeyVals{"critpath_pkgs": {"zsh", "bash", "acl"}, "koji_tag": {"f45-updates-testing"}}
	j := create(t, s, n)
	got := readBack(t, b, j)
	if !reflect.DeepEqual(got.Data, n.Data) {
		t.Errorf("got data %v, want %v (values in order)", got.Data, n.Data)
	}
	kv := statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {"TIMED_OUT", "RETRIED"}}
	res := apply(t, s, j.UUID, crash(statemachine.CauseMinion, kv))
	got = readBack(t, b, res.Job)
	if got.Crash == nil || !reflect.DeepEqual(got.Crash.KeyVals, kv) {
		t.Errorf("got crash %+v, want keyvals %v", got.Crash, kv)
	}
}

func testTransitions(t *testing.T, open env) {
	s, b := newStore(t, open)
	startedAt := t0.Add(-time.Minute)
	cases := []struct {
		name    string
		prepare []statemachine.Event
		event   statemachine.Event
		verdict statemachine.Verdict
		state   statemachine.State
	}{
		{"start scheduled", nil, start(&startedAt), statemachine.Applied, statemachine.Running},
		{"start running", []statemachine.Event{start(nil)}, start(nil), statemachine.Duplicate, statemachine.Running},
		{"start finished", []statemachine.Event{start(nil), finish()}, start(nil), statemachine.Late, statemachine.Finished},
		{"start crashed", []statemachine.Event{crash(statemachine.CauseTask, nil)}, start(nil), statemachine.Late, statemachine.Crashed},
		{"finish scheduled", nil, finish(), statemachine.Applied, statemachine.Finished},
		{"finish running", []statemachine.Event{start(nil)}, finish(), statemachine.Applied, statemachine.Finished},
		{"crash running", []statemachine.Event{start(nil)}, crash(statemachine.CauseNetwork, nil), statemachine.Applied, statemachine.Crashed},
		{"finish finished", []statemachine.Event{finish()}, finish(), statemachine.Duplicate, statemachine.Finished},
		{"crash crashed same", []statemachine.Event{crash(statemachine.CauseTask, nil)}, crash(statemachine.CauseTask, nil), statemachine.Duplicate, statemachine.Crashed},
		{"crash crashed other cause", []statemachine.Event{crash(statemachine.CauseTask, nil)}, crash(statemachine.CauseMinion, nil), statemachine.Conflict, statemachine.Crashed},
		{"crash finished", []statemachine.Event{finish()}, crash(statemachine.CauseTask, nil), statemachine.Conflict, statemachine.Finished},
		{"finish crashed", []statemachine.Event{crash(statemachine.CauseTask, nil)}, finish(), statemachine.Conflict, statemachine.Crashed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			j := create(t, s, newJob())
			for _, ev := range tc.prepare {
				apply(t, s, j.UUID, ev)
			}
			before, _ := b.Job(context.Background(), j.UUID)
			res := apply(t, s, j.UUID, tc.event)
			if res.Verdict != tc.verdict || res.Job.State != tc.state {
				t.Fatalf("got %s → %s, want %s → %s", res.Verdict, res.Job.State, tc.verdict, tc.state)
			}
			got := readBack(t, b, res.Job)
			if tc.verdict == statemachine.Conflict || tc.verdict == statemachine.Duplicate {
				if !reflect.DeepEqual(normal(got), normal(before)) {
					t.Errorf("a %s changed the job\n got %s\nwant %s", tc.verdict, js(got), js(before))
				}
			}
		})
	}
}

func testLateStart(t *testing.T, open env) {
	s, b := newStore(t, open)
	j := create(t, s, newJob())
	apply(t, s, j.UUID, finish())
	startedAt := j.CreatedAt.Add(500 * time.Millisecond) // between the create and the end
	res := apply(t, s, j.UUID, start(&startedAt))
	if res.Verdict != statemachine.Late || res.Job.State != statemachine.Finished {
		t.Fatalf("got %s → %s, want late → FINISHED", res.Verdict, res.Job.State)
	}
	got := readBack(t, b, res.Job)
	if got.StartedAt == nil || !got.StartedAt.Equal(startedAt) || got.Runner == nil {
		t.Errorf("got started_at=%v runner=%v, want %v and the start's runner", got.StartedAt, got.Runner, startedAt)
	}

	// A late start without a time of its own, received after the end, gets the end's time: it
	// cannot have started after it ended (CONTRACT section 1 and 2, v1.1).
	j = create(t, s, newJob())
	ended := apply(t, s, j.UUID, finish()).Job
	got = readBack(t, b, apply(t, s, j.UUID, start(nil)).Job)
	if got.StartedAt == nil || !got.StartedAt.Equal(*ended.FinishedAt) || got.Runner == nil {
		t.Errorf("late start without a time: got started_at=%v runner=%v, want %v and the start's runner", got.StartedAt, got.Runner, ended.FinishedAt)
	}
}

func testHistory(t *testing.T, open env) {
	s, b := newStore(t, open)
	j := create(t, s, newJob())
	apply(t, s, j.UUID, start(nil))
	apply(t, s, j.UUID, start(nil))
	crashEv := crash(statemachine.CauseMinion, nil)
	crashEv.Origin, crashEv.MessageID, crashEv.Actor = statemachine.OriginAMQP, "msg-9", ""
	apply(t, s, j.UUID, crashEv)
	apply(t, s, j.UUID, finish())
	apply(t, s, j.UUID, start(nil))
	hist, err := b.History(context.Background(), j.UUID)
	if err != nil {
		t.Fatal(err)
	}
	want := []struct {
		kind     statemachine.EventKind
		verdict  statemachine.Verdict
		from, to statemachine.State
	}{
		{statemachine.EventCreate, statemachine.Applied, "", statemachine.Scheduled},
		{statemachine.EventStart, statemachine.Applied, statemachine.Scheduled, statemachine.Running},
		{statemachine.EventStart, statemachine.Duplicate, statemachine.Running, statemachine.Running},
		{statemachine.EventEnd, statemachine.Applied, statemachine.Running, statemachine.Crashed},
		{statemachine.EventEnd, statemachine.Conflict, statemachine.Crashed, statemachine.Crashed},
		{statemachine.EventStart, statemachine.Late, statemachine.Crashed, statemachine.Crashed},
	}
	if len(hist) != len(want) {
		t.Fatalf("got %d history entries, want %d: %s", len(hist), len(want), js(hist))
	}
	for i, w := range want {
		h := hist[i]
		if h.Kind != w.kind || h.Verdict != w.verdict || h.StateFrom != w.from || h.StateTo != w.to || h.JobUUID != j.UUID {
			t.Errorf("entry %d: got %s %s %s→%s, want %s %s %s→%s", i, h.Kind, h.Verdict, h.StateFrom, h.StateTo, w.kind, w.verdict, w.from, w.to)
		}
		if i > 0 && h.ID <= hist[i-1].ID {
			t.Errorf("entry %d: ids not increasing", i)
		}
	}
	if h := hist[3]; h.Origin != statemachine.OriginAMQP || h.MessageID != "msg-9" || h.Actor != "" {
		t.Errorf("crash entry: got origin=%s message_id=%s actor=%q, want amqp msg-9 \"\"", h.Origin, h.MessageID, h.Actor)
	}
	if h := hist[1]; h.Origin != statemachine.OriginHTTP || h.Actor != "tester" || h.RecordedAt.IsZero() {
		t.Errorf("start entry: got origin=%s actor=%q recorded_at=%v, want http tester and a time", h.Origin, h.Actor, h.RecordedAt)
	}
	var detail struct {
		State string `json:"state"`
		Crash struct {
			Cause string `json:"cause"`
		} `json:"crash"`
	}
	if err := json.Unmarshal(hist[4].Detail, &detail); err != nil || detail.State != "FINISHED" {
		t.Errorf("conflict entry detail: got %s (%v), want the conflicting FINISHED report", hist[4].Detail, err)
	}
}

func outbox(t *testing.T, b storage.Backend) []storage.OutboxMessage {
	t.Helper()
	msgs, err := b.Outbox(context.Background(), 0, 1000)
	if err != nil {
		t.Fatalf("read outbox: %v", err)
	}
	return msgs
}

func testOutbox(t *testing.T, open env) {
	s, b := newStore(t, open)
	a := create(t, s, newJob())
	c := create(t, s, newJob())
	apply(t, s, a.UUID, start(nil))
	apply(t, s, c.UUID, finish())
	apply(t, s, a.UUID, start(nil)) // duplicate: no message
	apply(t, s, a.UUID, crash(statemachine.CauseTask, statemachine.KeyVals{"reason": {"OOM"}}))
	apply(t, s, a.UUID, finish()) // conflict: no message
	msgs := outbox(t, b)
	want := []struct {
		job   uuid.UUID
		topic string
		prev  any
	}{
		{a.UUID, "org.example.execdb.job.scheduled", nil},
		{c.UUID, "org.example.execdb.job.scheduled", nil},
		{a.UUID, "org.example.execdb.job.running", "SCHEDULED"},
		{c.UUID, "org.example.execdb.job.finished", "SCHEDULED"},
		{a.UUID, "org.example.execdb.job.crashed.taskotron.task", "RUNNING"},
	}
	if len(msgs) != len(want) {
		t.Fatalf("got %d messages, want %d", len(msgs), len(want))
	}
	ids := map[uuid.UUID]bool{}
	for i, w := range want {
		m := msgs[i]
		var body map[string]any
		if err := json.Unmarshal(m.Body, &body); err != nil {
			t.Fatalf("message %d: body is not JSON: %v", i, err)
		}
		if m.JobUUID != w.job || m.Topic != w.topic || body["previous_state"] != w.prev || body["uuid"] != w.job.String() {
			t.Errorf("message %d: got %s %s previous_state=%v, want %s %s %v", i, m.JobUUID, m.Topic, body["previous_state"], w.job, w.topic, w.prev)
		}
		if i > 0 && m.ID <= msgs[i-1].ID {
			t.Errorf("message %d: ids not increasing", i)
		}
		if m.MessageID == uuid.Nil || ids[m.MessageID] {
			t.Errorf("message %d: message id %s missing or repeated", i, m.MessageID)
		}
		ids[m.MessageID] = true
		if m.Headers["fedora_messaging_schema"] != "execdb.job.v1" {
			t.Errorf("message %d: got schema header %q", i, m.Headers["fedora_messaging_schema"])
		}
	}
	crashed := msgs[4]
	wantHeaders := map[string]string{"fedora_messaging_schema": "execdb.job.v1", "fedora_messaging_severity": "30",
		"fedora_messaging_schema_package": "execdb-messages", "fedora_messaging_rpm_foo": "true",
		"execdb_state": "CRASHED", "execdb_notify": "taskotron", "execdb_cause": "task", "execdb_fatal": "false"}
	if !reflect.DeepEqual(crashed.Headers, wantHeaders) {
		t.Errorf("crash headers: got %v, want %v", crashed.Headers, wantHeaders)
	}
	if msgs[0].Headers["fedora_messaging_severity"] != "20" {
		t.Errorf("scheduled severity: got %q, want 20", msgs[0].Headers["fedora_messaging_severity"])
	}
	var body struct {
		Crash statemachine.Crash `json:"crash"`
	}
	json.Unmarshal(crashed.Body, &body)
	if body.Crash.KeyVals["reason"][0] != "OOM" {
		t.Errorf("crash body: got %s, want keyvals reason=OOM", crashed.Body)
	}
	rest, err := b.Outbox(context.Background(), msgs[2].ID, 1)
	if err != nil || len(rest) != 1 || rest[0].ID != msgs[3].ID {
		t.Errorf("outbox after id %d limit 1: got %v %v, want message %d", msgs[2].ID, rest, err, msgs[3].ID)
	}
}

func testUnknownJob(t *testing.T, open env) {
	s, b := newStore(t, open)
	_, err := s.Apply(context.Background(), uuid.New(), start(nil))
	if !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("apply: got %v, want ErrNotFound", err)
	}
	if _, err := b.Job(context.Background(), uuid.New()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("job: got %v, want ErrNotFound", err)
	}
	if len(outbox(t, b)) != 0 {
		t.Error("an event for an unknown job queued a message")
	}
}

// testConcurrentWriters has 20 writers report on one job at once: starts, finishes and crashes.
// Exactly one end may win; every report is in the history; the outbox holds one message per
// applied transition.
func testConcurrentWriters(t *testing.T, open env) {
	s, b := newStore(t, open)
	j := create(t, s, newJob())
	const writers = 20
	results := make([]jobs.Result, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var ev statemachine.Event
			switch i % 3 {
			case 0:
				ev = start(nil)
			case 1:
				ev = finish()
			default:
				ev = crash(statemachine.CauseMinion, statemachine.KeyVals{"writer": {fmt.Sprint(i)}})
			}
			results[i], errs[i] = s.Apply(context.Background(), j.UUID, ev)
		}()
	}
	wg.Wait()
	appliedEnds, appliedStarts := 0, 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
		if results[i].Verdict == statemachine.Applied {
			if i%3 == 0 {
				appliedStarts++
			} else {
				appliedEnds++
			}
		}
	}
	if appliedEnds != 1 || appliedStarts > 1 {
		t.Fatalf("got %d applied ends and %d applied starts, want 1 and at most 1", appliedEnds, appliedStarts)
	}
	hist, _ := b.History(context.Background(), j.UUID)
	if len(hist) != writers+1 {
		t.Errorf("got %d history entries, want %d", len(hist), writers+1)
	}
	final, _ := b.Job(context.Background(), j.UUID)
	if !final.State.Terminal() {
		t.Errorf("got final state %s, want terminal", final.State)
	}
	msgs := outbox(t, b)
	if len(msgs) != 2+appliedStarts {
		t.Errorf("got %d messages, want %d", len(msgs), 2+appliedStarts)
	}
	if last := msgs[len(msgs)-1]; last.Headers["execdb_state"] != string(final.State) {
		t.Errorf("last message says %s, the job is %s", last.Headers["execdb_state"], final.State)
	}
}

func testConcurrentCreates(t *testing.T, open env) {
	s, b := newStore(t, open)
	const writers = 10
	results := make([]jobs.Result, writers)
	errs := make([]error, writers)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := newJob()
			n.RequestID = "same-request"
			results[i], errs[i] = s.Create(context.Background(), n, httpMeta(fmt.Sprint(i)))
		}()
	}
	wg.Wait()
	created := 0
	for i, err := range errs {
		if err != nil {
			t.Fatalf("writer %d: %v", i, err)
		}
		if results[i].Created {
			created++
		}
		if results[i].Job.UUID != results[0].Job.UUID {
			t.Errorf("writer %d got job %s, writer 0 got %s", i, results[i].Job.UUID, results[0].Job.UUID)
		}
	}
	if created != 1 {
		t.Errorf("got %d creates, want 1", created)
	}
	if n := len(outbox(t, b)); n != 1 {
		t.Errorf("got %d messages, want 1", n)
	}
	// Every repeat is in the history, also those that lost the race to insert.
	hist, _ := b.History(context.Background(), results[0].Job.UUID)
	if len(hist) != writers {
		t.Errorf("got %d history entries, want %d (one create, the rest duplicates)", len(hist), writers)
	}
}

// testOutboxFedoraMessaging: with a base URL, a job-state message carries the job page's URL;
// its headers name every package the job is about (CONTRACT section 3, v1.1).
func testOutboxFedoraMessaging(t *testing.T, open env) {
	b := open.backend(t)
	s := open.service(t, b, jobs.Config{TopicPrefix: "org.example", BaseURL: "https://taskotron.example.org/execdb/"})
	n := newJob()
	n.Data = statemachine.KeyVals{"packages": {"bar", "foo"}}
	j := create(t, s, n)
	m := outbox(t, b)[0]
	var body struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal(m.Body, &body); err != nil || body.URL != "https://taskotron.example.org/execdb/jobs/"+j.UUID.String() {
		t.Errorf("url: got %q (%v), want the job's page", body.URL, err)
	}
	var rpm []string
	for k, v := range m.Headers {
		if name, ok := strings.CutPrefix(k, "fedora_messaging_rpm_"); ok && v == "true" {
			rpm = append(rpm, name)
		}
	}
	slices.Sort(rpm)
	if !slices.Equal(rpm, []string{"bar", "foo"}) {
		t.Errorf("package headers: got %v, want bar and foo", rpm)
	}
	// Without a base URL there is no url at all.
	s2, b2 := newStore(t, open)
	create(t, s2, newJob())
	if m := outbox(t, b2)[0]; strings.Contains(string(m.Body), `"url"`) {
		t.Errorf("without a base URL: got %s", m.Body)
	}
}
