package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// timeLayout is how times are stored: UTC, fixed width, microseconds. Such strings sort in time
// order and SQLite's date functions (strftime for bucketing) read them.
const timeLayout = "2006-01-02T15:04:05.000000Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("parse stored time %q: %w", s, err)
	}
	return t, nil
}

// nullTime is the column value of an optional time: NULL or its text.
func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return formatTime(*t)
}

func parseNullTime(s sql.NullString) (*time.Time, error) {
	if !s.Valid {
		return nil, nil
	}
	t, err := parseTime(s.String)
	if err != nil {
		return nil, err
	}
	return &t, nil
}

// nullString is the column value of a string whose empty value means unknown: NULL for "".
func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullUUID(id *uuid.UUID) any {
	if id == nil {
		return nil
	}
	return id.String()
}

func parseNullUUID(s sql.NullString) (*uuid.UUID, error) {
	if !s.Valid {
		return nil, nil
	}
	id, err := uuid.Parse(s.String)
	if err != nil {
		return nil, fmt.Errorf("parse stored uuid %q: %w", s.String, err)
	}
	return &id, nil
}

// queryer is what a *sql.Tx offers for reading; reads run inside a transaction so that a job
// and its key-values come from one snapshot.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// jobColumns are the columns scanJob reads, in its order.
const jobColumns = `uuid, state, taskname, item, item_type, arch, source_msg_id, source_topic,
	request_id, runner, artifacts_url, log_url, crash_notify, crash_cause, crash_fatal, attempt,
	rescheduled_from, rescheduled_to, created_at, started_at, finished_at, updated_at,
	state_entered_at, auto_reschedule, auto_reschedule_due_at`

// readJob reads the one job `WHERE <where>` selects, its data and its crash keyvals. A missing
// job is sql.ErrNoRows; callers pass errors through interpretError.
func readJob(ctx context.Context, q queryer, where string, args ...any) (statemachine.Job, error) {
	job, err := scanJob(q.QueryRowContext(ctx, `SELECT `+jobColumns+` FROM jobs WHERE `+where, args...))
	if err != nil {
		return statemachine.Job{}, err
	}
	if job.Data, err = readKeyVals(ctx, q, "job_data", job.UUID); err != nil {
		return statemachine.Job{}, err
	}
	if job.Crash != nil {
		kv, err := readKeyVals(ctx, q, "crash_keyvals", job.UUID)
		if err != nil {
			return statemachine.Job{}, err
		}
		if kv != nil {
			job.Crash.KeyVals = kv
		}
	}
	return job, nil
}

// scanJob reads a row of jobColumns. A crash comes back with empty keyvals, for readJob to fill.
func scanJob(row interface{ Scan(...any) error }) (statemachine.Job, error) {
	var (
		job                              statemachine.Job
		id, state, created, updated      string
		entered                          string
		sourceMsgID, sourceTopic, runner sql.NullString
		artifactsURL, logURL             sql.NullString
		notify, cause                    sql.NullString
		fatal                            sql.NullBool
		from, to, started, finished      sql.NullString
		auto, due                        sql.NullString
	)
	err := row.Scan(&id, &state, &job.TaskName, &job.Item, &job.ItemType, &job.Arch,
		&sourceMsgID, &sourceTopic, &job.RequestID, &runner, &artifactsURL, &logURL,
		&notify, &cause, &fatal, &job.Attempt, &from, &to, &created, &started, &finished, &updated, &entered, &auto, &due)
	if err != nil {
		return statemachine.Job{}, err
	}
	fail := func(err error) (statemachine.Job, error) {
		return statemachine.Job{}, fmt.Errorf("read job %s: %w", id, err)
	}
	if job.UUID, err = uuid.Parse(id); err != nil {
		return fail(err)
	}
	job.State = statemachine.State(state)
	if sourceMsgID.Valid {
		job.Source = &statemachine.Source{MsgID: sourceMsgID.String, Topic: sourceTopic.String}
	}
	if runner.Valid {
		job.Runner = &statemachine.Runner{}
		if err := json.Unmarshal([]byte(runner.String), job.Runner); err != nil {
			return fail(fmt.Errorf("decode runner: %w", err))
		}
	}
	job.ArtifactsURL = artifactsURL.String
	job.LogURL = logURL.String
	if notify.Valid {
		job.Crash = &statemachine.Crash{
			Notify:  statemachine.Notify(notify.String),
			Cause:   statemachine.Cause(cause.String),
			Fatal:   fatal.Bool,
			KeyVals: statemachine.KeyVals{},
		}
	}
	if job.RescheduledFrom, err = parseNullUUID(from); err != nil {
		return fail(err)
	}
	if job.RescheduledTo, err = parseNullUUID(to); err != nil {
		return fail(err)
	}
	if job.CreatedAt, err = parseTime(created); err != nil {
		return fail(err)
	}
	if job.StartedAt, err = parseNullTime(started); err != nil {
		return fail(err)
	}
	if job.FinishedAt, err = parseNullTime(finished); err != nil {
		return fail(err)
	}
	if job.UpdatedAt, err = parseTime(updated); err != nil {
		return fail(err)
	}
	if job.StateEnteredAt, err = parseTime(entered); err != nil {
		return fail(err)
	}
	job.Auto = statemachine.AutoMark(auto.String)
	if job.AutoDueAt, err = parseNullTime(due); err != nil {
		return fail(err)
	}
	return job, nil
}

// jobValues are the values of jobColumns for job, in their order.
func jobValues(job statemachine.Job) ([]any, error) {
	var sourceMsgID, sourceTopic, runner any
	if job.Source != nil {
		sourceMsgID, sourceTopic = job.Source.MsgID, job.Source.Topic
	}
	if job.Runner != nil {
		b, err := json.Marshal(job.Runner)
		if err != nil {
			return nil, fmt.Errorf("encode runner: %w", err)
		}
		runner = string(b)
	}
	var notify, cause, fatal any
	if job.Crash != nil {
		notify, cause, fatal = string(job.Crash.Notify), string(job.Crash.Cause), job.Crash.Fatal
	}
	return []any{
		job.UUID.String(), string(job.State), job.TaskName, job.Item, job.ItemType, job.Arch,
		sourceMsgID, sourceTopic, job.RequestID, runner, nullString(job.ArtifactsURL),
		nullString(job.LogURL), notify, cause, fatal, job.Attempt,
		nullUUID(job.RescheduledFrom), nullUUID(job.RescheduledTo), formatTime(job.CreatedAt),
		nullTime(job.StartedAt), nullTime(job.FinishedAt), formatTime(job.UpdatedAt),
		formatTime(job.StateEnteredAt), nullString(string(job.Auto)), nullTime(job.AutoDueAt),
	}, nil
}

// readKeyVals reads a job's rows of a key-value table (job_data or crash_keyvals), each key's
// values in position order; nil when there are none.
func readKeyVals(ctx context.Context, q queryer, table string, id uuid.UUID) (statemachine.KeyVals, error) {
	rows, err := q.QueryContext(ctx, `SELECT key, value FROM `+table+` WHERE job_uuid = ? ORDER BY key, position`, id.String())
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var kv statemachine.KeyVals
	for rows.Next() {
		var key, value string
		if err := rows.Scan(&key, &value); err != nil {
			return nil, err
		}
		if kv == nil {
			kv = statemachine.KeyVals{}
		}
		kv[key] = append(kv[key], value)
	}
	return kv, rows.Err()
}

// insertKeyVals writes kv as rows of a key-value table, each value with its list position.
func insertKeyVals(ctx context.Context, t *tx, table string, id uuid.UUID, kv statemachine.KeyVals) error {
	if len(kv) == 0 {
		return nil
	}
	query := `INSERT INTO ` + table + ` (job_uuid, key, position, value) VALUES (?, ?, ?, ?)`
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		for i, v := range kv[k] {
			if _, err := t.ExecContext(ctx, query, id.String(), k, i, v); err != nil {
				return err
			}
		}
	}
	return nil
}
