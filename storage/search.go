package storage

import (
	"context"
	"encoding/base64"
	"fmt"
	"math"
	"regexp"
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
	i := int(math.Ceil(p*float64(len(sorted)))) - 1
	if i < 0 {
		i = 0
	}
	return sorted[i]
}

// maxRelative is how far back a relative time may reach: about a hundred years, well inside
// time.Duration's range.
const maxRelative = int64(100 * 366 * 24 * time.Hour)

var relativeTime = regexp.MustCompile(`^(\d+)([smhdw])$`)

// ParseTime reads a since/until value: RFC 3339, or a duration back from now such as 30d, 12h,
// 90m, 2w.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if m := relativeTime.FindStringSubmatch(s); m != nil {
		unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || n > maxRelative/int64(unit) {
			return time.Time{}, fmt.Errorf("relative time too far back: at most %d days", maxRelative/int64(24*time.Hour))
		}
		return now.Add(-time.Duration(n) * unit).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 (2026-11-01T00:00:00Z) or a relative time like 30d, 12h")
	}
	return t.UTC(), nil
}

// Now is the store's clock, for relative times in filters.
func (s *Store) Now() time.Time { return s.now() }

// Rejected lists rejected bus messages, newest first.
func (s *Store) Rejected(ctx context.Context, q RejectedQuery) ([]RejectedMessage, error) {
	return s.backend.Rejected(ctx, q)
}

// TopicPrefix is the prefix of every topic the store's messages go out under, and the bus
// messages it is given come in under.
func (s *Store) TopicPrefix() string { return s.prefix }

// Search returns a page of jobs matching f, newest first. A limit of 0 means DefaultLimit; one
// outside 1…MaxLimit is an error.
func (s *Store) Search(ctx context.Context, f Filter, page Page) ([]statemachine.Job, *Cursor, error) {
	if page.Limit == 0 {
		page.Limit = DefaultLimit
	}
	if page.Limit < 1 || page.Limit > MaxLimit {
		return nil, nil, fmt.Errorf("limit %d outside 1…%d", page.Limit, MaxLimit)
	}
	jobs, next, err := s.backend.Search(ctx, f, page)
	if err != nil {
		return nil, nil, fmt.Errorf("search: %w", err)
	}
	return jobs, next, nil
}

// Stats counts the jobs matching q.Filter, grouped and bucketed as q says.
func (s *Store) Stats(ctx context.Context, q StatsQuery) (StatsResult, error) {
	res, err := s.backend.Stats(ctx, q)
	if err != nil {
		return res, fmt.Errorf("stats: %w", err)
	}
	if res.Rows == nil {
		res.Rows = []StatsRow{}
	}
	return res, nil
}
