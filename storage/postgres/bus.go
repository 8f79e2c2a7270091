package postgres

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// jobLockClass is the first key of the two-key advisory locks LockKeys takes on job uuids; the
// single-key locks (migrations, the relay) live in another key space.
const jobLockClass = 0x6a6f6273 // "jobs"

// Rejected lists rejected messages, newest first.
func (b *Backend) Rejected(ctx context.Context, q storage.RejectedQuery) ([]storage.RejectedMessage, error) {
	if q.Limit < 1 {
		return []storage.RejectedMessage{}, nil
	}
	var where []string
	var args []any
	if q.BeforeID > 0 {
		args = append(args, q.BeforeID)
		where = append(where, fmt.Sprintf("id < $%d", len(args)))
	}
	if q.Reason != "" {
		args = append(args, string(q.Reason))
		where = append(where, fmt.Sprintf("reason = $%d", len(args)))
	}
	if q.Transport != "" {
		args = append(args, string(q.Transport))
		where = append(where, fmt.Sprintf("transport = $%d", len(args)))
	}
	if q.MessageID != "" {
		args = append(args, q.MessageID)
		where = append(where, fmt.Sprintf("message_id = $%d", len(args)))
	}
	if q.JobUUID != nil {
		args = append(args, *q.JobUUID)
		where = append(where, fmt.Sprintf("job_uuid = $%d", len(args)))
	}
	sql := `SELECT id, transport, topic, message_id, reason, field, detail, job_uuid, body,
		body_size, body_truncated, received_at, rejected_at FROM rejected_messages`
	if len(where) > 0 {
		sql += " WHERE " + strings.Join(where, " AND ")
	}
	args = append(args, q.Limit)
	sql += fmt.Sprintf(" ORDER BY id DESC LIMIT $%d", len(args))
	rows, err := b.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list rejected messages: %w", interpretError(err))
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.RejectedMessage, error) {
		var r storage.RejectedMessage
		var transport, reason string
		err := row.Scan(&r.ID, &transport, &r.Topic, &r.MessageID, &reason, &r.Field, &r.Detail,
			&r.JobUUID, &r.Body, &r.BodySize, &r.BodyTruncated, &r.ReceivedAt, &r.RejectedAt)
		r.Transport, r.Reason = statemachine.Origin(transport), storage.RejectReason(reason)
		r.ReceivedAt, r.RejectedAt = r.ReceivedAt.UTC(), r.RejectedAt.UTC()
		return r, err
	})
	if err != nil {
		return nil, fmt.Errorf("list rejected messages: %w", interpretError(err))
	}
	return out, nil
}

// DeletePublished removes published messages from the outbox.
func (b *Backend) DeletePublished(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	if _, err := b.pool.Exec(ctx, `DELETE FROM outbox WHERE id = ANY($1)`, ids); err != nil {
		return fmt.Errorf("delete %d published outbox messages: %w", len(ids), interpretError(err))
	}
	return nil
}

// OutboxStats counts the unpublished outbox messages.
func (b *Backend) OutboxStats(ctx context.Context) (storage.OutboxStats, error) {
	var s storage.OutboxStats
	err := b.pool.QueryRow(ctx, `SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL`).Scan(&s.Backlog, &s.Oldest)
	if err != nil {
		return s, fmt.Errorf("outbox stats: %w", interpretError(err))
	}
	s.Oldest = utc(s.Oldest)
	return s, nil
}

// PruneSeen forgets message ids received before the given time.
func (b *Backend) PruneSeen(ctx context.Context, before time.Time) (int64, error) {
	tag, err := b.pool.Exec(ctx, `DELETE FROM bus_seen WHERE received_at < $1`, before)
	if err != nil {
		return 0, fmt.Errorf("prune seen message ids: %w", interpretError(err))
	}
	return tag.RowsAffected(), nil
}

// LockKeys takes transaction-scoped advisory locks on the uuids, in the order given (callers
// sort them, so that two transactions cannot wait for each other).
func (t *txn) LockKeys(ctx context.Context, ids []uuid.UUID) error {
	keys := make([]int32, len(ids))
	for i, id := range ids {
		keys[i] = lockKey(id)
	}
	_, err := t.tx.Exec(ctx, `SELECT count(pg_advisory_xact_lock($1::int4, k))
		FROM unnest($2::int4[]) WITH ORDINALITY AS u(k, n)`, jobLockClass, keys)
	if err != nil {
		return fmt.Errorf("lock %d job keys: %w", len(ids), interpretError(err))
	}
	return nil
}

// lockKey is the second advisory lock key of a job uuid. Two uuids may share one; that only
// makes one transaction wait for the other.
func lockKey(id uuid.UUID) int32 {
	h := fnv.New32a()
	h.Write(id[:])
	return int32(binary.BigEndian.Uint32(h.Sum(nil)))
}

// MarkSeen records the message ids in one statement and reports which were new.
func (t *txn) MarkSeen(ctx context.Context, ids []string, at time.Time) ([]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	rows, err := t.tx.Query(ctx, `INSERT INTO bus_seen (message_id, received_at)
		SELECT id, $2 FROM unnest($1::text[]) AS u(id)
		ON CONFLICT (message_id) DO NOTHING RETURNING message_id`, ids, at)
	if err != nil {
		return nil, fmt.Errorf("mark message ids seen: %w", interpretError(err))
	}
	inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		return nil, fmt.Errorf("mark message ids seen: %w", interpretError(err))
	}
	isNew := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		isNew[id] = true
	}
	fresh := make([]bool, len(ids))
	for i, id := range ids {
		fresh[i] = isNew[id]
	}
	return fresh, nil
}

// Park keeps an event for a job that does not exist yet.
func (t *txn) Park(ctx context.Context, p storage.ParkedEvent) error {
	payload, err := storage.EncodeEventPayload(p.Event)
	if err != nil {
		return fmt.Errorf("park event %s: %w", p.Event.MessageID, err)
	}
	_, err = t.tx.Exec(ctx, `INSERT INTO parked_events (job_uuid, kind, origin, message_id, topic,
		payload, body, received_at, parked_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9)`,
		p.JobUUID, string(p.Event.Kind()), string(p.Event.Origin), p.Event.MessageID, p.Topic,
		string(payload), nonNil(p.Body), p.Event.ReceivedAt, p.ParkedAt)
	if err != nil {
		return fmt.Errorf("park event %s: %w", p.Event.MessageID, interpretError(err))
	}
	return nil
}

const parkedColumns = `id, job_uuid, origin, message_id, topic, payload, body, received_at, parked_at`

// TakeParked removes and returns the events parked for the jobs, oldest first.
func (t *txn) TakeParked(ctx context.Context, ids []uuid.UUID) ([]storage.ParkedEvent, error) {
	rows, err := t.tx.Query(ctx, `DELETE FROM parked_events WHERE job_uuid = ANY($1) RETURNING `+parkedColumns, ids)
	if err != nil {
		return nil, fmt.Errorf("take events parked for %d jobs: %w", len(ids), interpretError(err))
	}
	return collectParked(rows)
}

// TakeExpired removes and returns up to limit events parked before the given time; rows another
// transaction is taking are skipped.
func (t *txn) TakeExpired(ctx context.Context, before time.Time, limit int) ([]storage.ParkedEvent, error) {
	rows, err := t.tx.Query(ctx, `DELETE FROM parked_events WHERE id IN (
		SELECT id FROM parked_events WHERE parked_at < $1 ORDER BY parked_at, id LIMIT $2
		FOR UPDATE SKIP LOCKED) RETURNING `+parkedColumns, before, limit)
	if err != nil {
		return nil, fmt.Errorf("take expired parked events: %w", interpretError(err))
	}
	return collectParked(rows)
}

func collectParked(rows pgx.Rows) ([]storage.ParkedEvent, error) {
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.ParkedEvent, error) {
		var p storage.ParkedEvent
		var origin string
		var payload []byte
		if err := row.Scan(&p.ID, &p.JobUUID, &origin, &p.Event.MessageID, &p.Topic, &payload, &p.Body,
			&p.Event.ReceivedAt, &p.ParkedAt); err != nil {
			return p, err
		}
		p.Event.Origin = statemachine.Origin(origin)
		p.Event.ReceivedAt, p.ParkedAt = p.Event.ReceivedAt.UTC(), p.ParkedAt.UTC()
		if err := storage.DecodeEventPayload(payload, &p.Event); err != nil {
			return p, fmt.Errorf("parked event %d: decode payload: %w", p.ID, err)
		}
		return p, nil
	})
	if err != nil {
		return nil, interpretError(err)
	}
	// DELETE … RETURNING does not promise an order.
	slices.SortFunc(out, func(a, b storage.ParkedEvent) int { return cmp.Compare(a.ID, b.ID) })
	return out, nil
}

// AppendRejected stores a rejected message.
func (t *txn) AppendRejected(ctx context.Context, r storage.RejectedMessage) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO rejected_messages (transport, topic, message_id, reason,
		field, detail, job_uuid, body, body_size, body_truncated, received_at, rejected_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12)`,
		string(r.Transport), r.Topic, r.MessageID, string(r.Reason), r.Field, r.Detail, r.JobUUID,
		nonNil(r.Body), r.BodySize, r.BodyTruncated, r.ReceivedAt, r.RejectedAt)
	if err != nil {
		return fmt.Errorf("store rejected message %s: %w", r.MessageID, interpretError(err))
	}
	return nil
}

func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// relayLockID is the session advisory lock the one active outbox relay holds.
const relayLockID = 0x65786572 // "exer"

// outboxChannel is what the outbox trigger notifies (migration 0002).
const outboxChannel = "execdb_outbox"

// Lead makes this process the only active outbox relay among those sharing the database: it
// waits until it holds a session advisory lock on a connection of its own, listens there for
// the outbox notifications, and calls fn with a channel that receives a value when messages
// were queued. fn's context ends when ctx does or when the connection is lost (and with it the
// lock); Lead returns what fn returned, or why it could not lead.
func (b *Backend) Lead(ctx context.Context, fn func(ctx context.Context, wake <-chan struct{}) error) error {
	conn, err := pgx.ConnectConfig(ctx, b.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("relay lock: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx)) // also releases the lock
	// If this host vanishes without closing the connection, the server notices within about a
	// minute and drops the session, and with it the lock, instead of after the OS's two hours.
	if _, err := conn.Exec(ctx, `SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3`); err != nil {
		return fmt.Errorf("relay lock: keepalives: %w", interpretError(err))
	}
	for {
		var held bool
		if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, relayLockID).Scan(&held); err != nil {
			return fmt.Errorf("relay lock: %w", interpretError(err))
		}
		if held {
			break
		}
		t := time.NewTimer(2 * time.Second)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
	}
	if _, err := conn.Exec(ctx, `LISTEN `+outboxChannel); err != nil {
		return fmt.Errorf("relay lock: listen: %w", interpretError(err))
	}
	lctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wake := make(chan struct{}, 1)
	listening := make(chan struct{})
	go func() {
		defer close(listening)
		defer cancel() // the connection is gone: so is the lock
		for {
			if _, err := conn.WaitForNotification(lctx); err != nil {
				return
			}
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	}()
	err = fn(lctx, wake)
	cancel()
	<-listening
	return err
}

// LockJobs reads the jobs among ids that exist, FOR UPDATE in uuid order, with their data and
// crash keyvals, in one round trip.
func (t *txn) LockJobs(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]statemachine.Job, error) {
	jobs, err := readJobs(ctx, t.tx, `WHERE uuid = ANY($1) ORDER BY uuid FOR UPDATE`, ids)
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
func readJobs(ctx context.Context, tx pgx.Tx, where string, arg any) ([]statemachine.Job, error) {
	rows, err := tx.Query(ctx, `SELECT `+jobColumns+` FROM jobs `+where, arg)
	if err != nil {
		return nil, interpretError(err)
	}
	jobs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (statemachine.Job, error) { return scanJob(row) })
	if err != nil || len(jobs) == 0 {
		return jobs, interpretError(err)
	}
	ids := make([]uuid.UUID, len(jobs))
	for i, j := range jobs {
		ids[i] = j.UUID
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT job_uuid, key, value FROM job_data WHERE job_uuid = ANY($1) ORDER BY job_uuid, key, position`, ids)
	b.Queue(`SELECT job_uuid, key, value FROM crash_keyvals WHERE job_uuid = ANY($1) ORDER BY job_uuid, key, position`, ids)
	br := tx.SendBatch(ctx, b)
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

// WriteBatch sends every write of a batch in one pipeline: one round trip.
func (t *txn) WriteBatch(ctx context.Context, w storage.BatchWrites) error {
	b := &pgx.Batch{}
	for _, j := range w.NewJobs {
		c := crashColumns(j.Crash)
		b.Queue(`INSERT INTO jobs (uuid, state, taskname, item, item_type, arch,
			source_msg_id, source_topic, request_id, runner, artifacts_url, log_url,
			crash_notify, crash_cause, crash_fatal, attempt, rescheduled_from, rescheduled_to,
			created_at, started_at, finished_at, updated_at, state_entered_at)
			VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23)`,
			j.UUID, j.State, j.TaskName, j.Item, j.ItemType, j.Arch,
			sourceMsgID(j.Source), sourceTopic(j.Source), j.RequestID, runnerJSON(j.Runner),
			nullString(j.ArtifactsURL), nullString(j.LogURL), c.notify, c.cause, c.fatal,
			j.Attempt, j.RescheduledFrom, j.RescheduledTo, j.CreatedAt, j.StartedAt, j.FinishedAt, j.UpdatedAt,
			j.StateEnteredAt)
		queueKeyVals(b, "job_data", j.UUID, j.Data)
		if j.Crash != nil {
			queueKeyVals(b, "crash_keyvals", j.UUID, j.Crash.KeyVals)
		}
	}
	for _, j := range w.Changed {
		c := crashColumns(j.Crash)
		b.Queue(`UPDATE jobs SET state = $2, runner = $3, artifacts_url = $4,
			log_url = $5, crash_notify = $6, crash_cause = $7, crash_fatal = $8, attempt = $9,
			rescheduled_from = $10, rescheduled_to = $11, started_at = $12, finished_at = $13,
			updated_at = $14, state_entered_at = $15 WHERE uuid = $1`,
			j.UUID, j.State, runnerJSON(j.Runner), nullString(j.ArtifactsURL), nullString(j.LogURL),
			c.notify, c.cause, c.fatal, j.Attempt, j.RescheduledFrom, j.RescheduledTo,
			j.StartedAt, j.FinishedAt, j.UpdatedAt, j.StateEnteredAt)
		// Only a crashed job has crash keyvals, and a crashed job stays crashed: without a
		// crash there is nothing to replace.
		if j.Crash != nil {
			b.Queue(`DELETE FROM crash_keyvals WHERE job_uuid = $1`, j.UUID)
			queueKeyVals(b, "crash_keyvals", j.UUID, j.Crash.KeyVals)
		}
	}
	if n := len(w.History); n > 0 {
		var (
			jobs                                                 = make([]uuid.UUID, n)
			kinds, verdicts, origins, msgIDs, actors, froms, tos = make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
			details                                              = make([]*string, n)
			recorded                                             = make([]time.Time, n)
		)
		for i, e := range w.History {
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
	if n := len(w.Outbox); n > 0 {
		var (
			msgIDs, jobs    = make([]uuid.UUID, n), make([]uuid.UUID, n)
			topics, headers = make([]string, n), make([]string, n)
			bodies          = make([][]byte, n)
			created         = make([]time.Time, n)
		)
		for i, m := range w.Outbox {
			h, err := json.Marshal(m.Headers)
			if err != nil {
				return err
			}
			msgIDs[i], jobs[i], topics[i], bodies[i], headers[i], created[i] = m.MessageID, m.JobUUID, m.Topic, m.Body, string(h), m.CreatedAt
		}
		b.Queue(`INSERT INTO outbox (message_id, job_uuid, topic, body, headers, created_at)
			SELECT m, j, t, b, h::jsonb, c FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::bytea[],
			$5::text[], $6::timestamptz[]) WITH ORDINALITY AS u(m, j, t, b, h, c, n) ORDER BY n`,
			msgIDs, jobs, topics, bodies, headers, created)
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
	if err := t.tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("write batch: %w", interpretError(err))
	}
	return nil
}

func queueKeyVals(b *pgx.Batch, table string, id uuid.UUID, kv statemachine.KeyVals) {
	if len(kv) == 0 {
		return
	}
	var keys, values []string
	var positions []int32
	for k, vs := range kv {
		for i, v := range vs {
			keys = append(keys, k)
			positions = append(positions, int32(i))
			values = append(values, v)
		}
	}
	b.Queue(`INSERT INTO `+table+` (job_uuid, key, position, value)
		SELECT $1, k, p, v FROM unnest($2::text[], $3::int[], $4::text[]) AS u(k, p, v)`,
		id, keys, positions, values)
}
