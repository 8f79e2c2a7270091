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

// Reading jobs: one row of jobs, with its data and crash key-values as arrays (jobWithKeyValues),
// for Job, Tx.Load and Search alike.

const jobColumns = `uuid, state, taskname, item, item_type, arch, source_msg_id, source_topic,
	request_id, runner, artifacts_url, log_url, crash_notify, crash_cause, crash_fatal, attempt,
	rescheduled_from, rescheduled_to, created_at, started_at, finished_at, updated_at,
	state_entered_at, auto_reschedule, auto_reschedule_due_at`

// Job returns the job with the given uuid or storage.ErrNotFound.
func (b *Backend) Job(ctx context.Context, id uuid.UUID) (statemachine.Job, error) {
	rows, err := b.pool.Query(ctx, readJobsSQL(`WHERE uuid = $1`), id)
	if err != nil {
		return statemachine.Job{}, interpretError(err)
	}
	jobs, err := collectJobs(rows)
	if err != nil {
		return statemachine.Job{}, interpretError(err)
	}
	if len(jobs) == 0 {
		return statemachine.Job{}, storage.ErrNotFound
	}
	return jobs[0], nil
}

// jobWithKeyValues are jobColumns, then the job's data and crash key-values as arrays of keys
// and values, ordered by key and position: each array is a walk of the key-values' primary key
// for the job's uuid, so reading jobs and their key-values is one statement. Over jobs j.
var jobWithKeyValues = func() string {
	const kv = `ARRAY(SELECT %[1]s FROM %[2]s WHERE job_uuid = j.uuid ORDER BY key, position)`
	return jobColumns + `, ` +
		fmt.Sprintf(kv, "key", "job_data") + `, ` + fmt.Sprintf(kv, "value", "job_data") + `, ` +
		fmt.Sprintf(kv, "key", "crash_keyvals") + `, ` + fmt.Sprintf(kv, "value", "crash_keyvals")
}()

// readJobsSQL selects jobWithKeyValues of the jobs `where` selects.
func readJobsSQL(where string) string {
	return `SELECT ` + jobWithKeyValues + ` FROM jobs j ` + where
}

// collectJobs scans rows of jobWithKeyValues.
func collectJobs(rows pgx.Rows) ([]statemachine.Job, error) {
	return pgx.CollectRows(rows, func(row pgx.CollectableRow) (statemachine.Job, error) {
		var dataKeys, dataValues, crashKeys, crashValues []string
		j, err := scanJob(row, &dataKeys, &dataValues, &crashKeys, &crashValues)
		if err != nil {
			return j, err
		}
		j.Data = keyVals(dataKeys, dataValues)
		if j.Crash != nil {
			j.Crash.KeyVals = keyVals(crashKeys, crashValues)
			if j.Crash.KeyVals == nil {
				j.Crash.KeyVals = statemachine.KeyVals{}
			}
		}
		return j, nil
	})
}

// keyVals pairs keys with values, in their order; nil when there are none.
func keyVals(keys, values []string) statemachine.KeyVals {
	if len(keys) == 0 {
		return nil
	}
	kv := statemachine.KeyVals{}
	for i, k := range keys {
		kv[k] = append(kv[k], values[i])
	}
	return kv
}

// scanJob scans jobColumns, then extra.
func scanJob(row pgx.Row, extra ...any) (statemachine.Job, error) {
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
	err := row.Scan(append([]any{&j.UUID, &j.State, &j.TaskName, &j.Item, &j.ItemType, &j.Arch, &srcID, &srcTopic,
		&j.RequestID, &runner, &artifacts, &logURL, &notify, &cause, &fatal, &j.Attempt,
		&rescheduledFrom, &rescheduledTo, &created, &started, &finished, &updated, &entered, &auto, &due}, extra...)...)
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
