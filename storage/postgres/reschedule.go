package postgres

import (
	"context"
	"fmt"
	"strings"
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
	countSQL, countArgs := retryCount(dialect{}, s.Filter)
	if err := b.pool.QueryRow(ctx, countSQL, countArgs...).Scan(&res.Total); err != nil {
		return res, interpretError(err)
	}
	q := sqlbuild.New(dialect{})
	sql, groups := retryGrouped(q, dialect{}, s)
	rows, err := b.pool.Query(ctx, sql, q.Args...)
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

// retryCount counts the rescheduled jobs f matches.
func retryCount(d sqlbuild.Dialect, f storage.Filter) (string, []any) {
	q := sqlbuild.New(d)
	return "SELECT count(*) FROM jobs j" + andRescheduled(q.Where(f)), q.Args
}

func andRescheduled(where string) string {
	if where == "" {
		return " WHERE j.rescheduled_to IS NOT NULL"
	}
	return where + " AND j.rescheduled_to IS NOT NULL"
}

// retryColumn maps a plain field to its column of the crashed jobs (aliased j).
var retryColumn = map[storage.Field]string{
	storage.FieldState: "j.state", storage.FieldTaskName: "j.taskname", storage.FieldItem: "j.item",
	storage.FieldItemType: "j.item_type", storage.FieldArch: "j.arch", storage.FieldNotify: "j.crash_notify",
	storage.FieldCause: "j.crash_cause",
}

var retryTable = map[string]string{storage.KVPrefix: "crash_keyvals", storage.DataPrefix: "job_data"}

// retryGrouped is the retry statistics query: the crashed jobs (j) that have a successor (s),
// grouped as sqlbuild.Grouped groups /stats, counting the successors by state. It returns the
// statement and the names of its group columns. Parameters are bound in text order.
func retryGrouped(q *sqlbuild.Query, d sqlbuild.Dialect, s storage.StatsQuery) (string, []string) {
	var cols, joins, groups []string
	for i, f := range s.GroupBy {
		alias := fmt.Sprintf("g%d", i)
		groups = append(groups, alias)
		switch _, _, isKV := f.Key(); {
		case isKV:
			cols = append(cols, alias+"t.value AS "+alias)
		case f == storage.FieldFatal:
			cols = append(cols, "CASE WHEN j.crash_fatal = "+q.Arg(true)+" THEN 'true' WHEN j.crash_fatal = "+q.Arg(false)+" THEN 'false' END AS "+alias)
		default:
			cols = append(cols, retryColumn[f]+" AS "+alias)
		}
	}
	if s.Bucket != storage.BucketNone {
		cols = append(cols, d.Bucket("j.created_at", s.Bucket)+" AS b")
		groups = append(groups, "b")
	}
	cols = append(cols, "s.state AS successor_state")
	for i, f := range s.GroupBy {
		if prefix, key, ok := f.Key(); ok {
			t := fmt.Sprintf("g%dt", i)
			joins = append(joins, fmt.Sprintf(" LEFT JOIN %s %s ON %s.job_uuid = j.uuid AND %s.key = %s",
				retryTable[prefix], t, t, t, q.Arg(key)))
		}
	}
	inner := "SELECT " + strings.Join(cols, ", ") + " FROM jobs j JOIN jobs s ON s.uuid = j.rescheduled_to" +
		strings.Join(joins, "") + andRescheduled(q.Where(s.Filter))
	groupList := ""
	if len(groups) > 0 {
		groupList = strings.Join(groups, ", ") + ", "
	}
	sql := "SELECT " + groupList + `count(*),
		COALESCE(sum(CASE WHEN successor_state = 'FINISHED' THEN 1 ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN successor_state = 'CRASHED' THEN 1 ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN successor_state IN ('SCHEDULED', 'RUNNING') THEN 1 ELSE 0 END), 0)
		FROM (` + inner + `) t`
	if len(groups) > 0 {
		sql += " GROUP BY " + strings.Join(groups, ", ")
	}
	return sql, groups
}
