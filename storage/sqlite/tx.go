package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
)

// tx is the storage.Tx of one write transaction. The transaction began IMMEDIATE on the only
// writer connection, so it holds the database's write lock: what it reads no other writer can
// change before it ends.
type tx struct {
	tx         *sql.Tx
	stmts      *stmtCache
	unprepared []string // statements run unprepared, to prepare after the transaction
	queued     bool     // outbox messages were written: wake the relay after the commit
}

var _ storage.Tx = (*tx)(nil)

// Write stores what a unit of work decided, row by row: SQLite runs in the process, so a
// statement costs no round trip, and the writer's one connection keeps its statements prepared
// (stmts.go).
func (t *tx) Write(ctx context.Context, w storage.Writes) error {
	for _, j := range w.NewJobs {
		if err := t.insertJob(ctx, j); err != nil {
			return err
		}
	}
	for _, c := range w.Changed {
		if err := t.updateJob(ctx, c); err != nil {
			return err
		}
	}
	for _, e := range w.History {
		if err := t.appendHistory(ctx, e); err != nil {
			return err
		}
	}
	for _, m := range w.Outbox {
		if err := t.appendOutbox(ctx, m); err != nil {
			return err
		}
	}
	if len(w.Outbox) > 0 {
		t.queued = true
	}
	for _, p := range w.Parked {
		if err := t.park(ctx, p); err != nil {
			return err
		}
	}
	for _, r := range w.Rejected {
		if err := t.appendRejected(ctx, r); err != nil {
			return err
		}
	}
	return nil
}

// insertJob stores a new job with its data rows (and its crash keyvals, should it be created
// crashed); storage.ErrConflict if its uuid or request id is taken.
func (t *tx) insertJob(ctx context.Context, job statemachine.Job) error {
	values, err := jobValues(job)
	if err != nil {
		return fmt.Errorf("insert job %s: %w", job.UUID, err)
	}
	_, err = t.ExecContext(ctx, `INSERT INTO jobs (`+jobColumns+`)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`, values...)
	if err != nil {
		return fmt.Errorf("insert job %s: %w", job.UUID, interpretError(err))
	}
	if err := insertKeyVals(ctx, t, "job_data", job.UUID, job.Data); err != nil {
		return fmt.Errorf("insert data of job %s: %w", job.UUID, interpretError(err))
	}
	if job.Crash != nil {
		if err := insertKeyVals(ctx, t, "crash_keyvals", job.UUID, job.Crash.KeyVals); err != nil {
			return fmt.Errorf("insert crash keyvals of job %s: %w", job.UUID, interpretError(err))
		}
	}
	return nil
}

// updateJob writes back every column that changes in a job's life (state, runner, urls, crash,
// attempt, lineage, times, automatic-reschedule mark), and the crash keyvals of a job that
// crashed in this unit. The trigger's fields and data do not change and are left alone.
// storage.ErrNotFound if the job does not exist.
func (t *tx) updateJob(ctx context.Context, c storage.Change) error {
	job := c.Job
	var runner any
	if job.Runner != nil {
		b, err := json.Marshal(job.Runner)
		if err != nil {
			return fmt.Errorf("update job %s: encode runner: %w", job.UUID, err)
		}
		runner = string(b)
	}
	var notify, cause, fatal any
	if job.Crash != nil {
		notify, cause, fatal = string(job.Crash.Notify), string(job.Crash.Cause), job.Crash.Fatal
	}
	res, err := t.ExecContext(ctx, `UPDATE jobs SET
		state = ?, runner = ?, artifacts_url = ?, log_url = ?,
		crash_notify = ?, crash_cause = ?, crash_fatal = ?, attempt = ?,
		rescheduled_from = ?, rescheduled_to = ?, started_at = ?, finished_at = ?, updated_at = ?,
		state_entered_at = ?, auto_reschedule = ?, auto_reschedule_due_at = ?
		WHERE uuid = ?`,
		string(job.State), runner, nullString(job.ArtifactsURL), nullString(job.LogURL),
		notify, cause, fatal, job.Attempt,
		nullUUID(job.RescheduledFrom), nullUUID(job.RescheduledTo), nullTime(job.StartedAt),
		nullTime(job.FinishedAt), formatTime(job.UpdatedAt), formatTime(job.StateEnteredAt),
		nullString(string(job.Auto)), nullTime(job.AutoDueAt), job.UUID.String())
	if err != nil {
		return fmt.Errorf("update job %s: %w", job.UUID, interpretError(err))
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("update job %s: %w", job.UUID, err)
	} else if n == 0 {
		return fmt.Errorf("update job %s: %w", job.UUID, storage.ErrNotFound)
	}
	// A job becomes CRASHED once and stays so: its key-values are written then, never again.
	if c.Crashed && job.Crash != nil {
		if err := insertKeyVals(ctx, t, "crash_keyvals", job.UUID, job.Crash.KeyVals); err != nil {
			return fmt.Errorf("insert crash keyvals of job %s: %w", job.UUID, interpretError(err))
		}
	}
	return nil
}

// appendHistory adds an entry to a job's history; its ID is assigned by the database.
// storage.ErrNotFound if the job does not exist.
func (t *tx) appendHistory(ctx context.Context, e storage.HistoryEntry) error {
	var detail any
	if e.Detail != nil {
		detail = string(e.Detail)
	}
	_, err := t.ExecContext(ctx, `INSERT INTO job_events
		(job_uuid, kind, verdict, origin, message_id, actor, state_from, state_to, detail, recorded_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		e.JobUUID.String(), string(e.Kind), string(e.Verdict), string(e.Origin), e.MessageID,
		e.Actor, string(e.StateFrom), string(e.StateTo), detail, formatTime(e.RecordedAt))
	if err != nil {
		return fmt.Errorf("append history of job %s: %w", e.JobUUID, interpretError(err))
	}
	return nil
}

// appendOutbox queues a message for publishing; its ID is assigned by the database.
// storage.ErrConflict if its message id is taken.
func (t *tx) appendOutbox(ctx context.Context, m storage.OutboxMessage) error {
	headers, err := json.Marshal(m.Headers)
	if err != nil {
		return fmt.Errorf("append outbox message %s: encode headers: %w", m.MessageID, err)
	}
	_, err = t.ExecContext(ctx, `INSERT INTO outbox
		(message_id, job_uuid, topic, body, headers, created_at) VALUES (?, ?, ?, ?, ?, ?)`,
		m.MessageID.String(), m.JobUUID.String(), m.Topic, string(m.Body), string(headers),
		formatTime(m.CreatedAt))
	if err != nil {
		return fmt.Errorf("append outbox message %s: %w", m.MessageID, interpretError(err))
	}
	return nil
}
