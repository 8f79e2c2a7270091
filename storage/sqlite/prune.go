package sqlite

import (
	"context"
	"fmt"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// prunableJobs selects, from jobs j, the jobs of state ?1 created before ?2 that retention may
// remove (storage.Pruner); the mirror of storage/postgres.
const prunableJobs = `j.state = ?1 AND j.created_at < ?2
	AND NOT (j.state = 'CRASHED' AND (j.auto_reschedule IS NULL OR j.auto_reschedule = 'planned'))
	AND NOT EXISTS (SELECT 1 FROM jobs s WHERE s.uuid = j.rescheduled_to AND s.state IN ('SCHEDULED', 'RUNNING'))
	AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_uuid = j.uuid)`

// PruneJobs deletes up to limit prunable jobs, oldest first; their history, data and crash
// key-values go with them (ON DELETE CASCADE). One writer at a time: a batch waits its turn.
func (b *Backend) PruneJobs(ctx context.Context, state statemachine.State, before time.Time, limit int) (int64, error) {
	return b.deleteWhere(ctx, fmt.Sprintf("prune %s jobs", state), `DELETE FROM jobs WHERE uuid IN
		(SELECT j.uuid FROM jobs j WHERE `+prunableJobs+` ORDER BY j.created_at LIMIT ?3)`, string(state), formatTime(before), limit)
}

// PruneRejected deletes up to limit rejected messages rejected before the given time.
func (b *Backend) PruneRejected(ctx context.Context, before time.Time, limit int) (int64, error) {
	return b.deleteWhere(ctx, "prune rejected messages", `DELETE FROM rejected_messages WHERE id IN
		(SELECT id FROM rejected_messages WHERE rejected_at < ? ORDER BY rejected_at LIMIT ?)`, formatTime(before), limit)
}

// CountPrunable counts the jobs of state created before the given time, by what retention does
// with them.
func (b *Backend) CountPrunable(ctx context.Context, state statemachine.State, before time.Time) (storage.PruneCount, error) {
	var c storage.PruneCount
	err := b.reader.QueryRowContext(ctx, `SELECT
			COALESCE(sum(NOT successor AND NOT reschedule AND NOT unpublished), 0),
			COALESCE(sum(successor), 0), COALESCE(sum(reschedule), 0), COALESCE(sum(unpublished), 0)
		FROM (SELECT
			EXISTS (SELECT 1 FROM jobs s WHERE s.uuid = j.rescheduled_to AND s.state IN ('SCHEDULED', 'RUNNING')) AS successor,
			(j.state = 'CRASHED' AND (j.auto_reschedule IS NULL OR j.auto_reschedule = 'planned')) AS reschedule,
			EXISTS (SELECT 1 FROM outbox o WHERE o.job_uuid = j.uuid) AS unpublished
			FROM jobs j WHERE j.state = ? AND j.created_at < ?)`, string(state), formatTime(before)).
		Scan(&c.Prunable, &c.SuccessorPending, &c.ReschedulePending, &c.OutboxPending)
	if err != nil {
		return c, fmt.Errorf("count prunable %s jobs: %w", state, interpretError(err))
	}
	return c, nil
}

// CountRejected counts the rejected messages rejected before the given time.
func (b *Backend) CountRejected(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := b.reader.QueryRowContext(ctx, `SELECT count(*) FROM rejected_messages WHERE rejected_at < ?`, formatTime(before)).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count rejected messages: %w", interpretError(err))
	}
	return n, nil
}

// ExportJobs returns up to limit jobs' uuids after the given one, in uuid order.
func (b *Backend) ExportJobs(ctx context.Context, after uuid.UUID, limit int) ([]uuid.UUID, error) {
	rows, err := b.reader.QueryContext(ctx, `SELECT uuid FROM jobs WHERE uuid > ? ORDER BY uuid LIMIT ?`, after.String(), limit)
	if err != nil {
		return nil, fmt.Errorf("export jobs: %w", interpretError(err))
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("export jobs: %w", interpretError(err))
		}
		id, err := uuid.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("export jobs: stored uuid %q: %w", s, err)
		}
		ids = append(ids, id)
	}
	return ids, interpretError(rows.Err())
}

// ExportParked returns up to limit parked events after the given id, in id order.
func (b *Backend) ExportParked(ctx context.Context, afterID int64, limit int) ([]storage.ParkedEvent, error) {
	return readParked(ctx, b.reader, "export parked events",
		`SELECT `+parkedColumns+` FROM parked_events WHERE id > ? ORDER BY id LIMIT ?`, afterID, limit)
}
