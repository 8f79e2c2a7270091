package sqlite

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/internal/migrations"
	"github.com/fedora-qa/execdb/storage/storagetest"
	"github.com/google/uuid"
)

// openTemp returns a migrated backend on a fresh database in t.TempDir(), closed at cleanup.
func openTemp(t *testing.T) *Backend {
	t.Helper()
	return openTempAt(t, filepath.Join(t.TempDir(), "execdb.db"))
}

// openTempAt opens and migrates the database at path, closed at cleanup.
func openTempAt(t *testing.T, path string) *Backend {
	t.Helper()
	b, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return b
}

// TestConformance runs the shared storage suite against SQLite.
func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return openTemp(t) })
}

// clock is a Config.Now whose times carry nanoseconds, which storage must cut to microseconds.
func clock() func() time.Time {
	var mu sync.Mutex
	now := time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(1001 * time.Nanosecond)
		return now
	}
}

// normalise makes the forms of a job that mean the same thing equal: a job without data may
// have nil or empty Data, a crash without keyvals nil or empty KeyVals.
func normalise(j statemachine.Job) statemachine.Job {
	if len(j.Data) == 0 {
		j.Data = nil
	}
	if j.Crash != nil {
		c := *j.Crash
		if c.KeyVals == nil {
			c.KeyVals = statemachine.KeyVals{}
		}
		j.Crash = &c
	}
	return j
}

func assertJob(t *testing.T, got, want statemachine.Job) {
	t.Helper()
	if g, w := normalise(got), normalise(want); !reflect.DeepEqual(g, w) {
		t.Errorf("job read back differs:\ngot  %#v\nwant %#v", g, w)
	}
}

func meta(id string) statemachine.Meta {
	return statemachine.Meta{Origin: statemachine.OriginHTTP, MessageID: id, Actor: "tester"}
}

func TestOpenMigrateIdempotent(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sub dir?#", "execdb.db") // characters a URI must escape
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		b, err := Open(ctx, path)
		if err != nil {
			t.Fatalf("round %d: Open: %v", round, err)
		}
		for i := 0; i < 2; i++ {
			if err := b.Migrate(ctx); err != nil {
				t.Fatalf("round %d: Migrate #%d: %v", round, i+1, err)
			}
		}
		ms, err := migrations.Load(migrationFiles, "migrations")
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if err := b.reader.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != len(ms) {
			t.Errorf("round %d: got %d rows in schema_migrations, want %d", round, n, len(ms))
		}
		if err := b.Ping(ctx); err != nil {
			t.Errorf("Ping: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		if err := b.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database file not where asked: %v", err)
	}
}

func TestOpenRejectsNonFile(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db?mode=memory"} {
		if b, err := Open(context.Background(), p); err == nil {
			b.Close()
			t.Errorf("Open(%q): got no error, want one", p)
		}
	}
}

func TestPragmas(t *testing.T) {
	b := openTemp(t)
	ctx := context.Background()
	want := map[string]string{
		"journal_mode": "wal", "synchronous": "2", "busy_timeout": "10000", "foreign_keys": "1",
	}
	for name, db := range map[string]*sql.DB{"writer": b.writer, "reader": b.reader} {
		for pragma, w := range want {
			var got string
			if err := db.QueryRowContext(ctx, "PRAGMA "+pragma).Scan(&got); err != nil {
				t.Fatalf("%s: PRAGMA %s: %v", name, pragma, err)
			}
			if got != w {
				t.Errorf("%s: PRAGMA %s: got %s, want %s", name, pragma, got, w)
			}
		}
	}
	if _, err := b.reader.ExecContext(ctx, `DELETE FROM jobs`); err == nil {
		t.Errorf("reader connection: got a write through, want it to be read-only")
	}
}

func TestLifecycleRoundTrip(t *testing.T) {
	b := openTemp(t)
	ctx := context.Background()
	s := storage.New(b, storage.Config{Now: clock()})

	created, err := s.Create(ctx, statemachine.NewJob{
		TaskName: "rpmlint", Item: "foo-1.0-1.fc40", ItemType: "koji_build",
		Data:   statemachine.KeyVals{"koji_tag": {"f40-updates-testing", "f40"}, "critpath": {"true"}},
		Source: &statemachine.Source{MsgID: "2024-abc", Topic: "org.fedoraproject.prod.buildsys.build.state.change"},
	}, meta("req-1"))
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	if !created.Created || created.Verdict != statemachine.Applied {
		t.Fatalf("Create: got created=%v verdict=%s, want true applied", created.Created, created.Verdict)
	}
	got, err := b.Job(ctx, created.Job.UUID)
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	assertJob(t, got, created.Job)
	if got.CreatedAt.Nanosecond()%1000 != 0 {
		t.Errorf("created_at %v: got sub-microsecond digits, want microseconds", got.CreatedAt)
	}

	started, err := s.Apply(ctx, created.Job.UUID, statemachine.Event{
		Meta:  meta("start-1"),
		Start: &statemachine.Start{Runner: &statemachine.Runner{Name: "buildbot", JobID: "all/4821", Worker: "client10", URL: "https://bb/4821"}},
	})
	if err != nil {
		t.Fatalf("Apply start: %v", err)
	}
	got, err = b.Job(ctx, created.Job.UUID)
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	assertJob(t, got, started.Job)

	finishedAt := time.Date(2024, 5, 6, 8, 0, 0, 999999999, time.FixedZone("CEST", 2*3600))
	ended, err := s.Apply(ctx, created.Job.UUID, statemachine.Event{
		Meta: meta("end-1"),
		End: &statemachine.End{
			State: statemachine.Crashed, FinishedAt: &finishedAt, LogURL: "https://logs/4821",
			Crash: &statemachine.Crash{Notify: statemachine.NotifyTaskotron, Cause: statemachine.CauseMinion,
				KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {"TIMED_OUT", "RETRIED"}}},
		},
	})
	if err != nil {
		t.Fatalf("Apply end: %v", err)
	}
	if ended.Verdict != statemachine.Applied || ended.Job.State != statemachine.Crashed {
		t.Fatalf("Apply end: got %s %s, want applied CRASHED", ended.Verdict, ended.Job.State)
	}
	got, err = b.Job(ctx, created.Job.UUID)
	if err != nil {
		t.Fatalf("Job: %v", err)
	}
	assertJob(t, got, ended.Job)
	if got.ArtifactsURL != "" || got.LogURL != "https://logs/4821" {
		t.Errorf("urls: got %q %q, want \"\" and the log url", got.ArtifactsURL, got.LogURL)
	}

	hist, err := b.History(ctx, created.Job.UUID)
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	var kinds []string
	for _, e := range hist {
		kinds = append(kinds, fmt.Sprintf("%s:%s:%s>%s:%s", e.Kind, e.Verdict, e.StateFrom, e.StateTo, e.MessageID))
		if e.JobUUID != created.Job.UUID || e.Origin != statemachine.OriginHTTP || e.Actor != "tester" || len(e.Detail) == 0 {
			t.Errorf("history entry %+v: wrong job, origin, actor or detail", e)
		}
	}
	wantKinds := []string{
		"create:applied:>SCHEDULED:req-1", "start:applied:SCHEDULED>RUNNING:start-1", "end:applied:RUNNING>CRASHED:end-1",
	}
	if !reflect.DeepEqual(kinds, wantKinds) {
		t.Errorf("history: got %v, want %v", kinds, wantKinds)
	}

	out, err := b.Outbox(ctx, 0, 10)
	if err != nil {
		t.Fatalf("Outbox: %v", err)
	}
	var topics []string
	for _, m := range out {
		topics = append(topics, strings.TrimPrefix(m.Topic, storage.DefaultTopicPrefix+"."))
	}
	wantTopics := []string{"execdb.job.scheduled", "execdb.job.running", "execdb.job.crashed.taskotron.minion"}
	if !reflect.DeepEqual(topics, wantTopics) {
		t.Errorf("outbox topics: got %v, want %v", topics, wantTopics)
	}
	if len(out) == 3 && (out[2].Headers["execdb_cause"] != "minion" || out[2].Headers["fedora_messaging_severity"] != "30") {
		t.Errorf("crash message headers: got %v", out[2].Headers)
	}
}

func TestKeyValsRoundTrip(t *testing.T) {
	b := openTemp(t)
	ctx := context.Background()
	now := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	base := statemachine.Job{
		State: statemachine.Scheduled, TaskName: "t", Item: "i", ItemType: "koji_build", Arch: "noarch",
		Attempt: 1, CreatedAt: now, UpdatedAt: now,
	}
	withData := base
	withData.UUID, withData.RequestID = uuid.New(), "r1"
	withData.Data = statemachine.KeyVals{"z": {"3", "1", "2"}, "a": {"only"}, "dup": {"x", "x", ""}}
	bare := base
	bare.UUID, bare.RequestID = uuid.New(), "r2"
	crashed := base
	crashed.UUID, crashed.RequestID = uuid.New(), "r3"
	crashed.State = statemachine.Crashed
	crashed.FinishedAt = &now
	crashed.Crash = &statemachine.Crash{Notify: statemachine.NotifyTask, Cause: statemachine.CauseTask, Fatal: true,
		KeyVals: statemachine.KeyVals{"reason": {"b", "a", "c"}}}
	crashedBare := base
	crashedBare.UUID, crashedBare.RequestID = uuid.New(), "r4"
	crashedBare.State = statemachine.Crashed
	crashedBare.Crash = &statemachine.Crash{Notify: statemachine.NotifyUnknown, Cause: statemachine.CauseUnknown}

	jobs := []statemachine.Job{withData, bare, crashed, crashedBare}
	err := b.InTx(ctx, func(tx storage.Tx) error {
		for _, j := range jobs {
			if err := tx.InsertJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("InsertJob: %v", err)
	}
	for _, want := range jobs {
		got, err := b.Job(ctx, want.UUID)
		if err != nil {
			t.Fatalf("Job: %v", err)
		}
		assertJob(t, got, want)
	}
	if got, _ := b.Job(ctx, bare.UUID); got.Data != nil {
		t.Errorf("job without data: got Data %#v, want nil", got.Data)
	}
	if got, _ := b.Job(ctx, crashedBare.UUID); got.Crash == nil || got.Crash.KeyVals == nil || len(got.Crash.KeyVals) != 0 {
		t.Errorf("crash without keyvals: got %#v, want empty non-nil KeyVals", got.Crash)
	}

	// UpdateJob replaces the crash keyvals, and drops them with the crash.
	crashed.Crash.KeyVals = statemachine.KeyVals{"step": {"2", "1"}}
	bare.State, bare.Crash = statemachine.Crashed, &statemachine.Crash{Notify: statemachine.NotifyTask, Cause: statemachine.CauseNetwork}
	runner := &statemachine.Runner{Name: "buildbot"}
	bare.Runner, bare.ArtifactsURL, bare.StartedAt = runner, "https://artifacts", &now
	to := uuid.New()
	bare.RescheduledTo = &to
	err = b.InTx(ctx, func(tx storage.Tx) error {
		for _, j := range []statemachine.Job{crashed, bare} {
			if err := tx.UpdateJob(ctx, j); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatalf("UpdateJob: %v", err)
	}
	for _, want := range []statemachine.Job{crashed, bare} {
		got, err := b.Job(ctx, want.UUID)
		if err != nil {
			t.Fatalf("Job: %v", err)
		}
		assertJob(t, got, want)
	}
	var keyvals int
	if err := b.reader.QueryRowContext(ctx, `SELECT count(*) FROM crash_keyvals WHERE job_uuid = ?`, crashed.UUID.String()).Scan(&keyvals); err != nil {
		t.Fatal(err)
	}
	if keyvals != 2 {
		t.Errorf("crash keyval rows after update: got %d, want 2", keyvals)
	}
}

func TestNullColumns(t *testing.T) {
	b := openTemp(t)
	ctx := context.Background()
	s := storage.New(b, storage.Config{})
	res, err := s.Create(ctx, statemachine.NewJob{TaskName: "t", Item: "i", ItemType: "x"}, meta("m"))
	if err != nil {
		t.Fatal(err)
	}
	var nulls int
	err = b.reader.QueryRowContext(ctx, `SELECT
		(source_msg_id IS NULL) + (source_topic IS NULL) + (runner IS NULL) + (artifacts_url IS NULL) +
		(log_url IS NULL) + (crash_notify IS NULL) + (crash_cause IS NULL) + (crash_fatal IS NULL) +
		(rescheduled_from IS NULL) + (rescheduled_to IS NULL) + (started_at IS NULL) + (finished_at IS NULL)
		FROM jobs WHERE uuid = ?`, res.Job.UUID.String()).Scan(&nulls)
	if err != nil {
		t.Fatal(err)
	}
	if nulls != 12 {
		t.Errorf("NULL columns of a fresh job without source: got %d, want 12", nulls)
	}
	got, err := b.Job(ctx, res.Job.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if got.Source != nil || got.Runner != nil || got.Crash != nil || got.StartedAt != nil || got.RescheduledFrom != nil {
		t.Errorf("got %+v, want nil source, runner, crash, started_at, rescheduled_from", got)
	}
}

func TestErrors(t *testing.T) {
	b := openTemp(t)
	ctx := context.Background()
	missing := uuid.New()
	if _, err := b.Job(ctx, missing); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("Job of unknown uuid: got %v, want ErrNotFound", err)
	}
	if h, err := b.History(ctx, missing); err != nil || len(h) != 0 {
		t.Errorf("History of unknown uuid: got %v, %v, want empty, nil", h, err)
	}
	now := time.Now().UTC().Truncate(time.Microsecond)
	job := statemachine.Job{UUID: uuid.New(), State: statemachine.Scheduled, TaskName: "t", Item: "i",
		ItemType: "x", Arch: "noarch", RequestID: "req", Attempt: 1, CreatedAt: now, UpdatedAt: now}
	sameUUID := job
	sameUUID.RequestID = "other"
	sameRequest := job
	sameRequest.UUID = uuid.New()

	check := func(name string, want error, fn func(tx storage.Tx) error) {
		t.Helper()
		err := b.InTx(ctx, fn)
		if !errors.Is(err, want) {
			t.Errorf("%s: got %v, want %v", name, err, want)
		}
	}
	check("LockJob unknown", storage.ErrNotFound, func(tx storage.Tx) error { _, err := tx.LockJob(ctx, missing); return err })
	check("JobByRequestID unknown", storage.ErrNotFound, func(tx storage.Tx) error { _, err := tx.JobByRequestID(ctx, "nope"); return err })
	check("UpdateJob unknown", storage.ErrNotFound, func(tx storage.Tx) error { return tx.UpdateJob(ctx, sameRequest) })
	check("AppendHistory unknown job", storage.ErrNotFound, func(tx storage.Tx) error {
		return tx.AppendHistory(ctx, storage.HistoryEntry{JobUUID: missing, Kind: "start", Verdict: "applied",
			Origin: "http", StateTo: "RUNNING", RecordedAt: now})
	})
	check("InsertJob", nil, func(tx storage.Tx) error { return tx.InsertJob(ctx, job) })
	check("InsertJob same uuid", storage.ErrConflict, func(tx storage.Tx) error { return tx.InsertJob(ctx, sameUUID) })
	check("InsertJob same request id", storage.ErrConflict, func(tx storage.Tx) error { return tx.InsertJob(ctx, sameRequest) })
	msg := storage.OutboxMessage{MessageID: uuid.New(), JobUUID: job.UUID, Topic: "t", Body: []byte(`{}`), CreatedAt: now}
	check("AppendOutbox", nil, func(tx storage.Tx) error { return tx.AppendOutbox(ctx, msg) })
	check("AppendOutbox same message id", storage.ErrConflict, func(tx storage.Tx) error { return tx.AppendOutbox(ctx, msg) })

	// A failing or panicking fn rolls back, and the writer stays usable.
	boom := errors.New("boom")
	check("rollback", boom, func(tx storage.Tx) error {
		if err := tx.InsertJob(ctx, withRequestID(job, "rolled-back-1")); err != nil {
			return err
		}
		return boom
	})
	func() {
		defer func() { _ = recover() }()
		_ = b.InTx(ctx, func(tx storage.Tx) error {
			if err := tx.InsertJob(ctx, withRequestID(job, "rolled-back-2")); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	for _, req := range []string{"rolled-back-1", "rolled-back-2"} {
		check("after rollback "+req, storage.ErrNotFound, func(tx storage.Tx) error { _, err := tx.JobByRequestID(ctx, req); return err })
	}
}

// withRequestID is job under a fresh uuid and the given request id.
func withRequestID(job statemachine.Job, requestID string) statemachine.Job {
	job.UUID, job.RequestID = uuid.New(), requestID
	return job
}

func TestOutbox(t *testing.T) {
	b := openTemp(t)
	ctx := context.Background()
	now := time.Date(2024, 1, 2, 3, 4, 5, 6000, time.UTC)
	var want []storage.OutboxMessage
	err := b.InTx(ctx, func(tx storage.Tx) error {
		for i := 0; i < 5; i++ {
			m := storage.OutboxMessage{
				MessageID: uuid.New(), JobUUID: uuid.New(), Topic: fmt.Sprintf("topic.%d", i),
				Body:      []byte(fmt.Sprintf("{ \"n\" :%d,\n\"s\":\"\u00e9\\u00e9\" }", i)), // kept byte for byte
				Headers:   map[string]string{"fedora_messaging_severity": "20", "i": fmt.Sprint(i)},
				CreatedAt: now,
			}
			if err := tx.AppendOutbox(ctx, m); err != nil {
				return err
			}
			want = append(want, m)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("AppendOutbox: %v", err)
	}
	all, err := b.Outbox(ctx, 0, 100)
	if err != nil {
		t.Fatalf("Outbox: %v", err)
	}
	if len(all) != len(want) {
		t.Fatalf("Outbox: got %d messages, want %d", len(all), len(want))
	}
	for i, m := range all {
		w := want[i]
		w.ID = m.ID
		if !reflect.DeepEqual(m, w) {
			t.Errorf("message %d:\ngot  %#v\nwant %#v", i, m, w)
		}
		if i > 0 && m.ID <= all[i-1].ID {
			t.Errorf("message %d: id %d not after %d", i, m.ID, all[i-1].ID)
		}
	}
	// Published messages are skipped; afterID and limit page through the rest.
	if _, err := b.writer.ExecContext(ctx, `UPDATE outbox SET published_at = ? WHERE id = ?`, formatTime(now), all[1].ID); err != nil {
		t.Fatal(err)
	}
	page, err := b.Outbox(ctx, all[0].ID, 2)
	if err != nil {
		t.Fatalf("Outbox: %v", err)
	}
	if len(page) != 2 || page[0].ID != all[2].ID || page[1].ID != all[3].ID {
		t.Errorf("Outbox(after %d, 2): got %d messages starting %v, want messages %d and %d", all[0].ID, len(page), page, all[2].ID, all[3].ID)
	}
	if none, err := b.Outbox(ctx, 0, 0); err != nil || len(none) != 0 {
		t.Errorf("Outbox(limit 0): got %d messages, %v, want none", len(none), err)
	}
}

// TestConcurrentWriters has many goroutines write at once: none may fail with "database is
// locked", and the state machine's verdicts must come out as if they had run one by one.
func TestConcurrentWriters(t *testing.T) {
	b := openTemp(t)
	ctx := context.Background()
	s := storage.New(b, storage.Config{})
	const n = 50

	res, err := s.Create(ctx, statemachine.NewJob{TaskName: "t", Item: "i", ItemType: "x"}, meta("create"))
	if err != nil {
		t.Fatal(err)
	}
	id := res.Job.UUID

	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		verdicts = map[statemachine.Verdict]int{}
		winner   statemachine.State
		created  = map[uuid.UUID]bool{}
		same     = map[uuid.UUID]int{}
		newJobs  int
		errs     []error
		stop     = make(chan struct{})
		readers  sync.WaitGroup
	)
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		mu.Unlock()
	}
	// Readers run alongside the writers.
	for r := 0; r < 4; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := b.Job(ctx, id); err != nil {
					fail(fmt.Errorf("Job: %w", err))
				}
				if _, err := b.History(ctx, id); err != nil {
					fail(fmt.Errorf("History: %w", err))
				}
				if _, err := b.Outbox(ctx, 0, 10); err != nil {
					fail(fmt.Errorf("Outbox: %w", err))
				}
			}
		}()
	}
	for i := 0; i < n; i++ {
		wg.Add(3)
		go func() { // an end for the one job, FINISHED or CRASHED
			defer wg.Done()
			end := &statemachine.End{State: statemachine.Finished}
			if i%2 == 1 {
				end = &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{
					Notify: statemachine.NotifyTask, Cause: statemachine.CauseTask}}
			}
			r, err := s.Apply(ctx, id, statemachine.Event{Meta: meta(fmt.Sprintf("end-%d", i)), End: end})
			if err != nil {
				fail(fmt.Errorf("Apply: %w", err))
				return
			}
			mu.Lock()
			verdicts[r.Verdict]++
			if r.Verdict == statemachine.Applied {
				winner = r.Job.State
			}
			mu.Unlock()
		}()
		go func() { // a create of a distinct job
			defer wg.Done()
			r, err := s.Create(ctx, statemachine.NewJob{TaskName: "t", Item: fmt.Sprint(i), ItemType: "x"}, meta(fmt.Sprintf("c-%d", i)))
			if err != nil {
				fail(fmt.Errorf("Create: %w", err))
				return
			}
			mu.Lock()
			created[r.Job.UUID] = r.Created
			mu.Unlock()
		}()
		go func() { // a create repeating one request id
			defer wg.Done()
			r, err := s.Create(ctx, statemachine.NewJob{TaskName: "t", Item: "same", ItemType: "x", RequestID: "same"}, meta("same"))
			if err != nil {
				fail(fmt.Errorf("Create same: %w", err))
				return
			}
			mu.Lock()
			same[r.Job.UUID]++
			if r.Created {
				newJobs++
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	close(stop)
	readers.Wait()

	for _, err := range errs {
		t.Error(err)
	}
	if verdicts[statemachine.Applied] != 1 || verdicts[statemachine.Duplicate]+verdicts[statemachine.Conflict] != n-1 {
		t.Errorf("end verdicts: got %v, want 1 applied and %d duplicate or conflict", verdicts, n-1)
	}
	job, err := b.Job(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if job.State != winner {
		t.Errorf("final state: got %s, want %s (the applied end)", job.State, winner)
	}
	hist, err := b.History(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if len(hist) != n+1 {
		t.Errorf("history: got %d entries, want %d", len(hist), n+1)
	}
	for u, c := range created {
		if !c {
			t.Errorf("create of distinct job %s: got created false, want true", u)
		}
	}
	if len(created) != n {
		t.Errorf("distinct creates: got %d jobs, want %d", len(created), n)
	}
	if len(same) != 1 || newJobs != 1 {
		t.Errorf("creates with one request id: got %d jobs, %d created, want 1 and 1", len(same), newJobs)
	}
	out, err := b.Outbox(ctx, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if want := 1 + 1 + n + 1; len(out) != want { // create, end, distinct creates, one repeated create
		t.Errorf("outbox: got %d messages, want %d", len(out), want)
	}
}

// TestSurvivesKill commits a job in a child process that then kills itself with SIGKILL, without
// closing the database, and finds the job after reopening.
func TestSurvivesKill(t *testing.T) {
	const pathVar = "EXECDB_SQLITE_TEST_KILL_PATH"
	if path := os.Getenv(pathVar); path != "" {
		b, err := Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		res, err := storage.New(b, storage.Config{}).Create(context.Background(),
			statemachine.NewJob{TaskName: "t", Item: "i", ItemType: "x"}, meta("m"))
		if err != nil {
			t.Fatal(err)
		}
		fmt.Printf("\ncreated=%s\n", res.Job.UUID)
		os.Stdout.Sync()
		p, _ := os.FindProcess(os.Getpid())
		p.Kill()
		select {}
	}
	path := filepath.Join(t.TempDir(), "execdb.db")
	b := openTempAt(t, path)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestSurvivesKill$")
	cmd.Env = append(os.Environ(), pathVar+"="+path)
	out, err := cmd.Output()
	var exitErr *exec.ExitError
	if !errors.As(err, &exitErr) {
		t.Fatalf("child: got %v, want it killed; output:\n%s", err, out)
	}
	var id uuid.UUID
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "created="); ok {
			id = uuid.MustParse(v)
		}
	}
	if id == uuid.Nil {
		t.Fatalf("child created no job; output:\n%s", out)
	}
	b = openTempAt(t, path)
	if _, err := b.Job(context.Background(), id); err != nil {
		t.Errorf("job committed before the kill: got %v, want it found", err)
	}
}

func BenchmarkLifecycle(b *testing.B) {
	backend, err := Open(context.Background(), filepath.Join(b.TempDir(), "execdb.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer backend.Close()
	if err := backend.Migrate(context.Background()); err != nil {
		b.Fatal(err)
	}
	storagetest.BenchmarkLifecycle(b, backend)
}
