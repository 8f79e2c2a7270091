package postgres

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/internal/sqlbuild"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
)

// dialect is PostgreSQL's side of the shared query builder.
type dialect struct{}

func (dialect) Placeholder(n int) string { return "$" + strconv.Itoa(n) }

func (dialect) Arg(v any) any { return v }

func (dialect) Like(expr, param string) string { return expr + " LIKE " + param + ` ESCAPE '\'` }

func (dialect) Pattern(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`, `*`, `%`)
	return r.Replace(s)
}

func (dialect) Bucket(col string, b storage.Bucket) string {
	return "date_trunc('" + string(b) + "', " + col + " AT TIME ZONE 'UTC')"
}

func (dialect) BucketText(bucket string) string {
	return "to_char(" + bucket + `, 'YYYY-MM-DD"T"HH24:MI:SS"Z"')`
}

// Search returns a page of jobs matching f, newest first, with their key-values.
func (b *Backend) Search(ctx context.Context, f storage.Filter, page storage.Page) ([]statemachine.Job, *storage.Cursor, error) {
	sql, args := sqlbuild.Search(dialect{}, jobWithKeyValues, f, page)
	rows, err := b.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, nil, interpretError(err)
	}
	jobs, err := collectJobs(rows)
	if err != nil {
		return nil, nil, interpretError(err)
	}
	var next *storage.Cursor
	if len(jobs) > page.Limit {
		jobs = jobs[:page.Limit]
		last := jobs[len(jobs)-1]
		next = &storage.Cursor{CreatedAt: last.CreatedAt, UUID: last.UUID}
	}
	return jobs, next, nil
}

// statement is an SQL statement with its arguments.
type statement struct {
	sql  string
	args []any
}

// statsStatements are the statements Stats may send for s, in the order it tries them.
func (b *Backend) statsStatements(s storage.StatsQuery) []statement {
	if combos, ok := fixedCombinations(s); ok {
		sql, args := fixedStatsSQL(s, combos)
		return []statement{{sql, args}}
	}
	tally, tallyArgs := tallySQL(s, b.tallyRows)
	grouped, groupedArgs := statsSQL(s)
	return []statement{{tally, tallyArgs}, {grouped, groupedArgs}}
}

// Stats answers s in one of three ways: grouped by fields of fixed values only, with FILTERed
// aggregates in one statement (fixedStats); else by reading the rows and counting them in Go
// when there are at most tallyRows of them (tallyStats); else, having read tallyRows + 1 rows,
// with a second statement, GROUP BY and percentile_disc (groupedStats). The three give the same
// answer, to the last bit.
func (b *Backend) Stats(ctx context.Context, s storage.StatsQuery) (storage.StatsResult, error) {
	if combos, ok := fixedCombinations(s); ok {
		return b.fixedStats(ctx, s, combos)
	}
	res, ok, err := b.tallyStats(ctx, s, b.tallyRows)
	if err != nil || ok {
		return res, err
	}
	return b.groupedStats(ctx, s)
}

// tallyRows bounds the rows tallyStats reads: it holds 16 bytes a row of a finished or crashed
// job until the answer (3.2 MB, up to twice that while its slices grow). Counting in Go takes
// half the time of PostgreSQL's GROUP BY with percentile_disc, which sorts the rows by group,
// then each group by each duration (a week of jobs by task and state: 39 against 83 ms,
// docs/performance.md). A question over more rows (whole history) is answered in SQL, so that
// serve never holds all its durations, and pays for the rows read first (5–10% of its time over
// a million jobs).
const tallyRows = 200_000

// tallySQL is the statement of tallyStats: Grouped's rows with each job's state and times (Go
// measures the durations: date_part in SQL doubled the time PostgreSQL takes to read a week of
// jobs from the index), at most limit + 1 of them.
func tallySQL(s storage.StatsQuery, limit int) (string, []any) {
	q := sqlbuild.New(dialect{})
	sql := sqlbuild.Grouped(q, s, "j.state", "j.created_at", "j.started_at", "j.finished_at")
	return sql + " LIMIT " + q.Arg(limit+1), q.Args
}

// tallyStats reads s's rows, a row per job and group combination, and counts them with
// storage.StatsTally, unless there are more than limit (ok false).
func (b *Backend) tallyStats(ctx context.Context, s storage.StatsQuery, limit int) (res storage.StatsResult, ok bool, err error) {
	sql, args := tallySQL(s, limit)
	rows, err := b.pool.Query(ctx, sql, analysis(args)...)
	if err != nil {
		return res, false, interpretError(err)
	}
	defer rows.Close()
	// pgtype's nullable types scan without the reflection and allocations of a pointer to
	// pointer, which cost half of the time of a week's question.
	tally := storage.NewStatsTally(s.GroupBy)
	scanned := make([]pgtype.Text, len(s.GroupBy))
	values := make([]*string, len(s.GroupBy))
	var bucket pgtype.Timestamp
	var started, finished pgtype.Timestamptz
	var created time.Time
	var state string
	var first bool
	dest := make([]any, 0, len(scanned)+6)
	for i := range scanned {
		dest = append(dest, &scanned[i])
	}
	if s.Bucket != storage.BucketNone {
		dest = append(dest, &bucket)
	}
	dest = append(dest, &first, &state, &created, &started, &finished)
	n := 0
	for rows.Next() {
		n++
		if n > limit {
			return res, false, nil // LIMIT limit + 1: nothing is left to read
		}
		if err := rows.Scan(dest...); err != nil {
			return res, false, interpretError(err)
		}
		for i, v := range scanned {
			values[i] = nil
			if v.Valid {
				values[i] = &scanned[i].String
			}
		}
		tally.Add(values, validTime(&bucket.Time, bucket.Valid), first, statemachine.State(state), created,
			validTime(&started.Time, started.Valid), validTime(&finished.Time, finished.Valid))
	}
	if err := rows.Err(); err != nil {
		return res, false, interpretError(err)
	}
	return tally.Result(), true, nil
}

// validTime is t when valid, else nil. (t points into a scanned value, so that a row
// allocates no time.)
func validTime(t *time.Time, valid bool) *time.Time {
	if !valid {
		return nil
	}
	return t
}

// groupedStats counts and summarises durations in SQL: the groups, and in each the jobs counted
// once (Grouped's first) whose sum is the total. percentile_disc gives the same discrete
// percentiles as storage.Percentile.
func (b *Backend) groupedStats(ctx context.Context, s storage.StatsQuery) (storage.StatsResult, error) {
	var res storage.StatsResult
	groups := sqlbuild.GroupColumns(s)
	sql, args := statsSQL(s)
	rows, err := b.pool.Query(ctx, sql, analysis(args)...)
	if err != nil {
		return res, interpretError(err)
	}
	defer rows.Close()
	for rows.Next() {
		groupVals := make([]*string, len(groups))
		var row storage.StatsRow
		var jobs int64
		var wait, run []float64
		var wmax, rmax *float64
		dest := make([]any, 0, len(groups)+6)
		for i := range groupVals {
			dest = append(dest, &groupVals[i])
		}
		dest = append(dest, &row.Count, &jobs, &wait, &wmax, &run, &rmax)
		if err := rows.Scan(dest...); err != nil {
			return res, interpretError(err)
		}
		if row.Count == 0 {
			continue // no group: count(*) over nothing
		}
		res.Total += jobs
		row.Group = map[storage.Field]*string{}
		for i, f := range s.GroupBy {
			row.Group[f] = groupVals[i]
		}
		if s.Bucket != storage.BucketNone {
			t, err := sqlbuild.ParseBucket(groupVals[len(groupVals)-1])
			if err != nil {
				return res, err
			}
			row.Bucket = t
		}
		row.QueueWait = durations(wait, wmax)
		row.RunTime = durations(run, rmax)
		res.Rows = append(res.Rows, row)
	}
	if err := rows.Err(); err != nil {
		return res, interpretError(err)
	}
	for i := range res.Rows {
		res.Rows[i].Share = float64(res.Rows[i].Count) / float64(res.Total)
	}
	storage.SortStatsRows(res.Rows, s.GroupBy)
	return res, nil
}

// analysis prefixes the arguments of a statistics query with pgx's QueryExecModeDescribeExec: an
// unnamed statement, planned for its arguments at every run. A statement pgx prepares once and
// caches may be planned generically after five runs (PostgreSQL's plan cache), for a time window
// of unknown size, when a day and a year of jobs want different plans. Statistics are few and
// costly, so one more round trip each costs nothing worth counting.
func analysis(args []any) []any {
	return append([]any{pgx.QueryExecModeDescribeExec}, args...)
}

// statsSQL aggregates the grouped rows: counts, the jobs among them, and percentile_disc of
// queue wait and run time over finished and crashed jobs (one sort for both percentiles of a
// duration).
func statsSQL(s storage.StatsQuery) (string, []any) {
	q := sqlbuild.New(dialect{})
	inner := sqlbuild.Grouped(q, s, waitColumn, runColumn)
	groups := sqlbuild.GroupColumns(s)
	groupList := ""
	if len(groups) > 0 {
		groupList = strings.Join(sqlbuild.SelectGroupColumns(dialect{}, s), ", ") + ", "
	}
	sql := `SELECT ` + groupList + `count(*), count(*) FILTER (WHERE first),
		percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY wait), max(wait),
		percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY run), max(run)
		FROM (` + inner + `) t`
	if len(groups) > 0 {
		sql += ` GROUP BY ` + strings.Join(groups, ", ")
	}
	return sql, q.Args
}

// The durations of a finished or crashed job, in seconds, as columns of Grouped; NULL for a job
// in any other state. date_part gives float8 directly: EXTRACT gives numeric, whose conversion
// to float8 (through text) cost a third of a stats query reading its jobs from an index
// (docs/performance.md). For an interval from subtracting timestamps it is the microseconds
// within the day / 10^6 + the days × 86,400, in float8 (storage.Seconds, with which Go measures them, does the same).
var (
	terminal   = "j.state IN ('" + strings.Join(sqlbuild.Terminal, "', '") + "')"
	waitColumn = "CASE WHEN " + terminal + " THEN date_part('epoch', j.started_at - j.created_at) END AS wait"
	runColumn  = "CASE WHEN " + terminal + " THEN date_part('epoch', j.finished_at - j.started_at) END AS run"
)

// durations is p50 and p90 (percentiles, from percentile_disc) and max, or nil when the group
// had no duration.
func durations(percentiles []float64, max *float64) *storage.Durations {
	if len(percentiles) != 2 || max == nil {
		return nil
	}
	return &storage.Durations{P50: percentiles[0], P90: percentiles[1], Max: *max}
}

// Explain returns PostgreSQL's plan, with run-time statistics, for the search and the stats
// queries the backend would run: what docs/performance.md shows and what an operator checks
// when a query is slow.
func (b *Backend) Explain(ctx context.Context, f storage.Filter, s *storage.StatsQuery) (string, error) {
	var statements []statement
	if s == nil {
		sql, args := sqlbuild.Search(dialect{}, jobWithKeyValues, f, storage.Page{Limit: storage.DefaultLimit})
		statements = []statement{{sql, args}}
	} else {
		statements = b.statsStatements(*s)
	}
	var plans []string
	for i, st := range statements {
		rows, err := b.pool.Query(ctx, `EXPLAIN (ANALYZE, COSTS OFF, BUFFERS OFF) `+st.sql, st.args...)
		if err != nil {
			return "", interpretError(err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return "", interpretError(err)
		}
		if i > 0 {
			plans = append(plans, fmt.Sprintf("-- over more than %d rows, then:", b.tallyRows))
		}
		plans = append(plans, lines...)
	}
	return strings.Join(plans, "\n"), nil
}
