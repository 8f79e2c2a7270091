package storage

import (
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
)

// StatsTally builds a stats answer in memory from the rows of a stats question: a row per job
// and combination of its group values, as storage/internal/sqlbuild.Grouped selects them.
// SQLite answers every question this way; PostgreSQL the ones with few enough rows, where
// selecting each group's percentiles in Go costs less than percentile_disc's sorts
// (docs/performance.md). A tally holds every duration it was given until Result: 16 bytes a
// row of a finished or crashed job.
type StatsTally struct {
	groupBy []Field
	groups  map[string]*tallyGroup
	order   []*tallyGroup // in order of first sight
	total   int64
	key     []byte // Add's scratch
}

type tallyGroup struct {
	row        StatsRow
	waits, run []float64
}

// NewStatsTally returns an empty tally for a question grouped by groupBy.
func NewStatsTally(groupBy []Field) *StatsTally {
	return &StatsTally{groupBy: groupBy, groups: map[string]*tallyGroup{}}
}

// Add counts one row: values are its group values in the order of groupBy (nil where the job
// has none), bucket the start of its time bucket (nil when not bucketing), first whether it is
// the job's first row (a job with two values of a grouped key has two rows and counts once in
// the total), then the job's state and times, of which a finished or crashed job's queue wait
// (started − created) and run time (finished − started) are measured, in Seconds.
func (t *StatsTally) Add(values []*string, bucket *time.Time, first bool, state statemachine.State, created time.Time, started, finished *time.Time) {
	t.key = t.key[:0]
	for _, v := range values {
		if v == nil {
			t.key = append(t.key, 0)
			continue
		}
		t.key = append(t.key, 1)
		t.key = binary.AppendUvarint(t.key, uint64(len(*v)))
		t.key = append(t.key, *v...)
	}
	if bucket != nil {
		t.key = binary.AppendVarint(t.key, bucket.UnixNano())
	}
	g := t.groups[string(t.key)]
	if g == nil {
		g = &tallyGroup{row: StatsRow{Group: make(map[Field]*string, len(t.groupBy))}}
		for i, f := range t.groupBy {
			if values[i] == nil {
				g.row.Group[f] = nil
			} else {
				v := *values[i]
				g.row.Group[f] = &v
			}
		}
		if bucket != nil {
			b := bucket.UTC()
			g.row.Bucket = &b
		}
		t.groups[string(t.key)] = g
		t.order = append(t.order, g)
	}
	g.row.Count++
	if first {
		t.total++
	}
	if !state.Terminal() || started == nil {
		return
	}
	g.waits = append(g.waits, Seconds(started.Sub(created)))
	if finished != nil {
		g.run = append(g.run, Seconds(finished.Sub(*started)))
	}
}

// Seconds is d in seconds exactly as PostgreSQL's date_part('epoch', …) gives it for the
// interval between two timestamps (days, and microseconds within the day, of the same sign):
// the microseconds within the day / 10^6 + the days × 86,400, in float64. It differs from
// d.Seconds() in the last bit for some durations over a day (3–14% of them, sampled).
func Seconds(d time.Duration) float64 {
	const microsPerDay = 86_400_000_000
	us := d.Microseconds()
	return float64(us%microsPerDay)/1e6 + float64(us/microsPerDay)*86_400
}

// Result is the answer: each group with its count, share of the total and the percentiles of
// its durations, in the order StatsResult promises.
func (t *StatsTally) Result() StatsResult {
	res := StatsResult{Total: t.total, Rows: make([]StatsRow, 0, len(t.order))}
	for _, g := range t.order {
		g.row.QueueWait = summarise(g.waits)
		g.row.RunTime = summarise(g.run)
		if t.total > 0 {
			g.row.Share = float64(g.row.Count) / float64(t.total)
		}
		res.Rows = append(res.Rows, g.row)
	}
	SortStatsRows(res.Rows, t.groupBy)
	return res
}

// summarise is the p50, p90 (as Percentile) and maximum of xs, which it reorders; nil when xs
// is empty. It selects, in linear time, instead of sorting: a tenth of a week's question.
func summarise(xs []float64) *Durations {
	if len(xs) == 0 {
		return nil
	}
	i50, i90 := percentileIndex(len(xs), 0.5), percentileIndex(len(xs), 0.9)
	selectNth(xs, i50)
	selectNth(xs[i50:], i90-i50) // xs[i50:] holds what sorts at or after i50
	return &Durations{P50: xs[i50], P90: xs[i90], Max: slices.Max(xs[i90:])}
}

// selectNth reorders xs so that xs[k] is the value sorting would put there, with none greater
// before it and none smaller after it (quickselect, Hoare's FIND). Pivots are random, so that no
// order of durations takes quadratic time, and the partition is three-way, so that many equal
// durations take linear time.
func selectNth(xs []float64, k int) {
	lo, hi := 0, len(xs) // xs[k] is among xs[lo:hi]
	for hi-lo > 1 {
		pivot := xs[lo+rand.IntN(hi-lo)]
		// xs[lo:lt] < pivot, xs[lt:i] == pivot, xs[gt:hi] > pivot; xs[i:gt] to look at.
		lt, i, gt := lo, lo, hi
		for i < gt {
			switch {
			case xs[i] < pivot:
				xs[lt], xs[i] = xs[i], xs[lt]
				lt++
				i++
			case xs[i] > pivot:
				gt--
				xs[gt], xs[i] = xs[i], xs[gt]
			default:
				i++
			}
		}
		switch {
		case k < lt:
			hi = lt
		case k >= gt:
			lo = gt
		default:
			return // xs[lt:gt] are all the pivot
		}
	}
}
