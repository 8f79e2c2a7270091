package postgres

import (
	"context"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// pruneLockID is the transaction advisory lock a prune batch takes: one process prunes at a
// time ("exep").
const pruneLockID = 0x65786570

// prunableJobs selects, from jobs j, the jobs of state $1 created before $2 that retention may
// remove (storage.Pruner).
const prunableJobs = `j.state = $1 AND j.created_at < $2
	AND NOT (j.state = 'CRASHED' AND (j.auto_reschedule IS NULL OR j.auto_reschedule = 'planned'))
	AND NOT EXISTS (SELECT 1 FROM jobs s WHERE s.uuid = j.rescheduled_to AND s.state IN ('SCHEDULED', 'RUNNING'))
	AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.job_uuid = j.uuid)`

// PruneJobs deletes up to limit prunable jobs, oldest first; their history, data and crash
// key-values go with them (ON DELETE CASCADE).
func (b *Backend) PruneJobs(ctx context.Context, state statemachine.State, before time.Time, limit int) (int64, error) {
	return b.pruneBatch(ctx, `DELETE FROM jobs WHERE uuid IN (SELECT j.uuid FROM jobs j WHERE `+prunableJobs+`
		ORDER BY j.created_at LIMIT $3 FOR UPDATE SKIP LOCKED)`, string(state), before, limit)
}

// PruneRejected deletes up to limit rejected messages rejected before the given time.
func (b *Backend) PruneRejected(ctx context.Context, before time.Time, limit int) (int64, error) {
	return b.pruneBatch(ctx, `DELETE FROM rejected_messages WHERE id IN (SELECT id FROM rejected_messages
		WHERE rejected_at < $1 ORDER BY rejected_at LIMIT $2)`, before, limit)
}

// pruneBatch runs one delete in a transaction of its own, if no other process prunes.
func (b *Backend) pruneBatch(ctx context.Context, sql string, args ...any) (int64, error) {
	var n int64
	err := pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		var got bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock($1)`, pruneLockID).Scan(&got); err != nil {
			return err
		}
		if !got {
			return storage.ErrPruneBusy
		}
		tag, err := tx.Exec(ctx, sql, args...)
		n = tag.RowsAffected()
		return err
	})
	return n, interpretError(err)
}

// CountPrunable counts the jobs of state created before the given time, by what retention does
// with them.
func (b *Backend) CountPrunable(ctx context.Context, state statemachine.State, before time.Time) (storage.PruneCount, error) {
	var c storage.PruneCount
	err := b.pool.QueryRow(ctx, `SELECT
			count(*) FILTER (WHERE NOT successor AND NOT reschedule AND NOT unpublished),
			count(*) FILTER (WHERE successor), count(*) FILTER (WHERE reschedule), count(*) FILTER (WHERE unpublished)
		FROM (SELECT
			EXISTS (SELECT 1 FROM jobs s WHERE s.uuid = j.rescheduled_to AND s.state IN ('SCHEDULED', 'RUNNING')) AS successor,
			(j.state = 'CRASHED' AND (j.auto_reschedule IS NULL OR j.auto_reschedule = 'planned')) AS reschedule,
			EXISTS (SELECT 1 FROM outbox o WHERE o.job_uuid = j.uuid) AS unpublished
			FROM jobs j WHERE j.state = $1 AND j.created_at < $2) x`, string(state), before).
		Scan(&c.Prunable, &c.SuccessorPending, &c.ReschedulePending, &c.OutboxPending)
	return c, interpretError(err)
}

// CountRejected counts the rejected messages rejected before the given time.
func (b *Backend) CountRejected(ctx context.Context, before time.Time) (int64, error) {
	var n int64
	err := b.pool.QueryRow(ctx, `SELECT count(*) FROM rejected_messages WHERE rejected_at < $1`, before).Scan(&n)
	return n, interpretError(err)
}

// ExportJobs returns up to limit jobs' uuids after the given one, in uuid order.
func (b *Backend) ExportJobs(ctx context.Context, after uuid.UUID, limit int) ([]uuid.UUID, error) {
	rows, err := b.pool.Query(ctx, `SELECT uuid FROM jobs WHERE uuid > $1 ORDER BY uuid LIMIT $2`, after, limit)
	if err != nil {
		return nil, interpretError(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	return ids, interpretError(err)
}

// ExportParked returns up to limit parked events after the given id, in id order.
func (b *Backend) ExportParked(ctx context.Context, afterID int64, limit int) ([]storage.ParkedEvent, error) {
	rows, err := b.pool.Query(ctx, `SELECT `+parkedColumns+` FROM parked_events WHERE id > $1 ORDER BY id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, interpretError(err)
	}
	return collectParked(rows)
}
