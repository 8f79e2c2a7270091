// Package storagetest is the conformance suite of the storage seam: it calls a Backend and its
// Tx directly, with no job service above them, and states once what every backend must do —
// what Write stores and reads back, the locks and claims, the error contract, the outbox and
// Lead. Call Run from a backend's tests with a function that opens a fresh, empty, migrated
// backend. The service's behaviour over each backend is jobs/jobstest's.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// Open returns a fresh, empty, migrated backend and arranges for it to be closed at the end of
// the test.
type Open func(t *testing.T) storage.Backend

// Run runs the whole suite, its tests in parallel, against the backends open makes.
func Run(t *testing.T, open Open) {
	for _, tc := range []struct {
		name string
		fn   func(t *testing.T, b storage.Backend)
	}{
		{"WriteRoundTrip", testWriteRoundTrip},
		{"WriteChangedJobs", testWriteChanged},
		{"WriteKeepsListOrder", testWriteOrder},
		{"ErrorContract", testErrors},
		{"RollbackLeavesNothing", testRollback},
		{"SeenMessageIDs", testMarkSeen},
		{"Load", testLoad},
		{"ParkedEvents", testParked},
		{"Claims", testClaims},
		{"Outbox", testOutbox},
		{"OutboxLateCommit", testOutboxLateCommit},
		{"Lead", testLead},
		{"Rejected", testRejected},
		{"Export", testExport},
		{"ConcurrentUnits", testConcurrentUnits},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open(t))
		})
	}
}

// t0 carries microseconds, the precision every backend keeps.
var t0 = time.Date(2026, 11, 2, 10, 0, 0, 123456000, time.UTC)

// newJob is a SCHEDULED job as a create makes it, under a fresh uuid and request id.
func newJob() statemachine.Job {
	id := uuid.New()
	return statemachine.Job{
		UUID: id, State: statemachine.Scheduled, TaskName: "rpmlint", Item: "foo-1.0-1.fc45",
		ItemType: "koji_build", Arch: "noarch", RequestID: "req-" + id.String(), Attempt: 1,
		CreatedAt: t0, UpdatedAt: t0, StateEnteredAt: t0,
	}
}

func write(t *testing.T, b storage.Backend, w storage.Writes) {
	t.Helper()
	if err := b.InTx(context.Background(), func(tx storage.Tx) error { return tx.Write(context.Background(), w) }); err != nil {
		t.Fatalf("write: %v", err)
	}
}

func readJob(t *testing.T, b storage.Backend, id uuid.UUID) statemachine.Job {
	t.Helper()
	j, err := b.Job(context.Background(), id)
	if err != nil {
		t.Fatalf("job %s: %v", id, err)
	}
	return j
}

func wantJob(t *testing.T, got, want statemachine.Job) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("job %s read back:\n got %+v\nwant %+v", want.UUID, got, want)
	}
}

func ptr[T any](v T) *T { return &v }

// testWriteRoundTrip: a job written with every field set, and one with none of the optional
// ones, read back equal; key-values keep each key's order, repeats and empty values.
func testWriteRoundTrip(t *testing.T, b storage.Backend) {
	full := newJob()
	full.State = statemachine.Crashed
	full.Source = &statemachine.Source{MsgID: "2026-abc", Topic: "org.fedoraproject.prod.buildsys.build.state.change"}
	full.Data = statemachine.KeyVals{"z": {"3", "1", "2"}, "a": {"only"}, "dup": {"x", "x", ""}}
	full.Runner = &statemachine.Runner{Name: "buildbot", JobID: "all/4821", Worker: "client10", URL: "https://bb/4821"}
	full.ArtifactsURL, full.LogURL = "https://artifacts/4821", "https://logs/4821"
	full.Crash = &statemachine.Crash{Notify: statemachine.NotifyTask, Cause: statemachine.CauseMinion, Fatal: true,
		KeyVals: statemachine.KeyVals{"reason": {"b", "a", "c"}, "step": {"MINION_CREATION"}}}
	full.Attempt = 3
	full.RescheduledFrom, full.RescheduledTo = ptr(uuid.New()), ptr(uuid.New())
	full.StartedAt, full.FinishedAt = ptr(t0.Add(time.Minute)), ptr(t0.Add(time.Hour))
	full.UpdatedAt, full.StateEnteredAt = t0.Add(time.Hour), t0.Add(time.Hour)
	full.Auto, full.AutoDueAt = statemachine.AutoPlanned, ptr(t0.Add(2*time.Hour))

	bare := newJob()
	bare.Arch = ""
	crashedBare := newJob()
	crashedBare.State = statemachine.Crashed
	crashedBare.Crash = &statemachine.Crash{Notify: statemachine.NotifyUnknown, Cause: statemachine.CauseUnknown, KeyVals: statemachine.KeyVals{}}
	crashedBare.Auto = statemachine.AutoDeclined

	write(t, b, storage.Writes{NewJobs: []statemachine.Job{full, bare, crashedBare}})
	for _, want := range []statemachine.Job{full, bare, crashedBare} {
		wantJob(t, readJob(t, b, want.UUID), want)
	}
	if got := readJob(t, b, bare.UUID); got.Data != nil || got.Crash != nil || got.Source != nil || got.Runner != nil {
		t.Errorf("job without optional fields: got %+v, want nil data, crash, source and runner", got)
	}
	if got := readJob(t, b, crashedBare.UUID); got.Crash == nil || got.Crash.KeyVals == nil || len(got.Crash.KeyVals) != 0 {
		t.Errorf("crash without keyvals: got %#v, want empty non-nil KeyVals", got.Crash)
	}
}

// testWriteChanged: a change writes back every column that changes in a job's life; the crash
// key-values are written with the change that crashes the job and kept by later changes.
func testWriteChanged(t *testing.T, b storage.Backend) {
	job := newJob()
	job.Data = statemachine.KeyVals{"koji_tag": {"f45"}}
	write(t, b, storage.Writes{NewJobs: []statemachine.Job{job}})

	running := job
	running.State = statemachine.Running
	running.Runner = &statemachine.Runner{Name: "buildbot", JobID: "all/1"}
	running.StartedAt, running.UpdatedAt, running.StateEnteredAt = ptr(t0.Add(time.Minute)), t0.Add(time.Minute), t0.Add(time.Minute)
	write(t, b, storage.Writes{Changed: []storage.Change{{Job: running}}})
	wantJob(t, readJob(t, b, job.UUID), running)

	crashed := running
	crashed.State = statemachine.Crashed
	crashed.Crash = &statemachine.Crash{Notify: statemachine.NotifyTaskotron, Cause: statemachine.CauseNetwork,
		KeyVals: statemachine.KeyVals{"step": {"2", "1"}}}
	crashed.FinishedAt, crashed.UpdatedAt, crashed.StateEnteredAt = ptr(t0.Add(time.Hour)), t0.Add(time.Hour), t0.Add(time.Hour)
	crashed.LogURL = "https://logs/1"
	write(t, b, storage.Writes{Changed: []storage.Change{{Job: crashed, Crashed: true}}})
	wantJob(t, readJob(t, b, job.UUID), crashed)

	// A later change (the rescheduler's mark, a link to a successor) keeps the key-values.
	marked := crashed
	marked.Auto, marked.AutoDueAt = statemachine.AutoPlanned, ptr(t0.Add(2*time.Hour))
	marked.RescheduledTo = ptr(uuid.New())
	marked.UpdatedAt = t0.Add(2 * time.Hour)
	write(t, b, storage.Writes{Changed: []storage.Change{{Job: marked}}})
	wantJob(t, readJob(t, b, job.UUID), marked)
	done := marked
	done.Auto, done.AutoDueAt = statemachine.AutoDone, nil
	write(t, b, storage.Writes{Changed: []storage.Change{{Job: done}}})
	wantJob(t, readJob(t, b, job.UUID), done)
}

// testWriteOrder: history and outbox rows get increasing ids in the order of their lists, across
// jobs, and several changed jobs are written in one Write.
func testWriteOrder(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	var w storage.Writes
	for range 5 {
		w.NewJobs = append(w.NewJobs, newJob())
	}
	for i := range 20 {
		j := w.NewJobs[(i*3)%5]
		w.History = append(w.History, storage.HistoryEntry{JobUUID: j.UUID, Kind: statemachine.EventCreate,
			Verdict: statemachine.Applied, Origin: statemachine.OriginHTTP, MessageID: fmt.Sprint("m", i),
			StateTo: statemachine.Scheduled, Detail: []byte(fmt.Sprintf(`{"i": %d}`, i)), RecordedAt: t0})
		w.Outbox = append(w.Outbox, storage.OutboxMessage{MessageID: uuid.New(), JobUUID: j.UUID,
			Topic: fmt.Sprint("org.example.execdb.job.", i), Body: []byte(`{}`), CreatedAt: t0})
	}
	write(t, b, w)
	var ids []int64
	for _, j := range w.NewJobs {
		h, err := b.History(ctx, j.UUID)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range h {
			ids = append(ids, e.ID)
			if want := w.History[msgIndex(t, e.MessageID)]; e.JobUUID != want.JobUUID || e.Kind != want.Kind ||
				e.Verdict != want.Verdict || e.Origin != want.Origin || e.StateTo != want.StateTo || !e.RecordedAt.Equal(t0) {
				t.Errorf("history entry %s: got %+v, want %+v", e.MessageID, e, want)
			}
		}
		for i := 1; i < len(h); i++ {
			if msgIndex(t, h[i].MessageID) < msgIndex(t, h[i-1].MessageID) {
				t.Errorf("history of %s out of list order: %s before %s", j.UUID, h[i-1].MessageID, h[i].MessageID)
			}
		}
	}
	if len(ids) != len(w.History) {
		t.Errorf("got %d history entries, want %d", len(ids), len(w.History))
	}
	out, err := b.Outbox(ctx, 0, 100)
	if err != nil || len(out) != len(w.Outbox) {
		t.Fatalf("outbox: got %d messages (%v), want %d", len(out), err, len(w.Outbox))
	}
	for i, m := range out {
		if m.MessageID != w.Outbox[i].MessageID || (i > 0 && m.ID <= out[i-1].ID) {
			t.Errorf("outbox message %d: got %s id %d, want %s in list order", i, m.MessageID, m.ID, w.Outbox[i].MessageID)
		}
	}

	// Many jobs changed in one write.
	var changes []storage.Change
	for _, j := range w.NewJobs {
		j.State, j.StartedAt, j.UpdatedAt, j.StateEnteredAt = statemachine.Running, ptr(t0.Add(time.Second)), t0.Add(time.Second), t0.Add(time.Second)
		changes = append(changes, storage.Change{Job: j})
	}
	write(t, b, storage.Writes{Changed: changes})
	for _, c := range changes {
		wantJob(t, readJob(t, b, c.Job.UUID), c.Job)
	}
}

func msgIndex(t *testing.T, id string) int {
	t.Helper()
	var i int
	if _, err := fmt.Sscanf(id, "m%d", &i); err != nil {
		t.Fatalf("message id %q: %v", id, err)
	}
	return i
}

// testErrors is the error contract: storage.ErrNotFound for what does not exist,
// storage.ErrConflict for a taken key, storage.ErrInvalidData for a value the database
// refuses; a failed Write leaves the transaction's earlier writes out too.
func testErrors(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	missing := uuid.New()
	if _, err := b.Job(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Job of an unknown uuid: got %v, want ErrNotFound", err)
	}
	if h, err := b.History(ctx, missing); err != nil || len(h) != 0 {
		t.Errorf("History of an unknown uuid: got %v, %v, want empty, nil", h, err)
	}
	job := newJob()
	write(t, b, storage.Writes{NewJobs: []statemachine.Job{job}})
	sameUUID := job
	sameUUID.RequestID = "other"
	sameRequest := newJob()
	sameRequest.RequestID = job.RequestID
	refused := newJob()
	refused.Attempt = 0 // attempts count from 1: a check constraint
	msg := storage.OutboxMessage{MessageID: uuid.New(), JobUUID: job.UUID, Topic: "t", Body: []byte(`{}`), CreatedAt: t0}
	write(t, b, storage.Writes{Outbox: []storage.OutboxMessage{msg}})

	for _, tc := range []struct {
		name string
		w    storage.Writes
		want error
	}{
		{"job with a taken uuid", storage.Writes{NewJobs: []statemachine.Job{sameUUID}}, storage.ErrConflict},
		{"job with a taken request id", storage.Writes{NewJobs: []statemachine.Job{sameRequest}}, storage.ErrConflict},
		{"outbox message with a taken message id", storage.Writes{Outbox: []storage.OutboxMessage{msg}}, storage.ErrConflict},
		{"change of an unknown job", storage.Writes{Changed: []storage.Change{{Job: newJob()}}}, storage.ErrNotFound},
		{"history of an unknown job", storage.Writes{History: []storage.HistoryEntry{{JobUUID: missing,
			Kind: statemachine.EventStart, Verdict: statemachine.Applied, Origin: statemachine.OriginHTTP,
			StateTo: statemachine.Running, RecordedAt: t0}}}, storage.ErrNotFound},
		{"job breaking a check constraint", storage.Writes{NewJobs: []statemachine.Job{refused}}, storage.ErrInvalidData},
	} {
		fresh := newJob()
		tc.w.NewJobs = append([]statemachine.Job{fresh}, tc.w.NewJobs...)
		err := b.InTx(ctx, func(tx storage.Tx) error { return tx.Write(ctx, tc.w) })
		if !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, err, tc.want)
		}
		if _, err := b.Job(ctx, fresh.UUID); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("%s: the job written before the failure in the same Write was kept (%v)", tc.name, err)
		}
	}
	if got := readJob(t, b, job.UUID); got.RequestID != job.RequestID {
		t.Errorf("after the conflicts: got request id %q, want %q", got.RequestID, job.RequestID)
	}
}

// testRollback: a transaction whose fn fails or panics leaves nothing behind, and the backend
// stays usable.
func testRollback(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	boom := errors.New("boom")
	failed, panicked := newJob(), newJob()
	err := b.InTx(ctx, func(tx storage.Tx) error {
		if err := tx.Write(ctx, storage.Writes{NewJobs: []statemachine.Job{failed}}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("InTx: got %v, want fn's error", err)
	}
	func() {
		defer func() { _ = recover() }()
		_ = b.InTx(ctx, func(tx storage.Tx) error {
			if err := tx.Write(ctx, storage.Writes{NewJobs: []statemachine.Job{panicked}}); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	for _, j := range []statemachine.Job{failed, panicked} {
		if _, err := b.Job(ctx, j.UUID); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("job of a rolled back transaction: got %v, want ErrNotFound", err)
		}
	}
	ok := newJob()
	write(t, b, storage.Writes{NewJobs: []statemachine.Job{ok}})
	readJob(t, b, ok.UUID)
}

// testLoad: Load does every step in one call, returns the jobs that exist whole and leaves out
// the rest, and what it takes from the park is taken only if the transaction commits.
func testLoad(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	a, c := newJob(), newJob()
	a.Data = statemachine.KeyVals{"koji_tag": {"f45", "f44"}}
	c.State = statemachine.Crashed
	c.Crash = &statemachine.Crash{Notify: statemachine.NotifyTask, Cause: statemachine.CauseTask, KeyVals: statemachine.KeyVals{"step": {"x"}}}
	x := uuid.New()
	write(t, b, storage.Writes{NewJobs: []statemachine.Job{a, c}, Parked: []storage.ParkedEvent{parkedEvent(x, "x-start", t0, true)}})
	ids := []uuid.UUID{a.UUID, c.UUID, x}
	slices.SortFunc(ids, func(p, q uuid.UUID) int { return strings.Compare(p.String(), q.String()) })
	l := storage.Load{Keys: ids, SeenIDs: []string{"m1", "m2"}, SeenAt: t0, Jobs: ids,
		RequestIDs: []string{c.RequestID, "nobody's"}, Parked: []uuid.UUID{x}}
	check := func(got storage.Loaded) {
		t.Helper()
		if !reflect.DeepEqual(got.Fresh, []bool{true, true}) {
			t.Errorf("Fresh: got %v, want new, new", got.Fresh)
		}
		if len(got.Jobs) != 2 {
			t.Errorf("Jobs: got %d, want 2", len(got.Jobs))
		}
		wantJob(t, got.Jobs[a.UUID], a)
		wantJob(t, got.Jobs[c.UUID], c)
		if len(got.ByRequestID) != 1 {
			t.Errorf("ByRequestID: got %d jobs, want 1", len(got.ByRequestID))
		}
		wantJob(t, got.ByRequestID[c.RequestID], c)
		if len(got.Parked) != 1 || got.Parked[0].Event.MessageID != "x-start" {
			t.Errorf("Parked: got %+v, want x-start", got.Parked)
		}
	}
	_ = b.InTx(ctx, func(tx storage.Tx) error {
		got, err := tx.Load(ctx, l)
		if err != nil {
			t.Fatal(err)
		}
		check(got)
		return errors.New("roll back")
	})
	if err := b.InTx(ctx, func(tx storage.Tx) error {
		got, err := tx.Load(ctx, l)
		check(got) // the rolled back Load marked nothing and took nothing
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.InTx(ctx, func(tx storage.Tx) error {
		got, err := tx.Load(ctx, storage.Load{SeenIDs: []string{"m2", "m3"}, SeenAt: t0, Parked: []uuid.UUID{x}})
		if !reflect.DeepEqual(got.Fresh, []bool{false, true}) || len(got.Parked) != 0 || got.Jobs != nil {
			t.Errorf("second Load: got %+v, want seen, new and nothing parked", got)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := b.InTx(ctx, func(tx storage.Tx) error {
		got, err := tx.Load(ctx, storage.Load{})
		if !reflect.DeepEqual(got, storage.Loaded{}) {
			t.Errorf("empty Load: got %+v", got)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
}

// testMarkSeen: a message id is new once; a rolled back mark is forgotten; PruneSeen forgets
// the ids received before a time.
func testMarkSeen(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	mark := func(ids ...string) []bool {
		t.Helper()
		var fresh []bool
		if err := b.InTx(ctx, func(tx storage.Tx) error {
			got, err := tx.Load(ctx, storage.Load{SeenIDs: ids, SeenAt: t0})
			fresh = got.Fresh
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return fresh
	}
	if got := mark("a", "b"); !reflect.DeepEqual(got, []bool{true, true}) {
		t.Errorf("first marks: got %v, want new, new", got)
	}
	if got := mark("b", "c", "a"); !reflect.DeepEqual(got, []bool{false, true, false}) {
		t.Errorf("second marks: got %v, want seen, new, seen", got)
	}
	_ = b.InTx(ctx, func(tx storage.Tx) error {
		if _, err := tx.Load(ctx, storage.Load{SeenIDs: []string{"d"}, SeenAt: t0}); err != nil {
			return err
		}
		return errors.New("roll back")
	})
	if got := mark("d"); !reflect.DeepEqual(got, []bool{true}) {
		t.Errorf("mark after a rollback: got %v, want new", got)
	}
	if n, err := b.PruneSeen(ctx, t0.Add(time.Second)); err != nil || n != 4 {
		t.Errorf("PruneSeen: got %d, %v, want 4", n, err)
	}
	if got := mark("a"); !reflect.DeepEqual(got, []bool{true}) {
		t.Errorf("mark after PruneSeen: got %v, want new", got)
	}
}

func parkedEvent(id uuid.UUID, msgID string, at time.Time, start bool) storage.ParkedEvent {
	ev := statemachine.Event{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: msgID, ReceivedAt: at}}
	if start {
		ev.Start = &statemachine.Start{Runner: &statemachine.Runner{Name: "buildbot", JobID: "all/7"}}
	} else {
		ev.End = &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: statemachine.NotifyTask,
			Cause: statemachine.CauseTask, KeyVals: statemachine.KeyVals{"step": {"RUN"}}}}
	}
	return storage.ParkedEvent{JobUUID: id, Event: ev, Topic: "org.example.taskotron.runtask." + string(ev.Kind()),
		Body: []byte(`{"raw": true}`), ParkedAt: at}
}

// testParked: parked events come back whole, oldest first, once: by job (Load.Parked), TakeExpired
// by age, and concurrent takers get different events.
func testParked(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	x, y := uuid.New(), uuid.New()
	events := []storage.ParkedEvent{
		parkedEvent(x, "x-start", t0, true), parkedEvent(y, "y-end", t0.Add(time.Second), false),
		parkedEvent(x, "x-end", t0.Add(2*time.Second), false),
	}
	write(t, b, storage.Writes{Parked: events})
	var taken []storage.ParkedEvent
	take := func(tx storage.Tx) error {
		got, err := tx.Load(ctx, storage.Load{Parked: []uuid.UUID{x}})
		taken = got.Parked
		return err
	}
	if err := b.InTx(ctx, take); err != nil {
		t.Fatal(err)
	}
	if len(taken) != 2 {
		t.Fatalf("Load, parked: got %d events, want 2", len(taken))
	}
	for i, want := range []storage.ParkedEvent{events[0], events[2]} {
		got := taken[i]
		want.ID = got.ID
		if !reflect.DeepEqual(got, want) {
			t.Errorf("parked event %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	if err := b.InTx(ctx, take); err != nil || len(taken) != 0 {
		t.Errorf("Load, parked again: got %d events (%v), want none", len(taken), err)
	}

	var many []storage.ParkedEvent
	for i := range 40 {
		many = append(many, parkedEvent(uuid.New(), fmt.Sprint("old-", i), t0.Add(-time.Hour).Add(time.Duration(i)*time.Millisecond), i%2 == 0))
	}
	write(t, b, storage.Writes{Parked: many})
	var (
		mu   sync.Mutex
		got  = map[string]int{}
		wg   sync.WaitGroup
		errs = make(chan error, 8)
	)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				var batch []storage.ParkedEvent
				err := b.InTx(ctx, func(tx storage.Tx) (err error) { batch, err = tx.TakeExpired(ctx, t0.Add(-time.Minute), 3); return err })
				if err != nil {
					errs <- err
					return
				}
				if len(batch) == 0 {
					return
				}
				mu.Lock()
				for _, p := range batch {
					got[p.Event.MessageID]++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if len(got) != len(many) {
		t.Errorf("TakeExpired: got %d distinct events, want %d", len(got), len(many))
	}
	for id, n := range got {
		if n != 1 {
			t.Errorf("TakeExpired: event %s taken %d times", id, n)
		}
	}
	left, err := b.ExportParked(ctx, 0, 100)
	if err != nil || len(left) != 1 || left[0].Event.MessageID != "y-end" {
		t.Errorf("parked events left: got %+v (%v), want y-end alone", left, err)
	}
}

// testClaims: each claim returns the longest-waiting matching job not skipped, storage.ErrNotFound
// when none is left, and never a job another transaction holds.
func testClaims(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	running1, running2, scheduled, undecided, planned, later := newJob(), newJob(), newJob(), newJob(), newJob(), newJob()
	running1.State, running1.StateEnteredAt = statemachine.Running, t0.Add(-2*time.Hour)
	running2.State, running2.StateEnteredAt = statemachine.Running, t0.Add(-3*time.Hour)
	scheduled.StateEnteredAt = t0.Add(-time.Hour)
	crash := &statemachine.Crash{Notify: statemachine.NotifyUnknown, Cause: statemachine.CauseUnknown, KeyVals: statemachine.KeyVals{}}
	undecided.State, undecided.Crash = statemachine.Crashed, crash
	planned.State, planned.Crash, planned.Auto, planned.AutoDueAt = statemachine.Crashed, crash, statemachine.AutoPlanned, ptr(t0)
	later.State, later.Crash, later.Auto, later.AutoDueAt = statemachine.Crashed, crash, statemachine.AutoPlanned, ptr(t0.Add(time.Hour))
	write(t, b, storage.Writes{NewJobs: []statemachine.Job{running1, running2, scheduled, undecided, planned, later}})

	claim := func(fn func(tx storage.Tx) (uuid.UUID, error)) (uuid.UUID, error) {
		var id uuid.UUID
		err := b.InTx(ctx, func(tx storage.Tx) (err error) { id, err = fn(tx); return err })
		return id, err
	}
	cut := t0.Add(-90 * time.Minute)
	if id, err := claim(func(tx storage.Tx) (uuid.UUID, error) { return tx.ClaimOverdue(ctx, statemachine.Running, cut, nil) }); err != nil || id != running2.UUID {
		t.Errorf("ClaimOverdue: got %s (%v), want the longest running %s", id, err, running2.UUID)
	}
	if id, err := claim(func(tx storage.Tx) (uuid.UUID, error) {
		return tx.ClaimOverdue(ctx, statemachine.Running, cut, []uuid.UUID{running2.UUID})
	}); err != nil || id != running1.UUID {
		t.Errorf("ClaimOverdue skipping %s: got %s (%v), want %s", running2.UUID, id, err, running1.UUID)
	}
	if _, err := claim(func(tx storage.Tx) (uuid.UUID, error) {
		return tx.ClaimOverdue(ctx, statemachine.Running, cut, []uuid.UUID{running2.UUID, running1.UUID})
	}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ClaimOverdue with all skipped: got %v, want ErrNotFound", err)
	}
	if _, err := claim(func(tx storage.Tx) (uuid.UUID, error) {
		return tx.ClaimOverdue(ctx, statemachine.Scheduled, t0.Add(-2*time.Hour), nil)
	}); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("ClaimOverdue of a job not overdue: got %v, want ErrNotFound", err)
	}
	if id, err := claim(func(tx storage.Tx) (uuid.UUID, error) { return tx.ClaimUndecided(ctx, nil) }); err != nil || id != undecided.UUID {
		t.Errorf("ClaimUndecided: got %s (%v), want %s", id, err, undecided.UUID)
	}
	if id, err := claim(func(tx storage.Tx) (uuid.UUID, error) { return tx.ClaimDue(ctx, t0, nil) }); err != nil || id != planned.UUID {
		t.Errorf("ClaimDue: got %s (%v), want %s (the other is due later)", id, err, planned.UUID)
	}

	// A job a transaction holds is not claimed by another meanwhile (PostgreSQL skips it;
	// SQLite's second writer waits for the first to end).
	held, release := make(chan struct{}), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		first <- b.InTx(ctx, func(tx storage.Tx) error {
			id, err := tx.ClaimOverdue(ctx, statemachine.Running, cut, nil)
			if err != nil {
				close(held)
				return err
			}
			if id != running2.UUID {
				t.Errorf("first claim: got %s, want %s", id, running2.UUID)
			}
			close(held)
			<-release
			return nil
		})
	}()
	<-held
	second := make(chan uuid.UUID, 1)
	go func() {
		id, err := claim(func(tx storage.Tx) (uuid.UUID, error) { return tx.ClaimOverdue(ctx, statemachine.Running, cut, nil) })
		if err != nil {
			t.Errorf("second claim: %v", err)
		}
		second <- id
	}()
	select {
	case id := <-second:
		if id == running2.UUID {
			t.Errorf("second claim got %s, which the first transaction holds", id)
		}
		close(release)
	case <-time.After(200 * time.Millisecond):
		close(release) // a backend whose writers take turns: the second claim waits
		<-second
	}
	if err := <-first; err != nil {
		t.Fatal(err)
	}
}

func outboxMessage(job uuid.UUID, i int) storage.OutboxMessage {
	return storage.OutboxMessage{
		MessageID: uuid.New(), JobUUID: job, Topic: fmt.Sprintf("org.example.execdb.job.%d", i),
		Body:      []byte(fmt.Sprintf("{ \"n\" :%d,\n\"s\":\"\u00e9\\u00e9\" }", i)), // kept byte for byte
		Headers:   map[string]string{"fedora_messaging_severity": "20", "i": fmt.Sprint(i)},
		CreatedAt: t0.Add(time.Duration(i) * time.Second),
	}
}

// testOutbox: messages come back byte for byte in commit order, page by afterID and limit, and
// leave with DeletePublished; OutboxStats counts them.
func testOutbox(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	if s, err := b.OutboxStats(ctx); err != nil || s.Backlog != 0 || s.Oldest != nil {
		t.Errorf("OutboxStats of an empty outbox: got %+v (%v)", s, err)
	}
	var want []storage.OutboxMessage
	for i := range 5 {
		want = append(want, outboxMessage(uuid.New(), i))
	}
	write(t, b, storage.Writes{Outbox: want})
	all, err := b.Outbox(ctx, 0, 100)
	if err != nil || len(all) != len(want) {
		t.Fatalf("Outbox: got %d messages (%v), want %d", len(all), err, len(want))
	}
	for i, m := range all {
		w := want[i]
		w.ID = m.ID
		if !reflect.DeepEqual(m, w) {
			t.Errorf("message %d:\n got %#v\nwant %#v", i, m, w)
		}
	}
	if s, err := b.OutboxStats(ctx); err != nil || s.Backlog != 5 || s.Oldest == nil || !s.Oldest.Equal(t0) {
		t.Errorf("OutboxStats: got %+v (%v), want 5 from %s", s, err, t0)
	}
	if err := b.DeletePublished(ctx, []int64{all[1].ID}); err != nil {
		t.Fatal(err)
	}
	page, err := b.Outbox(ctx, all[0].ID, 2)
	if err != nil || len(page) != 2 || page[0].ID != all[2].ID || page[1].ID != all[3].ID {
		t.Errorf("Outbox(after %d, 2): got %+v (%v), want messages %d and %d", all[0].ID, page, err, all[2].ID, all[3].ID)
	}
	if none, err := b.Outbox(ctx, 0, 0); err != nil || len(none) != 0 {
		t.Errorf("Outbox(limit 0): got %d messages, %v, want none", len(none), err)
	}
	if err := b.DeletePublished(ctx, []int64{all[0].ID, all[2].ID, all[3].ID, all[4].ID}); err != nil {
		t.Fatal(err)
	}
	if s, err := b.OutboxStats(ctx); err != nil || s.Backlog != 0 {
		t.Errorf("OutboxStats after publishing all: got %+v (%v)", s, err)
	}
}

// testOutboxLateCommit has a transaction take an outbox id and commit after a later one: the
// relay, which always reads the lowest unpublished ids, must still get the early id after the
// later one was published.
func testOutboxLateCommit(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	slow, fast := outboxMessage(uuid.New(), 1), outboxMessage(uuid.New(), 2)
	appended, release := make(chan struct{}), make(chan struct{})
	slowDone := make(chan error, 1)
	go func() {
		slowDone <- b.InTx(ctx, func(tx storage.Tx) error {
			err := tx.Write(ctx, storage.Writes{Outbox: []storage.OutboxMessage{slow}})
			close(appended)
			if err != nil {
				return err
			}
			<-release
			return nil
		})
	}()
	<-appended
	fastDone := make(chan error, 1)
	go func() {
		fastDone <- b.InTx(ctx, func(tx storage.Tx) error { return tx.Write(ctx, storage.Writes{Outbox: []storage.OutboxMessage{fast}}) })
	}()
	concurrent := true
	select {
	case err := <-fastDone:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(200 * time.Millisecond):
		concurrent = false // a backend whose writers take turns: no late commit possible
	}
	if concurrent {
		out, err := b.Outbox(ctx, 0, 10)
		if err != nil || len(out) != 1 || out[0].MessageID != fast.MessageID {
			t.Fatalf("before the slow commit: got %+v (%v), want the fast message alone", out, err)
		}
		if err := b.DeletePublished(ctx, []int64{out[0].ID}); err != nil {
			t.Fatal(err)
		}
	}
	close(release)
	if err := <-slowDone; err != nil {
		t.Fatal(err)
	}
	if !concurrent {
		if err := <-fastDone; err != nil {
			t.Fatal(err)
		}
	}
	out, err := b.Outbox(ctx, 0, 10)
	if err != nil || len(out) == 0 || out[0].MessageID != slow.MessageID {
		t.Errorf("after the slow commit: got %+v (%v), want the slow message first", out, err)
	}
}

// testLead: Lead calls fn with a live context; its wake channel, when the backend has one,
// receives a value after a commit that queued outbox messages; a second Lead on the same
// database waits until the first ends, or leads at once on a backend that one process uses.
func testLead(t *testing.T, b storage.Backend) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leading := make(chan (<-chan struct{}))
	stop := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- b.Lead(ctx, func(lctx context.Context, wake <-chan struct{}) error {
			if lctx.Err() != nil {
				return lctx.Err()
			}
			leading <- wake
			<-stop
			return nil
		})
	}()
	var wake <-chan struct{}
	select {
	case wake = <-leading:
	case err := <-done:
		t.Fatalf("Lead returned before calling fn: %v", err)
	}
	if wake != nil {
		// Drain what earlier commits left, then a commit with a message must wake the relay.
		for len(wake) > 0 {
			<-wake
		}
		write(t, b, storage.Writes{Outbox: []storage.OutboxMessage{outboxMessage(uuid.New(), 0)}})
		select {
		case <-wake:
		case <-ctx.Done():
			t.Fatal("no wake after a commit that queued a message")
		}
	}
	second := make(chan bool, 1)
	sctx, scancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer scancel()
	go func() {
		err := b.Lead(sctx, func(context.Context, <-chan struct{}) error { second <- true; return nil })
		if err != nil {
			second <- false
		}
	}()
	led := <-second
	close(stop)
	if err := <-done; err != nil {
		t.Fatalf("Lead: %v", err)
	}
	t.Logf("a second Lead while the first leads: led=%v", led)
}

// testRejected: rejected messages come back whole, newest first, filtered and paged.
func testRejected(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	job := uuid.New()
	var w storage.Writes
	for i := range 6 {
		r := storage.RejectedMessage{Transport: statemachine.OriginAMQP, Topic: "org.example.taskotron.runtask.end",
			MessageID: fmt.Sprint("r", i), Reason: storage.RejectSchema, Field: "state", Detail: "not one of the states",
			Body: []byte{0xff, 0x00, byte(i)}, BodySize: 3, ReceivedAt: t0, RejectedAt: t0.Add(time.Duration(i) * time.Second)}
		if i%2 == 1 {
			r.Transport, r.Reason, r.Field, r.JobUUID = statemachine.OriginFedmsg, storage.RejectConflict, "", &job
			r.BodySize, r.BodyTruncated = 100000, true
		}
		w.Rejected = append(w.Rejected, r)
	}
	write(t, b, w)
	all, err := b.Rejected(ctx, storage.RejectedQuery{Limit: 10})
	if err != nil || len(all) != 6 {
		t.Fatalf("Rejected: got %d (%v), want 6", len(all), err)
	}
	for i, got := range all {
		want := w.Rejected[5-i]
		want.ID = got.ID
		if !reflect.DeepEqual(got, want) {
			t.Errorf("rejected %d:\n got %+v\nwant %+v", i, got, want)
		}
	}
	for name, q := range map[string]storage.RejectedQuery{
		"reason":    {Limit: 10, Reason: storage.RejectConflict},
		"transport": {Limit: 10, Transport: statemachine.OriginFedmsg},
		"job":       {Limit: 10, JobUUID: &job},
	} {
		if got, err := b.Rejected(ctx, q); err != nil || len(got) != 3 {
			t.Errorf("Rejected by %s: got %d (%v), want 3", name, len(got), err)
		}
	}
	if got, err := b.Rejected(ctx, storage.RejectedQuery{Limit: 10, MessageID: "r2"}); err != nil || len(got) != 1 || got[0].MessageID != "r2" {
		t.Errorf("Rejected by message id: got %+v (%v)", got, err)
	}
	page, err := b.Rejected(ctx, storage.RejectedQuery{Limit: 2, BeforeID: all[1].ID})
	if err != nil || len(page) != 2 || page[0].ID != all[2].ID || page[1].ID != all[3].ID {
		t.Errorf("Rejected before %d: got %+v (%v)", all[1].ID, page, err)
	}
}

// testExport: ExportJobs walks every job in uuid order, ExportParked every parked event in id
// order, both leaving them in place.
func testExport(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	var w storage.Writes
	for range 7 {
		w.NewJobs = append(w.NewJobs, newJob())
		w.Parked = append(w.Parked, parkedEvent(uuid.New(), uuid.NewString(), t0, true))
	}
	write(t, b, w)
	var ids []uuid.UUID
	for after := uuid.Nil; ; {
		page, err := b.ExportJobs(ctx, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) == 0 {
			break
		}
		ids = append(ids, page...)
		after = page[len(page)-1]
	}
	var want []uuid.UUID
	for _, j := range w.NewJobs {
		want = append(want, j.UUID)
	}
	slices.SortFunc(want, func(x, y uuid.UUID) int { return strings.Compare(x.String(), y.String()) })
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("ExportJobs: got %v, want %v", ids, want)
	}
	parked, err := b.ExportParked(ctx, 0, 100)
	if err != nil || len(parked) != 7 {
		t.Fatalf("ExportParked: got %d (%v), want 7", len(parked), err)
	}
	if rest, err := b.ExportParked(ctx, parked[4].ID, 100); err != nil || len(rest) != 2 || rest[0].ID != parked[5].ID {
		t.Errorf("ExportParked after %d: got %+v (%v)", parked[4].ID, rest, err)
	}
}

// testConcurrentUnits: many transactions at once, each locking one job, reading it and writing
// it back changed, lose no update: the locks serialise writers of one job.
func testConcurrentUnits(t *testing.T, b storage.Backend) {
	ctx := context.Background()
	job := newJob()
	write(t, b, storage.Writes{NewJobs: []statemachine.Job{job}})
	const n = 20
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- b.InTx(ctx, func(tx storage.Tx) error {
				got, err := tx.Load(ctx, storage.Load{Keys: []uuid.UUID{job.UUID}, Jobs: []uuid.UUID{job.UUID}})
				if err != nil {
					return err
				}
				j := got.Jobs[job.UUID]
				j.Attempt++
				return tx.Write(ctx, storage.Writes{Changed: []storage.Change{{Job: j}},
					History: []storage.HistoryEntry{{JobUUID: j.UUID, Kind: statemachine.EventStart, Verdict: statemachine.Duplicate,
						Origin: statemachine.OriginHTTP, StateFrom: j.State, StateTo: j.State, RecordedAt: t0}}})
			})
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := readJob(t, b, job.UUID); got.Attempt != 1+n {
		t.Errorf("after %d concurrent increments of 1: got attempt %d, want %d", n, got.Attempt, 1+n)
	}
	if h, err := b.History(ctx, job.UUID); err != nil || len(h) != n {
		t.Errorf("history: got %d entries (%v), want %d", len(h), err, n)
	}
}
