package storage

import (
	"cmp"
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// Searcher finds jobs and computes statistics over them. Implementations build parameterised
// queries only: nothing from a filter is spliced into SQL.
type Searcher interface {
	// Search returns up to page.Limit jobs matching f, newest first (created_at, then uuid,
	// descending), after page.After; next is the cursor of the following page or nil.
	Search(ctx context.Context, f Filter, page Page) (jobs []statemachine.Job, next *Cursor, err error)
	// Stats counts the jobs matching q.Filter, grouped and bucketed as q says.
	Stats(ctx context.Context, q StatsQuery) (StatsResult, error)
}

// Field is a job field that can be filtered and grouped on.
type Field string

// The plain filter fields (CONTRACT section 6). Key-value fields are "kv.<key>" and
// "data.<key>".
const (
	FieldState    Field = "state"
	FieldTaskName Field = "taskname"
	FieldItem     Field = "item"
	FieldItemType Field = "item_type"
	FieldArch     Field = "arch"
	FieldNotify   Field = "notify"
	FieldCause    Field = "cause"
	FieldFatal    Field = "fatal"
)

// PlainFields lists the fields that are columns of a job.
var PlainFields = []Field{FieldState, FieldTaskName, FieldItem, FieldItemType, FieldArch, FieldNotify, FieldCause, FieldFatal}

// Prefixes of key-value fields.
const (
	KVPrefix   = "kv."
	DataPrefix = "data."
)

// Match is one field's condition: any of Values (comma means OR), or with Like, any of the
// patterns where * matches any run of characters.
type Match struct {
	Values []string
	Like   bool
}

// Condition is one field and its match.
type Condition struct {
	Field Field // a plain field, "kv.<key>" or "data.<key>"
	Match Match
}

// Filter selects jobs. Conditions are ANDed; values within one are ORed. Since and Until bound
// created_at (Since inclusive, Until exclusive).
type Filter struct {
	Conditions []Condition
	Since      *time.Time
	Until      *time.Time
}

// Key returns the key of a key-value field and its table prefix ("kv." or "data."), or ok false
// for a plain field.
func (f Field) Key() (prefix, key string, ok bool) {
	for _, p := range []string{KVPrefix, DataPrefix} {
		if k, found := strings.CutPrefix(string(f), p); found {
			return p, k, true
		}
	}
	return "", "", false
}

// Cursor is a position in the newest-first order of jobs.
type Cursor struct {
	CreatedAt time.Time
	UUID      uuid.UUID
}

// String encodes the cursor as an opaque URL-safe token.
func (c Cursor) String() string {
	raw := strconv.FormatInt(c.CreatedAt.UnixMicro(), 10) + ":" + c.UUID.String()
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ParseCursor decodes a token made by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return Cursor{}, fmt.Errorf("not a cursor")
	}
	micros, id, ok := strings.Cut(string(raw), ":")
	us, err1 := strconv.ParseInt(micros, 10, 64)
	u, err2 := uuid.Parse(id)
	if !ok || err1 != nil || err2 != nil {
		return Cursor{}, fmt.Errorf("not a cursor")
	}
	return Cursor{CreatedAt: time.UnixMicro(us).UTC(), UUID: u}, nil
}

// Page bounds a search.
type Page struct {
	Limit int     // 1…MaxLimit
	After *Cursor // nil: from the newest
}

// Search limits.
const (
	DefaultLimit = 20
	MaxLimit     = 1000
)

// Bucket is a time bucket of stats.
type Bucket string

// The buckets stats can split by (on created_at, in UTC; weeks start on Monday).
const (
	BucketNone Bucket = ""
	BucketHour Bucket = "hour"
	BucketDay  Bucket = "day"
	BucketWeek Bucket = "week"
)

// StatsQuery asks for counts and durations of the jobs matching Filter, one row per combination
// of GroupBy values (and bucket).
type StatsQuery struct {
	Filter  Filter
	GroupBy []Field
	Bucket  Bucket
}

// Durations summarises durations in seconds.
type Durations struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	Max float64 `json:"max"`
}

// StatsRow is one group of a stats answer.
type StatsRow struct {
	// Group maps each group_by field to its value; nil (JSON null) where a job lacks it, e.g.
	// kv.reason of a job without that keyval.
	Group map[Field]*string `json:"group"`
	// Bucket is the start of the time bucket, when bucketing.
	Bucket *time.Time `json:"bucket,omitempty"`
	Count  int64      `json:"count"`
	// Share is Count over the number of jobs the filter matched.
	Share float64 `json:"share"`
	// QueueWait is started_at − created_at and RunTime finished_at − started_at, over the
	// group's finished and crashed jobs that have both times; nil when none has.
	QueueWait *Durations `json:"queue_wait"`
	RunTime   *Durations `json:"run_time"`
}

// StatsResult is a stats answer: Rows ordered by count (descending), then group values.
type StatsResult struct {
	Total int64      `json:"total"`
	Rows  []StatsRow `json:"data"`
}

// SortStatsRows puts rows in the order StatsResult promises.
func SortStatsRows(rows []StatsRow, groupBy []Field) {
	sortGroupRows(rows, groupBy, func(r *StatsRow) groupRowKey {
		return groupRowKey{count: r.Count, group: r.Group, bucket: r.Bucket}
	})
}

// Percentile is the discrete percentile of sorted values, as PostgreSQL's percentile_disc: the
// first value whose position reaches fraction p of the count.
func Percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[percentileIndex(len(sorted), p)]
}

// percentileIndex is where Percentile of n sorted values finds fraction p.
func percentileIndex(n int, p float64) int {
	return max(int(math.Ceil(p*float64(n)))-1, 0)
}

// SortRetryStatsRows puts rows in the order RetryStatsResult promises.
func SortRetryStatsRows(rows []RetryStatsRow, groupBy []Field) {
	sortGroupRows(rows, groupBy, func(r *RetryStatsRow) groupRowKey {
		return groupRowKey{count: r.Rescheduled, group: r.Group, bucket: r.Bucket}
	})
}

// groupRowKey is what a row of a grouped answer (StatsRow, RetryStatsRow) is ordered by.
type groupRowKey struct {
	count  int64
	group  map[Field]*string
	bucket *time.Time
}

// sortGroupRows orders the rows of a grouped answer, for SortStatsRows and
// SortRetryStatsRows: by count, largest first, then by each group_by value in turn (a
// missing value last), then by bucket. Rows alike in all of that keep their order.
func sortGroupRows[R any](rows []R, groupBy []Field, key func(*R) groupRowKey) {
	slices.SortStableFunc(rows, func(x, y R) int {
		a, b := key(&x), key(&y)
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		for _, f := range groupBy {
			av, bv := a.group[f], b.group[f]
			switch {
			case av == nil && bv == nil:
				continue
			case av == nil:
				return 1
			case bv == nil:
				return -1
			case *av != *bv:
				return strings.Compare(*av, *bv)
			}
		}
		if a.bucket != nil && b.bucket != nil {
			return a.bucket.Compare(*b.bucket)
		}
		return 0
	})
}
