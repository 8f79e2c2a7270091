// Package sqlbuild builds the search and stats queries both SQL backends run. Every value from
// a filter becomes a bound parameter; only identifiers and SQL chosen here go into the text.
package sqlbuild

import (
	"fmt"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
)

// Dialect is what differs between the SQL backends.
type Dialect interface {
	// Placeholder is the text of the n-th (1-based) parameter.
	Placeholder(n int) string
	// Arg converts a Go value (time.Time, uuid.UUID, bool, string) to what the driver binds.
	Arg(v any) any
	// Like is a case-sensitive wildcard match of expr against a pattern parameter.
	Like(expr, param string) string
	// Pattern turns a pattern whose only wildcard is * into what Like expects.
	Pattern(s string) string
	// Bucket is an expression whose value is the start of b's bucket of the time column col in
	// UTC, of any type that groups; BucketText turns it into RFC 3339 text
	// ("2026-11-02T00:00:00Z"). Rows are grouped by Bucket and each group's bucket formatted
	// once, not every row's.
	Bucket(col string, b storage.Bucket) string
	BucketText(bucket string) string
}

// Query accumulates the parameters of one statement.
type Query struct {
	d    Dialect
	Args []any
}

// New starts a statement in dialect d.
func New(d Dialect) *Query { return &Query{d: d} }

// Arg binds v and returns its placeholder.
func (q *Query) Arg(v any) string {
	q.Args = append(q.Args, q.d.Arg(v))
	return q.d.Placeholder(len(q.Args))
}

func (q *Query) list(values []string) string {
	ps := make([]string, len(values))
	for i, v := range values {
		ps[i] = q.Arg(v)
	}
	return strings.Join(ps, ", ")
}

// column maps a plain field to its column of jobs (aliased j).
var column = map[storage.Field]string{
	storage.FieldState: "j.state", storage.FieldTaskName: "j.taskname", storage.FieldItem: "j.item",
	storage.FieldItemType: "j.item_type", storage.FieldArch: "j.arch", storage.FieldNotify: "j.crash_notify",
	storage.FieldCause: "j.crash_cause", storage.FieldFatal: "j.crash_fatal",
}

// table maps a key-value field prefix to its table.
var table = map[string]string{storage.KVPrefix: "crash_keyvals", storage.DataPrefix: "job_data"}

// Where is the WHERE clause (empty when f selects every job) over jobs aliased j.
func (q *Query) Where(f storage.Filter) string {
	var conds []string
	if f.Since != nil {
		conds = append(conds, "j.created_at >= "+q.Arg(*f.Since))
	}
	if f.Until != nil {
		conds = append(conds, "j.created_at < "+q.Arg(*f.Until))
	}
	for _, c := range f.Conditions {
		conds = append(conds, q.condition(c))
	}
	if len(conds) == 0 {
		return ""
	}
	return " WHERE " + strings.Join(conds, " AND ")
}

func (q *Query) condition(c storage.Condition) string {
	if prefix, key, ok := c.Field.Key(); ok {
		return fmt.Sprintf("EXISTS (SELECT 1 FROM %s k WHERE k.job_uuid = j.uuid AND k.key = %s AND %s)",
			table[prefix], q.Arg(key), q.match("k.value", c.Match))
	}
	if c.Field == storage.FieldFatal {
		var ors []string
		for _, v := range c.Match.Values {
			ors = append(ors, "j.crash_fatal = "+q.Arg(v == "true"))
		}
		return "(" + strings.Join(ors, " OR ") + ")"
	}
	return q.match(column[c.Field], c.Match)
}

func (q *Query) match(expr string, m storage.Match) string {
	if !m.Like {
		return expr + " IN (" + q.list(m.Values) + ")"
	}
	var ors []string
	for _, v := range m.Values {
		ors = append(ors, q.d.Like(expr, q.Arg(q.d.Pattern(v))))
	}
	return "(" + strings.Join(ors, " OR ") + ")"
}

// Search is the page query: the given job columns, newest first, one row more than the limit
// so the caller knows whether a next page exists.
func Search(d Dialect, columns string, f storage.Filter, page storage.Page) (string, []any) {
	q := New(d)
	where := q.Where(f)
	if page.After != nil {
		cond := "(j.created_at, j.uuid) < (" + q.Arg(page.After.CreatedAt) + ", " + q.Arg(page.After.UUID) + ")"
		if where == "" {
			where = " WHERE " + cond
		} else {
			where += " AND " + cond
		}
	}
	sql := "SELECT " + columns + " FROM jobs j" + where +
		" ORDER BY j.created_at DESC, j.uuid DESC LIMIT " + q.Arg(page.Limit+1)
	return sql, q.Args
}

// Grouped is the inner query of stats: one row per job and combination of its group values,
// with columns g0…gN-1 (text or NULL), b (bucket text, when bucketing), first, then the extra
// columns the caller names (over jobs aliased j). Key-value groups join their table, so a job
// with two values of a key counts once in each value's group; first is true on exactly one of
// a job's rows (the one with the first value of every key-value group, or none), so that
// counting the rows where it holds counts the jobs: the total of a stats answer comes from the
// same statement as its groups.
func Grouped(q *Query, s storage.StatsQuery, extra ...string) string {
	var firsts []string
	for i, f := range s.GroupBy {
		if _, _, ok := f.Key(); ok {
			t := fmt.Sprintf("g%dt", i)
			firsts = append(firsts, fmt.Sprintf("(%s.position IS NULL OR %s.position = 0)", t, t))
		}
	}
	first := "(1 = 1)"
	if len(firsts) > 0 {
		first = "(" + strings.Join(firsts, " AND ") + ")"
	}
	cols := append([]string{first + " AS first"}, extra...)
	return selectGroups(q, s, "jobs j", cols...) + q.Where(s.Filter)
}

// selectGroups is SELECT g0…gN-1[, b], extra… FROM from, with the joins the key-value groups
// need. Parameters are bound in the order they appear in the text: the select list, then the
// joins (SQLite's ? placeholders are positional); the caller's WHERE clause comes last.
func selectGroups(q *Query, s storage.StatsQuery, from string, extra ...string) string {
	var cols, joins []string
	for i, f := range s.GroupBy {
		alias := fmt.Sprintf("g%d", i)
		switch _, _, isKV := f.Key(); {
		case isKV:
			cols = append(cols, alias+"t.value AS "+alias)
		case f == storage.FieldFatal:
			cols = append(cols, "CASE WHEN j.crash_fatal = "+q.Arg(true)+" THEN 'true' WHEN j.crash_fatal = "+q.Arg(false)+" THEN 'false' END AS "+alias)
		default:
			cols = append(cols, column[f]+" AS "+alias)
		}
	}
	if s.Bucket != storage.BucketNone {
		cols = append(cols, q.d.Bucket("j.created_at", s.Bucket)+" AS b")
	}
	cols = append(cols, extra...)
	for i, f := range s.GroupBy {
		if prefix, key, ok := f.Key(); ok {
			t := fmt.Sprintf("g%dt", i)
			joins = append(joins, fmt.Sprintf(" LEFT JOIN %s %s ON %s.job_uuid = j.uuid AND %s.key = %s",
				table[prefix], t, t, t, q.Arg(key)))
		}
	}
	return "SELECT " + strings.Join(cols, ", ") + " FROM " + from + strings.Join(joins, "")
}

// RetryCount counts the rescheduled jobs f matches.
func RetryCount(d Dialect, f storage.Filter) (string, []any) {
	q := New(d)
	return "SELECT count(*) FROM jobs j" + andRescheduled(q.Where(f)), q.Args
}

func andRescheduled(where string) string {
	if where == "" {
		return " WHERE j.rescheduled_to IS NOT NULL"
	}
	return where + " AND j.rescheduled_to IS NOT NULL"
}

// Retry is the retry statistics query: the jobs f matches (j) that have a successor (s),
// grouped as Grouped groups /stats, with the columns of GroupColumns then the number of
// successors, and how many of them finished, crashed and are pending.
func Retry(d Dialect, s storage.StatsQuery) (string, []any) {
	q := New(d)
	// The join needs no IS NOT NULL, the planner does: without it, it plans a month of
	// crashes, most never rescheduled, as a hash join over every job (0.4 s on a million).
	inner := selectGroups(q, s, "jobs j JOIN jobs s ON s.uuid = j.rescheduled_to", "s.state AS successor_state") + andRescheduled(q.Where(s.Filter))
	groups := GroupColumns(s)
	groupList := ""
	if len(groups) > 0 {
		groupList = strings.Join(SelectGroupColumns(d, s), ", ") + ", "
	}
	sql := "SELECT " + groupList + `count(*),
		COALESCE(sum(CASE WHEN successor_state = 'FINISHED' THEN 1 ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN successor_state = 'CRASHED' THEN 1 ELSE 0 END), 0),
		COALESCE(sum(CASE WHEN successor_state IN ('SCHEDULED', 'RUNNING') THEN 1 ELSE 0 END), 0)
		FROM (` + inner + `) t`
	if len(groups) > 0 {
		sql += " GROUP BY " + strings.Join(groups, ", ")
	}
	return sql, q.Args
}

// GroupColumns names the group columns of Grouped, bucket included.
func GroupColumns(s storage.StatsQuery) []string {
	var names []string
	for i := range s.GroupBy {
		names = append(names, fmt.Sprintf("g%d", i))
	}
	if s.Bucket != storage.BucketNone {
		names = append(names, "b")
	}
	return names
}

// SelectGroupColumns is GroupColumns as an outer query selects them, the bucket as RFC 3339
// text. A GROUP BY of the same names groups by the inner columns (an input column wins over an
// output column of the same name, in PostgreSQL and SQLite alike).
func SelectGroupColumns(d Dialect, s storage.StatsQuery) []string {
	names := GroupColumns(s)
	if s.Bucket != storage.BucketNone {
		names[len(names)-1] = d.BucketText("b") + " AS b"
	}
	return names
}

// Terminal lists the states whose jobs have durations.
var Terminal = []string{string(statemachine.Finished), string(statemachine.Crashed)}

// ParseBucket reads a bucket start produced by Dialect.Bucket.
func ParseBucket(s *string) (*time.Time, error) {
	if s == nil {
		return nil, fmt.Errorf("stats bucket is NULL")
	}
	t, err := time.Parse(time.RFC3339, *s)
	if err != nil {
		return nil, fmt.Errorf("stats bucket %q: %w", *s, err)
	}
	t = t.UTC()
	return &t, nil
}
