package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/internal/sqlbuild"
	"github.com/google/uuid"
)

// The claims need no row locks: a write transaction holds the database's write lock from its
// start (BEGIN IMMEDIATE), across processes too, so what it reads stays as read until it ends
// and concurrent sweeps take turns.

// ClaimOverdue returns jobs in state whose started_at (RUNNING) or created_at (SCHEDULED) is
// before the given time, oldest first.
func (t *tx) ClaimOverdue(ctx context.Context, state statemachine.State, before time.Time, limit int) ([]uuid.UUID, error) {
	col := "created_at"
	if state == statemachine.Running {
		col = "started_at"
	}
	return t.claim(ctx, "claim overdue jobs", `SELECT uuid FROM jobs WHERE state = ? AND `+col+` < ?
		ORDER BY `+col+` LIMIT ?`, string(state), formatTime(before), limit)
}

// ClaimUndecided returns crashed jobs without an automatic-reschedule mark.
func (t *tx) ClaimUndecided(ctx context.Context, limit int) ([]uuid.UUID, error) {
	return t.claim(ctx, "claim undecided crashes", `SELECT uuid FROM jobs
		WHERE state = 'CRASHED' AND auto_reschedule IS NULL ORDER BY updated_at LIMIT ?`, limit)
}

// ClaimDue returns jobs whose planned automatic reschedule is due.
func (t *tx) ClaimDue(ctx context.Context, now time.Time, limit int) ([]uuid.UUID, error) {
	return t.claim(ctx, "claim due reschedules", `SELECT uuid FROM jobs
		WHERE auto_reschedule = 'planned' AND auto_reschedule_due_at <= ?
		ORDER BY auto_reschedule_due_at LIMIT ?`, formatTime(now), limit)
}

func (t *tx) claim(ctx context.Context, what, query string, args ...any) ([]uuid.UUID, error) {
	rows, err := t.tx.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, interpretError(err))
	}
	defer rows.Close()
	var ids []uuid.UUID
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, fmt.Errorf("%s: %w", what, interpretError(err))
		}
		id, err := uuid.Parse(s)
		if err != nil {
			return nil, fmt.Errorf("%s: stored uuid %q: %w", what, s, err)
		}
		ids = append(ids, id)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, interpretError(err))
	}
	return ids, nil
}

// MarkAuto sets the automatic-reschedule mark if it is `from`.
func (t *tx) MarkAuto(ctx context.Context, id uuid.UUID, from, to storage.AutoStatus, dueAt *time.Time) (bool, error) {
	res, err := t.tx.ExecContext(ctx, `UPDATE jobs SET auto_reschedule = ?, auto_reschedule_due_at = ?
		WHERE uuid = ? AND auto_reschedule IS ?`,
		autoMark(to), nullTime(dueAt), id.String(), autoMark(from))
	if err != nil {
		return false, fmt.Errorf("mark job %s %s: %w", id, to, interpretError(err))
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("mark job %s %s: %w", id, to, err)
	}
	return n == 1, nil
}

func autoMark(s storage.AutoStatus) any {
	if s == storage.AutoUndecided {
		return nil
	}
	return string(s)
}

// RetryStats counts the successors of the rescheduled crashed jobs matching q.Filter by state,
// grouped on the crashed jobs.
func (b *Backend) RetryStats(ctx context.Context, s storage.StatsQuery) (storage.RetryStatsResult, error) {
	var res storage.RetryStatsResult
	countSQL, countArgs := sqlbuild.RetryCount(dialect{}, s.Filter)
	query, args := sqlbuild.Retry(dialect{}, s)
	groups := sqlbuild.GroupColumns(s)
	err := b.readTx(ctx, func(tx *sql.Tx) error {
		if err := tx.QueryRowContext(ctx, countSQL, countArgs...).Scan(&res.Total); err != nil {
			return err
		}
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			vals := make([]sql.NullString, len(groups))
			var row storage.RetryStatsRow
			dest := make([]any, 0, len(groups)+4)
			for i := range vals {
				dest = append(dest, &vals[i])
			}
			dest = append(dest, &row.Rescheduled, &row.Finished, &row.Crashed, &row.Pending)
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			if row.Rescheduled == 0 {
				continue // no group_by: one row even over nothing
			}
			row.Group = map[storage.Field]*string{}
			for i, f := range s.GroupBy {
				row.Group[f] = nil
				if vals[i].Valid {
					v := vals[i].String
					row.Group[f] = &v
				}
			}
			if s.Bucket != storage.BucketNone {
				last := vals[len(vals)-1]
				if row.Bucket, err = sqlbuild.ParseBucket(&last.String); err != nil {
					return err
				}
			}
			res.Rows = append(res.Rows, row)
		}
		return rows.Err()
	})
	if err != nil {
		return res, fmt.Errorf("retry stats: %w", interpretError(err))
	}
	return res, nil
}
