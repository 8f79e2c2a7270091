package sqlite

import (
	"context"
	"database/sql"
	"fmt"
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

// Stats reads one row per job and group combination and counts them in Go (storage.StatsTally):
// SQLite has no percentile function, and storage.Percentile computes PostgreSQL's
// percentile_disc.
func (b *Backend) Stats(ctx context.Context, s storage.StatsQuery) (storage.StatsResult, error) {
	q := sqlbuild.New(dialect{})
	query := sqlbuild.Grouped(q, s, "j.state", "j.created_at", "j.started_at", "j.finished_at")
	tally := storage.NewStatsTally(s.GroupBy)
	err := b.readTx(ctx, func(tx *sql.Tx) error {
		rows, err := tx.QueryContext(ctx, query, q.Args...)
		if err != nil {
			return err
		}
		defer rows.Close()
		ngroups := len(s.GroupBy)
		scanned := make([]sql.NullString, len(sqlbuild.GroupColumns(s)))
		values := make([]*string, ngroups)
		buckets := map[string]*time.Time{} // a bucket's text parsed once
		var state, created string
		var started, finished sql.NullString
		var first bool
		dest := make([]any, 0, len(scanned)+5)
		for i := range scanned {
			dest = append(dest, &scanned[i])
		}
		dest = append(dest, &first, &state, &created, &started, &finished)
		for rows.Next() {
			if err := rows.Scan(dest...); err != nil {
				return err
			}
			for i := range values {
				values[i] = nil
				if scanned[i].Valid {
					values[i] = &scanned[i].String
				}
			}
			var bucket *time.Time
			if s.Bucket != storage.BucketNone {
				text := scanned[ngroups].String
				if bucket = buckets[text]; bucket == nil {
					if bucket, err = sqlbuild.ParseBucket(&text); err != nil {
						return err
					}
					buckets[text] = bucket
				}
			}
			createdAt, err := parseTime(created)
			if err != nil {
				return err
			}
			startedAt, err := parseNullTime(started)
			if err != nil {
				return err
			}
			finishedAt, err := parseNullTime(finished)
			if err != nil {
				return err
			}
			tally.Add(values, bucket, first, statemachine.State(state), createdAt, startedAt, finishedAt)
		}
		return rows.Err()
	})
	if err != nil {
		return storage.StatsResult{}, fmt.Errorf("stats: %w", interpretError(err))
	}
	return tally.Result(), nil
}
