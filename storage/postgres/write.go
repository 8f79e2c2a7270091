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

// Write sends every write of a unit of work in one pipeline, one round trip: each kind of row
// is one multi-row statement over arrays (unnest … WITH ORDINALITY keeps the list's order for
// the ids of history and outbox), whatever the number of jobs.
func (t *txn) Write(ctx context.Context, w storage.Writes) error {
	b := &pgx.Batch{}
	if len(w.NewJobs) > 0 {
		queueInsertJobs(b, w.NewJobs)
	}
	update := -1 // the position of the UPDATE in the batch
	if len(w.Changed) > 0 {
		update = b.Len()
		queueUpdateJobs(b, w.Changed)
	}
	var data, crash keyValRows
	for _, j := range w.NewJobs {
		data.add(j.UUID, j.Data)
		if j.Crash != nil {
			crash.add(j.UUID, j.Crash.KeyVals)
		}
	}
	for _, c := range w.Changed {
		// A job becomes CRASHED once and stays so: its key-values are written then, never again.
		if c.Crashed && c.Job.Crash != nil {
			crash.add(c.Job.UUID, c.Job.Crash.KeyVals)
		}
	}
	data.queue(b, "job_data")
	crash.queue(b, "crash_keyvals")
	if len(w.History) > 0 {
		queueHistory(b, w.History)
	}
	if len(w.Outbox) > 0 {
		if err := queueOutbox(b, w.Outbox); err != nil {
			return err
		}
	}
	for _, p := range w.Parked {
		payload, err := storage.EncodeEventPayload(p.Event)
		if err != nil {
			return fmt.Errorf("park event %s: %w", p.Event.MessageID, err)
		}
		b.Queue(`INSERT INTO parked_events (job_uuid, kind, origin, message_id, topic,
			payload, body, received_at, parked_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
			p.JobUUID, string(p.Event.Kind()), string(p.Event.Origin), p.Event.MessageID, p.Topic,
			string(payload), nonNil(p.Body), p.Event.ReceivedAt, p.ParkedAt)
	}
	for _, r := range w.Rejected {
		b.Queue(`INSERT INTO rejected_messages (transport, topic, message_id, reason,
			field, detail, job_uuid, body, body_size, body_truncated, received_at, rejected_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`,
			string(r.Transport), r.Topic, r.MessageID, string(r.Reason), r.Field, r.Detail, r.JobUUID,
			nonNil(r.Body), r.BodySize, r.BodyTruncated, r.ReceivedAt, r.RejectedAt)
	}
	if b.Len() == 0 {
		return nil
	}
	br := t.SendBatch(ctx, b)
	for i := range b.Len() {
		tag, err := br.Exec()
		if err != nil {
			br.Close()
			return fmt.Errorf("write: %w", interpretError(err))
		}
		if i == update && tag.RowsAffected() != int64(len(w.Changed)) {
			br.Close()
			return fmt.Errorf("write: %d of %d changed jobs do not exist: %w",
				int64(len(w.Changed))-tag.RowsAffected(), len(w.Changed), storage.ErrNotFound)
		}
	}
	if err := br.Close(); err != nil {
		return fmt.Errorf("write: %w", interpretError(err))
	}
	return nil
}

// jobRows is jobs as column arrays. Uuids are [16]byte, which pgx encodes as uuid directly
// (uuid.UUID would go through its driver.Valuer, a string, for each element).
type jobRows struct {
	uuids                                           [][16]byte
	states, tasks, items, itemTypes, arches, reqIDs []string
	srcIDs, srcTopics, runners, artifacts, logs     []*string
	notifies, causes, autos                         []*string
	fatals                                          []*bool
	attempts                                        []int32
	from, to                                        []*[16]byte
	created, updated, entered                       []time.Time
	started, finished, due                          []*time.Time
}

func columns(jobs []statemachine.Job) jobRows {
	n := len(jobs)
	r := jobRows{
		uuids: make([][16]byte, n), states: make([]string, n), tasks: make([]string, n), items: make([]string, n),
		itemTypes: make([]string, n), arches: make([]string, n), reqIDs: make([]string, n),
		srcIDs: make([]*string, n), srcTopics: make([]*string, n), runners: make([]*string, n),
		artifacts: make([]*string, n), logs: make([]*string, n), notifies: make([]*string, n),
		causes: make([]*string, n), autos: make([]*string, n), fatals: make([]*bool, n), attempts: make([]int32, n),
		from: make([]*[16]byte, n), to: make([]*[16]byte, n), created: make([]time.Time, n),
		updated: make([]time.Time, n), entered: make([]time.Time, n), started: make([]*time.Time, n),
		finished: make([]*time.Time, n), due: make([]*time.Time, n),
	}
	for i, j := range jobs {
		c := crashColumns(j.Crash)
		r.uuids[i], r.states[i], r.tasks[i], r.items[i] = j.UUID, string(j.State), j.TaskName, j.Item
		r.itemTypes[i], r.arches[i], r.reqIDs[i] = j.ItemType, j.Arch, j.RequestID
		r.srcIDs[i], r.srcTopics[i], r.runners[i] = sourceMsgID(j.Source), sourceTopic(j.Source), runnerJSON(j.Runner)
		r.artifacts[i], r.logs[i] = nullString(j.ArtifactsURL), nullString(j.LogURL)
		r.notifies[i], r.causes[i], r.fatals[i] = c.notify, c.cause, c.fatal
		r.autos[i], r.attempts[i] = nullString(string(j.Auto)), int32(j.Attempt)
		r.from[i], r.to[i] = (*[16]byte)(j.RescheduledFrom), (*[16]byte)(j.RescheduledTo)
		r.created[i], r.updated[i], r.entered[i] = j.CreatedAt, j.UpdatedAt, j.StateEnteredAt
		r.started[i], r.finished[i], r.due[i] = j.StartedAt, j.FinishedAt, j.AutoDueAt
	}
	return r
}

func queueInsertJobs(b *pgx.Batch, jobs []statemachine.Job) {
	r := columns(jobs)
	b.Queue(`INSERT INTO jobs (uuid, state, taskname, item, item_type, arch, source_msg_id,
		source_topic, request_id, runner, artifacts_url, log_url, crash_notify, crash_cause,
		crash_fatal, attempt, rescheduled_from, rescheduled_to, created_at, started_at, finished_at,
		updated_at, state_entered_at, auto_reschedule, auto_reschedule_due_at)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
		$7::text[], $8::text[], $9::text[], $10::jsonb[], $11::text[], $12::text[], $13::text[],
		$14::text[], $15::bool[], $16::int[], $17::uuid[], $18::uuid[], $19::timestamptz[],
		$20::timestamptz[], $21::timestamptz[], $22::timestamptz[], $23::timestamptz[], $24::text[],
		$25::timestamptz[])`,
		r.uuids, r.states, r.tasks, r.items, r.itemTypes, r.arches, r.srcIDs, r.srcTopics, r.reqIDs,
		r.runners, r.artifacts, r.logs, r.notifies, r.causes, r.fatals, r.attempts, r.from, r.to,
		r.created, r.started, r.finished, r.updated, r.entered, r.autos, r.due)
}

// queueUpdateJobs writes back every column that changes in a job's life; the trigger's columns
// (task, item, request id, source, created_at) are left alone.
func queueUpdateJobs(b *pgx.Batch, changes []storage.Change) {
	jobs := make([]statemachine.Job, len(changes))
	for i, c := range changes {
		jobs[i] = c.Job
	}
	r := columns(jobs)
	b.Queue(`UPDATE jobs SET state = u.state, runner = u.runner, artifacts_url = u.artifacts_url,
		log_url = u.log_url, crash_notify = u.crash_notify, crash_cause = u.crash_cause,
		crash_fatal = u.crash_fatal, attempt = u.attempt, rescheduled_from = u.rescheduled_from,
		rescheduled_to = u.rescheduled_to, started_at = u.started_at, finished_at = u.finished_at,
		updated_at = u.updated_at, state_entered_at = u.state_entered_at,
		auto_reschedule = u.auto_reschedule, auto_reschedule_due_at = u.auto_reschedule_due_at
		FROM unnest($1::uuid[], $2::text[], $3::jsonb[], $4::text[], $5::text[], $6::text[],
		$7::text[], $8::bool[], $9::int[], $10::uuid[], $11::uuid[], $12::timestamptz[],
		$13::timestamptz[], $14::timestamptz[], $15::timestamptz[], $16::text[], $17::timestamptz[])
		AS u(uuid, state, runner, artifacts_url, log_url, crash_notify, crash_cause, crash_fatal,
		attempt, rescheduled_from, rescheduled_to, started_at, finished_at, updated_at,
		state_entered_at, auto_reschedule, auto_reschedule_due_at)
		WHERE jobs.uuid = u.uuid`,
		r.uuids, r.states, r.runners, r.artifacts, r.logs, r.notifies, r.causes, r.fatals, r.attempts,
		r.from, r.to, r.started, r.finished, r.updated, r.entered, r.autos, r.due)
}

// keyValRows is key-values of several jobs as column arrays, a row a value.
type keyValRows struct {
	jobs      [][16]byte
	keys      []string
	positions []int32
	values    []string
}

func (r *keyValRows) add(id uuid.UUID, kv statemachine.KeyVals) {
	for k, vs := range kv {
		for i, v := range vs {
			r.jobs, r.keys = append(r.jobs, id), append(r.keys, k)
			r.positions, r.values = append(r.positions, int32(i)), append(r.values, v)
		}
	}
}

func (r *keyValRows) queue(b *pgx.Batch, table string) {
	if len(r.jobs) == 0 {
		return
	}
	b.Queue(`INSERT INTO `+table+` (job_uuid, key, position, value)
		SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[])`,
		r.jobs, r.keys, r.positions, r.values)
}

func queueHistory(b *pgx.Batch, history []storage.HistoryEntry) {
	n := len(history)
	var (
		jobs                                                 = make([][16]byte, n)
		kinds, verdicts, origins, msgIDs, actors, froms, tos = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
		details                                              = make([]*string, n)
		recorded                                             = make([]time.Time, n)
	)
	for i, e := range history {
		jobs[i], kinds[i], verdicts[i], origins[i] = e.JobUUID, string(e.Kind), string(e.Verdict), string(e.Origin)
		msgIDs[i], actors[i], froms[i], tos[i] = e.MessageID, e.Actor, string(e.StateFrom), string(e.StateTo)
		details[i], recorded[i] = jsonOrNil(e.Detail), e.RecordedAt
	}
	b.Queue(`INSERT INTO job_events (job_uuid, kind, verdict, origin, message_id, actor, state_from,
		state_to, detail, recorded_at)
		SELECT j, k, v, o, m, a, f, t, d::jsonb, r FROM unnest($1::uuid[], $2::text[], $3::text[],
		$4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::text[], $10::timestamptz[])
		WITH ORDINALITY AS u(j, k, v, o, m, a, f, t, d, r, n) ORDER BY n`,
		jobs, kinds, verdicts, origins, msgIDs, actors, froms, tos, details, recorded)
}

func queueOutbox(b *pgx.Batch, msgs []storage.OutboxMessage) error {
	n := len(msgs)
	var (
		msgIDs, jobs    = make([][16]byte, n), make([][16]byte, n)
		topics, headers = make([]string, n), make([]string, n)
		bodies          = make([][]byte, n)
		created         = make([]time.Time, n)
	)
	for i, m := range msgs {
		h, err := json.Marshal(m.Headers)
		if err != nil {
			return fmt.Errorf("outbox message %s: encode headers: %w", m.MessageID, err)
		}
		msgIDs[i], jobs[i], topics[i], bodies[i], headers[i], created[i] = m.MessageID, m.JobUUID, m.Topic, m.Body, string(h), m.CreatedAt
	}
	b.Queue(`INSERT INTO outbox (message_id, job_uuid, topic, body, headers, created_at)
		SELECT m, j, t, b, h::jsonb, c FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[],
		$5::text[], $6::timestamptz[]) WITH ORDINALITY AS u(m, j, t, b, h, c, n) ORDER BY n`,
		msgIDs, jobs, topics, bodies, headers, created)
	return nil
}
