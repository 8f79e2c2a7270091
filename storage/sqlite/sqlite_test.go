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
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/jobs"
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

func TestNullColumns(t *testing.T) {
	b := openTemp(t)
	ctx := context.Background()
	s := jobs.New(b, jobs.Config{})
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

// TestSurvivesKill commits a job in a child process that then kills itself with SIGKILL, without
// closing the database, and finds the job after reopening.
func TestSurvivesKill(t *testing.T) {
	const pathVar = "EXECDB_SQLITE_TEST_KILL_PATH"
	if path := os.Getenv(pathVar); path != "" {
		b, err := Open(context.Background(), path)
		if err != nil {
			t.Fatal(err)
		}
		res, err := jobs.New(b, jobs.Config{}).Create(context.Background(),
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
