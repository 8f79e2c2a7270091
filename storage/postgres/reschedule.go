package postgres

import (
	"context"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/internal/sqlbuild"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The claims lock with FOR UPDATE SKIP LOCKED: a job another transaction holds (another
// sweep, or a runner's report being applied) is left for the next sweep. PostgreSQL re-checks
// the WHERE clause on the newest version of a row it locks, so a claim never returns a job
// that another process changed (crashed, decided about, rescheduled) in the meantime.

// ClaimOverdue returns and locks jobs in state whose started_at (RUNNING) or created_at
// (SCHEDULED) is before the given time, oldest first.
func (t *txn) ClaimOverdue(ctx context.Context, state statemachine.State, before time.Time, limit int) ([]uuid.UUID, error) {
	col := "created_at"
	if state == statemachine.Running {
		col = "started_at"
	}
	return t.claim(ctx, `SELECT uuid FROM jobs WHERE state = $1 AND `+col+` < $2
		ORDER BY `+col+` LIMIT $3 FOR UPDATE SKIP LOCKED`, string(state), before, limit)
}

// ClaimUndecided returns and locks crashed jobs without an automatic-reschedule mark.
func (t *txn) ClaimUndecided(ctx context.Context, limit int) ([]uuid.UUID, error) {
	return t.claim(ctx, `SELECT uuid FROM jobs WHERE state = 'CRASHED' AND auto_reschedule IS NULL
		ORDER BY updated_at LIMIT $1 FOR UPDATE SKIP LOCKED`, limit)
}

// ClaimDue returns and locks jobs whose planned automatic reschedule is due.
func (t *txn) ClaimDue(ctx context.Context, now time.Time, limit int) ([]uuid.UUID, error) {
	return t.claim(ctx, `SELECT uuid FROM jobs WHERE auto_reschedule = 'planned' AND auto_reschedule_due_at <= $1
		ORDER BY auto_reschedule_due_at LIMIT $2 FOR UPDATE SKIP LOCKED`, now, limit)
}

func (t *txn) claim(ctx context.Context, sql string, args ...any) ([]uuid.UUID, error) {
	rows, err := t.tx.Query(ctx, sql, args...)
	if err != nil {
		return nil, interpretError(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	return ids, interpretError(err)
}

// MarkAuto sets the automatic-reschedule mark if it is `from`.
func (t *txn) MarkAuto(ctx context.Context, id uuid.UUID, from, to storage.AutoStatus, dueAt *time.Time) (bool, error) {
	tag, err := t.tx.Exec(ctx, `UPDATE jobs SET auto_reschedule = $3, auto_reschedule_due_at = $4
		WHERE uuid = $1 AND auto_reschedule IS NOT DISTINCT FROM $2::text`,
		id, autoMark(from), autoMark(to), dueAt)
	if err != nil {
		return false, interpretError(err)
	}
	return tag.RowsAffected() == 1, nil
}

func autoMark(s storage.AutoStatus) *string {
	if s == storage.AutoUndecided {
		return nil
	}
	v := string(s)
	return &v
}

// RetryStats counts the successors of the rescheduled crashed jobs matching q.Filter by state,
// grouped on the crashed jobs.
func (b *Backend) RetryStats(ctx context.Context, s storage.StatsQuery) (storage.RetryStatsResult, error) {
	var res storage.RetryStatsResult
	countSQL, countArgs := sqlbuild.RetryCount(dialect{}, s.Filter)
	if err := b.pool.QueryRow(ctx, countSQL, countArgs...).Scan(&res.Total); err != nil {
		return res, interpretError(err)
	}
	sql, args := sqlbuild.Retry(dialect{}, s)
	groups := sqlbuild.GroupColumns(s)
	rows, err := b.pool.Query(ctx, sql, args...)
	if err != nil {
		return res, interpretError(err)
	}
	defer rows.Close()
	for rows.Next() {
		vals := make([]*string, len(groups))
		var row storage.RetryStatsRow
		dest := make([]any, 0, len(groups)+4)
		for i := range vals {
			dest = append(dest, &vals[i])
		}
		dest = append(dest, &row.Rescheduled, &row.Finished, &row.Crashed, &row.Pending)
		if err := rows.Scan(dest...); err != nil {
			return res, interpretError(err)
		}
		if row.Rescheduled == 0 {
			continue // no group_by: one row even over nothing
		}
		row.Group = map[storage.Field]*string{}
		for i, f := range s.GroupBy {
			row.Group[f] = vals[i]
		}
		if s.Bucket != storage.BucketNone {
			if row.Bucket, err = sqlbuild.ParseBucket(vals[len(vals)-1]); err != nil {
				return res, err
			}
		}
		res.Rows = append(res.Rows, row)
	}
	return res, interpretError(rows.Err())
}
