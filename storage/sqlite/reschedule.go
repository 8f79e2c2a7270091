package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
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

// ClaimOverdue returns the job in state that entered it first (state_entered_at), before the
// given time.
func (t *tx) ClaimOverdue(ctx context.Context, state statemachine.State, before time.Time, skip []uuid.UUID) (uuid.UUID, error) {
	return t.claim(ctx, "claim an overdue job", `state = ? AND state_entered_at < ?`, "state_entered_at", skip,
		string(state), formatTime(before))
}

// ClaimUndecided returns a crashed job without an automatic-reschedule mark.
func (t *tx) ClaimUndecided(ctx context.Context, skip []uuid.UUID) (uuid.UUID, error) {
	return t.claim(ctx, "claim an undecided crash", `state = 'CRASHED' AND auto_reschedule IS NULL`, "updated_at", skip)
}

// ClaimDue returns the job whose planned automatic reschedule is due soonest.
func (t *tx) ClaimDue(ctx context.Context, now time.Time, skip []uuid.UUID) (uuid.UUID, error) {
	return t.claim(ctx, "claim a due reschedule", `auto_reschedule = 'planned' AND auto_reschedule_due_at <= ?`,
		"auto_reschedule_due_at", skip, formatTime(now))
}

// claim returns the first job by order that matches where (with args) and is not in skip.
func (t *tx) claim(ctx context.Context, what, where, order string, skip []uuid.UUID, args ...any) (uuid.UUID, error) {
	if len(skip) > 0 {
		ids := make([]string, len(skip))
		for i, id := range skip {
			ids[i] = id.String()
		}
		list, err := json.Marshal(ids)
		if err != nil {
			return uuid.Nil, fmt.Errorf("%s: %w", what, err)
		}
		where += ` AND uuid NOT IN (SELECT value FROM json_each(?))`
		args = append(args, string(list))
	}
	var s string
	err := t.QueryRowContext(ctx, `SELECT uuid FROM jobs WHERE `+where+` ORDER BY `+order+` LIMIT 1`, args...).Scan(&s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s: %w", what, interpretError(err))
	}
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, fmt.Errorf("%s: stored uuid %q: %w", what, s, err)
	}
	return id, nil
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
