package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// Reading jobs: one row of jobs, plus its data and crash key-values (a row a value, ordered by
// key and position).

// querier is what pgxpool.Pool and pgx.Tx have in common.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
	SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults
}

const jobColumns = `uuid, state, taskname, item, item_type, arch, source_msg_id, source_topic,
	request_id, runner, artifacts_url, log_url, crash_notify, crash_cause, crash_fatal, attempt,
	rescheduled_from, rescheduled_to, created_at, started_at, finished_at, updated_at,
	state_entered_at, auto_reschedule, auto_reschedule_due_at`

// Job returns the job with the given uuid or storage.ErrNotFound.
func (b *Backend) Job(ctx context.Context, id uuid.UUID) (statemachine.Job, error) {
	jobs, err := readJobs(ctx, b.pool, `WHERE uuid = $1`, id)
	if err != nil {
		return statemachine.Job{}, err
	}
	if len(jobs) == 0 {
		return statemachine.Job{}, storage.ErrNotFound
	}
	return jobs[0], nil
}

// LockJobs reads the jobs among ids that exist, FOR UPDATE in uuid order, with their data and
// crash keyvals, in one round trip.
func (t *txn) LockJobs(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]statemachine.Job, error) {
	jobs, err := readJobs(ctx, t.tx, `WHERE uuid = ANY($1) ORDER BY uuid FOR UPDATE`, rawUUIDs(ids))
	if err != nil {
		return nil, fmt.Errorf("lock %d jobs: %w", len(ids), err)
	}
	out := make(map[uuid.UUID]statemachine.Job, len(jobs))
	for _, j := range jobs {
		out[j.UUID] = j
	}
	return out, nil
}

// JobsByRequestID reads the jobs the request ids created.
func (t *txn) JobsByRequestID(ctx context.Context, requestIDs []string) (map[string]statemachine.Job, error) {
	jobs, err := readJobs(ctx, t.tx, `WHERE request_id = ANY($1)`, requestIDs)
	if err != nil {
		return nil, fmt.Errorf("jobs by %d request ids: %w", len(requestIDs), err)
	}
	out := make(map[string]statemachine.Job, len(jobs))
	for _, j := range jobs {
		out[j.RequestID] = j
	}
	return out, nil
}

// readJobs reads the jobs `where` selects, then their key-values, each step one round trip.
func readJobs(ctx context.Context, q querier, where string, arg any) ([]statemachine.Job, error) {
	rows, err := q.Query(ctx, `SELECT `+jobColumns+` FROM jobs `+where, arg)
	if err != nil {
		return nil, interpretError(err)
	}
	jobs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (statemachine.Job, error) { return scanJob(row) })
	if err != nil || len(jobs) == 0 {
		return jobs, interpretError(err)
	}
	ids := make([][16]byte, len(jobs))
	for i, j := range jobs {
		ids[i] = j.UUID
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT job_uuid, key, value FROM job_data WHERE job_uuid = ANY($1) ORDER BY job_uuid, key, position`, ids)
	b.Queue(`SELECT job_uuid, key, value FROM crash_keyvals WHERE job_uuid = ANY($1) ORDER BY job_uuid, key, position`, ids)
	br := q.SendBatch(ctx, b)
	defer br.Close()
	data, err := collectKeyVals(br)
	if err != nil {
		return nil, err
	}
	crash, err := collectKeyVals(br)
	if err != nil {
		return nil, err
	}
	for i := range jobs {
		j := &jobs[i]
		j.Data = data[j.UUID]
		if j.Crash != nil {
			j.Crash.KeyVals = crash[j.UUID]
			if j.Crash.KeyVals == nil {
				j.Crash.KeyVals = statemachine.KeyVals{}
			}
		}
	}
	return jobs, nil
}

func collectKeyVals(br pgx.BatchResults) (map[uuid.UUID]statemachine.KeyVals, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	out := map[uuid.UUID]statemachine.KeyVals{}
	for rows.Next() {
		var id uuid.UUID
		var k, v string
		if err := rows.Scan(&id, &k, &v); err != nil {
			return nil, interpretError(err)
		}
		kv := out[id]
		if kv == nil {
			kv = statemachine.KeyVals{}
			out[id] = kv
		}
		kv[k] = append(kv[k], v)
	}
	return out, interpretError(rows.Err())
}

func scanJob(row pgx.Row) (statemachine.Job, error) {
	var (
		j                                  statemachine.Job
		srcID, srcTopic, artifacts, logURL *string
		notify, cause, auto                *string
		fatal                              *bool
		runner                             []byte
		created, updated, entered          time.Time
		started, finished, due             *time.Time
		rescheduledFrom, rescheduledTo     *uuid.UUID
	)
	err := row.Scan(&j.UUID, &j.State, &j.TaskName, &j.Item, &j.ItemType, &j.Arch, &srcID, &srcTopic,
		&j.RequestID, &runner, &artifacts, &logURL, &notify, &cause, &fatal, &j.Attempt,
		&rescheduledFrom, &rescheduledTo, &created, &started, &finished, &updated, &entered, &auto, &due)
	if err != nil {
		return j, err
	}
	if srcID != nil {
		j.Source = &statemachine.Source{MsgID: *srcID, Topic: deref(srcTopic)}
	}
	if runner != nil {
		j.Runner = &statemachine.Runner{}
		if err := json.Unmarshal(runner, j.Runner); err != nil {
			return j, fmt.Errorf("job %s: decode runner: %w", j.UUID, err)
		}
	}
	j.ArtifactsURL, j.LogURL = deref(artifacts), deref(logURL)
	if notify != nil {
		j.Crash = &statemachine.Crash{Notify: statemachine.Notify(*notify), Cause: statemachine.Cause(deref(cause)), Fatal: fatal != nil && *fatal}
	}
	j.RescheduledFrom, j.RescheduledTo = rescheduledFrom, rescheduledTo
	j.CreatedAt, j.UpdatedAt, j.StateEnteredAt = created.UTC(), updated.UTC(), entered.UTC()
	j.StartedAt, j.FinishedAt = utc(started), utc(finished)
	j.Auto, j.AutoDueAt = statemachine.AutoMark(deref(auto)), utc(due)
	return j, nil
}

// rawUUIDs is ids as [16]byte, which pgx encodes as uuid directly; a uuid.UUID goes through
// its driver.Valuer, a string, for each element of an array.
func rawUUIDs(ids []uuid.UUID) [][16]byte {
	out := make([][16]byte, len(ids))
	for i, id := range ids {
		out[i] = id
	}
	return out
}
