package postgres_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	apiquery "github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/postgres"
	"github.com/jackc/pgx/v5"
)

// TestStatsReadOnlyIndexes: the statistics of a time window read jobs and crash key-values from
// their indexes alone (migration 0009), so that a month of crashes does not fetch thousands of
// table pages. A column added to a stats query but not to those indexes turns an
// "Index Only Scan" of the plan into an "Index Scan" and fails this test.
func TestStatsReadOnlyIndexes(t *testing.T) {
	ctx := context.Background()
	b := openTemp(t)
	// 2,000 jobs an hour apart, a tenth of them crashed at minion creation, vacuumed so that the
	// visibility map lets the planner read indexes alone. The windows asked below hold a small
	// part of them, as a month holds of a year: on a few rows all in the window, reading a whole
	// other index in group order costs the planner as little, and it may choose that instead.
	if _, err := b.Pool().Exec(ctx, `
		INSERT INTO jobs (uuid, state, taskname, item, item_type, arch, request_id, created_at, started_at,
			finished_at, updated_at, state_entered_at, crash_notify, crash_cause, crash_fatal)
		SELECT gen_random_uuid(), CASE WHEN c THEN 'CRASHED' ELSE 'FINISHED' END, 'task' || i % 7, 'pkg-' || i,
			'koji_build', 'x86_64', 'r' || i, now() - i * interval '1 hour', now() - i * interval '1 hour',
			now(), now(), now(), CASE WHEN c THEN 'taskotron' END, CASE WHEN c THEN 'minion' END,
			CASE WHEN c THEN false END
		FROM generate_series(1, 2000) i, LATERAL (SELECT i % 10 = 0 AS c) crashed`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pool().Exec(ctx, `
		INSERT INTO crash_keyvals (job_uuid, key, position, value)
		SELECT uuid, k, 0, v FROM jobs, (VALUES ('step', 'MINION_CREATION'), ('reason', 'TIMED_OUT')) kv(k, v)
		WHERE state = 'CRASHED'`); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Pool().Exec(ctx, `VACUUM ANALYZE jobs, crash_keyvals`); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	for _, tc := range []struct{ filter, groupBy, bucket string }{
		{"state=CRASHED&cause=minion&kv.step=MINION_CREATION&since=30d", "kv.reason", ""},
		{"since=7d", "taskname,state", ""},
		{"state=CRASHED&since=30d", "cause", "day"},
		{"since=1d", "notify,cause,fatal", ""},
	} {
		t.Run(tc.filter+" by "+tc.groupBy, func(t *testing.T) {
			params, err := url.ParseQuery(tc.filter)
			if err != nil {
				t.Fatal(err)
			}
			f, err := apiquery.ParseFilter(params, now)
			if err != nil {
				t.Fatal(err)
			}
			s := storage.StatsQuery{Filter: f, Bucket: storage.Bucket(tc.bucket)}
			for _, name := range strings.Split(tc.groupBy, ",") {
				field, err := apiquery.ParseField(name)
				if err != nil {
					t.Fatal(err)
				}
				s.GroupBy = append(s.GroupBy, field)
			}
			sqls, args := b.StatsSQL(s)
			for i, sql := range sqls {
				plan := explain(t, b, sql, args[i])
				for _, line := range strings.Split(plan, "\n") {
					if strings.Contains(line, "Scan") && !strings.Contains(line, "Index Only Scan") {
						t.Errorf("a scan that reads the table:\n%s\nin the plan of\n%s\n%s", line, sql, plan)
					}
				}
			}
		})
	}
}

// explain is the plan PostgreSQL would choose for sql on a large table: sequential and bitmap
// scans, cheapest on a few rows, are off.
func explain(t *testing.T, b *postgres.Backend, sql string, args []any) string {
	t.Helper()
	var lines []string
	err := pgx.BeginFunc(context.Background(), b.Pool(), func(tx pgx.Tx) error {
		ctx := context.Background()
		if _, err := tx.Exec(ctx, `SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, "EXPLAIN "+sql, args...)
		if err != nil {
			return err
		}
		lines, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}
