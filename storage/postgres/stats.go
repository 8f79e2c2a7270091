package postgres

import (
	"context"
	"fmt"
	"regexp"
	"strings"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/internal/sqlbuild"
)

// Stats grouped by fields of fixed values (state, notify, cause, fatal) are asked as FILTERed
// aggregates over one pass of the jobs, one set of aggregates per combination of values, not as
// GROUP BY: the percentiles need their rows sorted by group, and GROUP BY would sort every job
// matched once more for that (three times slower over a million jobs; docs/performance.md).

// maxFixedCombinations bounds the combinations asked as FILTERed aggregates; more (e.g. state
// by cause by fatal) go to GROUP BY.
const maxFixedCombinations = 32

// fixedValues are the values a field of fixed values can take, nil for NULL (a job that never
// crashed has no notify, cause or fatal); ok false for any other field.
func fixedValues(f storage.Field) (values []*string, ok bool) {
	var vs []string
	nullable := true
	switch f {
	case storage.FieldState:
		vs, nullable = stringsOf(statemachine.States), false
	case storage.FieldNotify:
		vs = stringsOf(statemachine.Notifies)
	case storage.FieldCause:
		vs = stringsOf(statemachine.Causes)
	case storage.FieldFatal:
		vs = []string{"true", "false"}
	default:
		return nil, false
	}
	for _, v := range vs {
		values = append(values, &v)
	}
	if nullable {
		values = append(values, nil)
	}
	return values, true
}

func stringsOf[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// fixedCombinations lists every combination of values of s's group_by fields, when all of them
// are fields of fixed values, there is no bucket, and there are at most maxFixedCombinations.
func fixedCombinations(s storage.StatsQuery) ([][]*string, bool) {
	if len(s.GroupBy) == 0 || s.Bucket != storage.BucketNone {
		return nil, false
	}
	combos := [][]*string{nil}
	for _, f := range s.GroupBy {
		values, ok := fixedValues(f)
		if !ok || len(combos)*len(values) > maxFixedCombinations {
			return nil, false
		}
		var next [][]*string
		for _, c := range combos {
			for _, v := range values {
				next = append(next, append(append([]*string{}, c...), v))
			}
		}
		combos = next
	}
	return combos, true
}

// literal is a fixed value as SQL text. The values are ExecDB's own enums, never a client's.
var literal = regexp.MustCompile(`^[A-Za-z_]+$`)

// fixedStatsSQL is statsSQL for fixedCombinations: one row, five columns per combination (its
// count, and the percentiles and maximum of queue wait and of run time).
func fixedStatsSQL(s storage.StatsQuery, combos [][]*string) (string, []any) {
	q := sqlbuild.New(dialect{})
	inner := sqlbuild.Grouped(q, s, waitColumn, runColumn)
	var aggs []string
	for _, combo := range combos {
		var conds []string
		for i, v := range combo {
			switch {
			case v == nil:
				conds = append(conds, fmt.Sprintf("g%d IS NULL", i))
			case !literal.MatchString(*v):
				panic(fmt.Sprintf("stats: value %q of a fixed field", *v))
			default:
				conds = append(conds, fmt.Sprintf("g%d = '%s'", i, *v))
			}
		}
		filter := " FILTER (WHERE " + strings.Join(conds, " AND ") + ")"
		aggs = append(aggs, "count(*)"+filter,
			"percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY wait)"+filter, "max(wait)"+filter,
			"percentile_disc(ARRAY[0.5, 0.9]) WITHIN GROUP (ORDER BY run)"+filter, "max(run)"+filter)
	}
	return "SELECT " + strings.Join(aggs, ", ") + " FROM (" + inner + ") t", q.Args
}

// fixedStats runs fixedStatsSQL: a row per combination that has jobs.
func (b *Backend) fixedStats(ctx context.Context, s storage.StatsQuery, combos [][]*string) (storage.StatsResult, error) {
	var res storage.StatsResult
	sql, args := fixedStatsSQL(s, combos)
	counts := make([]int64, len(combos))
	waits, runs := make([][]float64, len(combos)), make([][]float64, len(combos))
	wmax, rmax := make([]*float64, len(combos)), make([]*float64, len(combos))
	dest := make([]any, 0, 5*len(combos))
	for i := range combos {
		dest = append(dest, &counts[i], &waits[i], &wmax[i], &runs[i], &rmax[i])
	}
	if err := b.pool.QueryRow(ctx, sql, analysis(args)...).Scan(dest...); err != nil {
		return res, interpretError(err)
	}
	for i, combo := range combos {
		if counts[i] == 0 {
			continue
		}
		row := storage.StatsRow{Group: map[storage.Field]*string{}, Count: counts[i],
			QueueWait: durations(waits[i], wmax[i]), RunTime: durations(runs[i], rmax[i])}
		for k, f := range s.GroupBy {
			row.Group[f] = combo[k]
		}
		res.Total += counts[i] // fields of fixed values: a job is in exactly one combination
		res.Rows = append(res.Rows, row)
	}
	for i := range res.Rows {
		res.Rows[i].Share = float64(res.Rows[i].Count) / float64(res.Total)
	}
	storage.SortStatsRows(res.Rows, s.GroupBy)
	return res, nil
}
