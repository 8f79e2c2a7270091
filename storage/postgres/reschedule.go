package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/internal/sqlbuild"
	"github.com/google/uuid"
)

// The claims lock with FOR UPDATE SKIP LOCKED: a job another transaction holds (another
// sweep, or a runner's report being applied) is left for the next sweep. PostgreSQL re-checks
// the WHERE clause on the newest version of a row it locks, so a claim never returns a job
// that another process changed (crashed, decided about, rescheduled) in the meantime.

// ClaimOverdue claims the job in state that entered it first (state_entered_at), before the
// given time.
func (t *txn) ClaimOverdue(ctx context.Context, state statemachine.State, before time.Time, skip []uuid.UUID) (uuid.UUID, error) {
	return t.claim(ctx, `state = $1 AND state_entered_at < $2`, "state_entered_at", skip, string(state), before)
}

// ClaimUndecided claims a crashed job without an automatic-reschedule mark.
func (t *txn) ClaimUndecided(ctx context.Context, skip []uuid.UUID) (uuid.UUID, error) {
	return t.claim(ctx, `state = 'CRASHED' AND auto_reschedule IS NULL`, "updated_at", skip)
}

// ClaimDue claims the job whose planned automatic reschedule is due soonest.
func (t *txn) ClaimDue(ctx context.Context, now time.Time, skip []uuid.UUID) (uuid.UUID, error) {
	return t.claim(ctx, `auto_reschedule = 'planned' AND auto_reschedule_due_at <= $1`, "auto_reschedule_due_at", skip, now)
}

// claim locks and returns the first job by order that matches where (with args $1…) and is
// not in skip.
func (t *txn) claim(ctx context.Context, where, order string, skip []uuid.UUID, args ...any) (uuid.UUID, error) {
	if len(skip) > 0 {
		args = append(args, skip)
		where += fmt.Sprintf(` AND uuid <> ALL($%d::uuid[])`, len(args))
	}
	var id uuid.UUID
	err := t.QueryRow(ctx, `SELECT uuid FROM jobs WHERE `+where+`
		ORDER BY `+order+` LIMIT 1 FOR UPDATE SKIP LOCKED`, args...).Scan(&id)
	return id, interpretError(err)
}

// RetryStats counts the successors of the rescheduled crashed jobs matching q.Filter by state,
// grouped on the crashed jobs.
func (b *Backend) RetryStats(ctx context.Context, s storage.StatsQuery) (storage.RetryStatsResult, error) {
	var res storage.RetryStatsResult
	countSQL, countArgs := sqlbuild.RetryCount(dialect{}, s.Filter)
	if err := b.pool.QueryRow(ctx, countSQL, analysis(countArgs)...).Scan(&res.Total); err != nil {
		return res, interpretError(err)
	}
	sql, args := sqlbuild.Retry(dialect{}, s)
	groups := sqlbuild.GroupColumns(s)
	rows, err := b.pool.Query(ctx, sql, analysis(args)...)
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
