package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/internal/sqlbuild"
	"github.com/google/uuid"
)

// dialect is SQLite's side of the shared query builder.
type dialect struct{}

func (dialect) Placeholder(int) string { return "?" }

func (dialect) Arg(v any) any {
	switch v := v.(type) {
	case time.Time:
		return formatTime(v)
	case uuid.UUID:
		return v.String()
	case bool:
		if v {
			return 1
		}
		return 0
	}
	return v
}

// Like uses GLOB: case-sensitive like PostgreSQL's LIKE, with * as its own wildcard.
func (dialect) Like(expr, param string) string { return expr + " GLOB " + param }

// Pattern escapes GLOB's other special characters, ? and [, keeping *.
func (dialect) Pattern(s string) string {
	return strings.NewReplacer("[", "[[]", "?", "[?]").Replace(s)
}

func (dialect) BucketText(bucket string) string { return bucket }

func (dialect) Bucket(col string, b storage.Bucket) string {
	switch b {
	case storage.BucketHour:
		return "strftime('%Y-%m-%dT%H:00:00Z', " + col + ")"
	case storage.BucketWeek: // Monday of the week: forward to Sunday, back six days
		return "strftime('%Y-%m-%dT00:00:00Z', " + col + ", 'weekday 0', '-6 days')"
	default:
		return "strftime('%Y-%m-%dT00:00:00Z', " + col + ")"
	}
}

// Search returns a page of jobs matching f, newest first.
func (b *Backend) Search(ctx context.Context, f storage.Filter, page storage.Page) ([]statemachine.Job, *storage.Cursor, error) {
	query, args := sqlbuild.Search(dialect{}, "j."+strings.Join(strings.Fields(strings.ReplaceAll(jobColumns, ",", " ")), ", j."), f, page)
	var jobs []statemachine.Job
	var next *storage.Cursor
	err := b.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return err
		}
		for rows.Next() {
			job, err := scanJob(rows)
			if err != nil {
				rows.Close()
				return err
			}
			jobs = append(jobs, job)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		if len(jobs) > page.Limit { // the query reads one job more than the page holds
			jobs = jobs[:page.Limit]
			last := jobs[len(jobs)-1]
			next = &storage.Cursor{CreatedAt: last.CreatedAt, UUID: last.UUID}
		}
		for i := range jobs {
			if jobs[i].Data, err = readKeyVals(ctx, tx, "job_data", jobs[i].UUID); err != nil {
				return err
			}
			if jobs[i].Crash != nil {
				kv, err := readKeyVals(ctx, tx, "crash_keyvals", jobs[i].UUID)
				if err != nil {
					return err
				}
				if kv != nil {
					jobs[i].Crash.KeyVals = kv
				}
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("search jobs: %w", interpretError(err))
	}
	return jobs, next, nil
}

// Stats reads one row per job and group combination and aggregates in Go: SQLite has no
// percentile function, and storage.Percentile computes PostgreSQL's percentile_disc.
func (b *Backend) Stats(ctx context.Context, s storage.StatsQuery) (storage.StatsResult, error) {
	var res storage.StatsResult
	q := sqlbuild.New(dialect{})
	query := sqlbuild.Grouped(q, s, "j.state", "j.created_at", "j.started_at", "j.finished_at")
	type group struct {
		row        storage.StatsRow
		wait, runs []float64
	}
	groups := map[string]*group{}
	err := b.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, q.Args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		ncols := len(sqlbuild.GroupColumns(s))
		for rows.Next() {
			vals := make([]sql.NullString, ncols)
			var state, created string
			var started, finished sql.NullString
			var first bool
			dest := make([]any, 0, ncols+5)
			for i := range vals {
				dest = append(dest, &vals[i])
			}
			dest = append(dest, &first, &state, &created, &started, &finished)
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			var key strings.Builder
			for _, v := range vals {
				fmt.Fprintf(&key, "%t:%q|", v.Valid, v.String)
			}
			g := groups[key.String()]
			if g == nil {
				g = &group{row: storage.StatsRow{Group: map[storage.Field]*string{}}}
				for i, f := range s.GroupBy {
					if vals[i].Valid {
						v := vals[i].String
						g.row.Group[f] = &v
					} else {
						g.row.Group[f] = nil
					}
				}
				if s.Bucket != storage.BucketNone {
					last := vals[ncols-1]
					t, err := sqlbuild.ParseBucket(&last.String)
					if err != nil {
						return err
					}
					g.row.Bucket = t
				}
				groups[key.String()] = g
			}
			g.row.Count++
			if first {
				res.Total++ // a job's first row: the total counts jobs, not rows
			}
			if st := statemachine.State(state); !st.Terminal() || !started.Valid {
				continue
			}
			c, err1 := parseTime(created)
			st, err2 := parseTime(started.String)
			if err := firstError(err1, err2); err != nil {
				return err
			}
			g.wait = append(g.wait, seconds(st.Sub(c)))
			if finished.Valid {
				fin, err := parseTime(finished.String)
				if err != nil {
					return err
				}
				g.runs = append(g.runs, seconds(fin.Sub(st)))
			}
		}
		return rows.Err()
	})
	if err != nil {
		return res, fmt.Errorf("stats: %w", interpretError(err))
	}
	for _, g := range groups {
		g.row.QueueWait = summarise(g.wait)
		g.row.RunTime = summarise(g.runs)
		if res.Total > 0 {
			g.row.Share = float64(g.row.Count) / float64(res.Total)
		}
		res.Rows = append(res.Rows, g.row)
	}
	storage.SortStatsRows(res.Rows, s.GroupBy)
	return res, nil
}

// seconds converts d to seconds exactly as PostgreSQL's date_part('epoch', …) does for the
// interval between two timestamps (days, and microseconds within the day, of the same sign):
// the microseconds / 10^6 + the days × 86,400, in float64.
func seconds(d time.Duration) float64 {
	const microsPerDay = 86_400_000_000
	us := d.Microseconds()
	return float64(us%microsPerDay)/1e6 + float64(us/microsPerDay)*86_400
}

func summarise(xs []float64) *storage.Durations {
	if len(xs) == 0 {
		return nil
	}
	sort.Float64s(xs)
	return &storage.Durations{P50: storage.Percentile(xs, 0.5), P90: storage.Percentile(xs, 0.9), Max: xs[len(xs)-1]}
}

func firstError(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
