package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// Rejected lists rejected messages, newest first.
func (b *Backend) Rejected(ctx context.Context, q storage.RejectedQuery) ([]storage.RejectedMessage, error) {
	out := []storage.RejectedMessage{}
	if q.Limit < 1 {
		return out, nil
	}
	var where []string
	var args []any
	if q.BeforeID > 0 {
		where, args = append(where, "id < ?"), append(args, q.BeforeID)
	}
	if q.Reason != "" {
		where, args = append(where, "reason = ?"), append(args, string(q.Reason))
	}
	if q.Transport != "" {
		where, args = append(where, "transport = ?"), append(args, string(q.Transport))
	}
	if q.MessageID != "" {
		where, args = append(where, "message_id = ?"), append(args, q.MessageID)
	}
	if q.JobUUID != nil {
		where, args = append(where, "job_uuid = ?"), append(args, q.JobUUID.String())
	}
	query := `SELECT id, transport, topic, message_id, reason, field, detail, job_uuid, body,
		body_size, body_truncated, received_at, rejected_at FROM rejected_messages`
	if len(where) > 0 {
		query += " WHERE " + strings.Join(where, " AND ")
	}
	query += " ORDER BY id DESC LIMIT ?"
	args = append(args, q.Limit)
	rows, err := b.reader.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list rejected messages: %w", interpretError(err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			r                      storage.RejectedMessage
			transport, reason      string
			jobUUID                sql.NullString
			receivedAt, rejectedAt string
			body                   []byte
		)
		if err := rows.Scan(&r.ID, &transport, &r.Topic, &r.MessageID, &reason, &r.Field, &r.Detail,
			&jobUUID, &body, &r.BodySize, &r.BodyTruncated, &receivedAt, &rejectedAt); err != nil {
			return nil, fmt.Errorf("list rejected messages: %w", interpretError(err))
		}
		r.Transport, r.Reason, r.Body = statemachine.Origin(transport), storage.RejectReason(reason), body
		if r.JobUUID, err = parseNullUUID(jobUUID); err != nil {
			return nil, fmt.Errorf("rejected message %d: %w", r.ID, err)
		}
		if r.ReceivedAt, err = parseTime(receivedAt); err != nil {
			return nil, fmt.Errorf("rejected message %d: %w", r.ID, err)
		}
		if r.RejectedAt, err = parseTime(rejectedAt); err != nil {
			return nil, fmt.Errorf("rejected message %d: %w", r.ID, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list rejected messages: %w", interpretError(err))
	}
	return out, nil
}

// DeletePublished removes published messages from the outbox.
func (b *Backend) DeletePublished(ctx context.Context, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		stmt, err := tx.PrepareContext(ctx, `DELETE FROM outbox WHERE id = ?`)
		if err != nil {
			return err
		}
		defer stmt.Close()
		for _, id := range ids {
			if _, err := stmt.ExecContext(ctx, id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete %d published outbox messages: %w", len(ids), interpretError(err))
	}
	return nil
}

// PruneSeen forgets message ids received before the given time.
func (b *Backend) PruneSeen(ctx context.Context, before time.Time) (int64, error) {
	return b.deleteWhere(ctx, "prune seen message ids", `DELETE FROM bus_seen WHERE received_at < ?`, formatTime(before))
}

func (b *Backend) deleteWhere(ctx context.Context, what, query string, args ...any) (int64, error) {
	var n int64
	err := b.writeTx(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx, query, args...)
		if err != nil {
			return err
		}
		n, err = res.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("%s: %w", what, interpretError(err))
	}
	return n, nil
}

// OutboxStats counts the unpublished outbox messages.
func (b *Backend) OutboxStats(ctx context.Context) (storage.OutboxStats, error) {
	var s storage.OutboxStats
	var oldest sql.NullString
	err := b.reader.QueryRowContext(ctx, `SELECT count(*), min(created_at) FROM outbox WHERE published_at IS NULL`).Scan(&s.Backlog, &oldest)
	if err != nil {
		return s, fmt.Errorf("outbox stats: %w", interpretError(err))
	}
	if s.Oldest, err = parseNullTime(oldest); err != nil {
		return s, fmt.Errorf("outbox stats: %w", err)
	}
	return s, nil
}

// markSeen records the message ids and reports which were new.
func (t *tx) markSeen(ctx context.Context, ids []string, at time.Time) ([]bool, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	fresh := make([]bool, len(ids))
	ts := formatTime(at)
	for i, id := range ids {
		res, err := t.ExecContext(ctx, `INSERT INTO bus_seen (message_id, received_at) VALUES (?, ?)
			ON CONFLICT (message_id) DO NOTHING`, id, ts)
		if err != nil {
			return nil, fmt.Errorf("mark message id %q seen: %w", id, interpretError(err))
		}
		n, err := res.RowsAffected()
		if err != nil {
			return nil, fmt.Errorf("mark message id %q seen: %w", id, err)
		}
		fresh[i] = n == 1
	}
	return fresh, nil
}

// park keeps an event for a job that does not exist yet.
func (t *tx) park(ctx context.Context, p storage.ParkedEvent) error {
	payload, err := storage.EncodeEventPayload(p.Event)
	if err != nil {
		return fmt.Errorf("park event %s: %w", p.Event.MessageID, err)
	}
	_, err = t.ExecContext(ctx, `INSERT INTO parked_events (job_uuid, kind, origin, message_id,
		topic, payload, body, received_at, parked_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		p.JobUUID.String(), string(p.Event.Kind()), string(p.Event.Origin), p.Event.MessageID, p.Topic,
		string(payload), nonNil(p.Body), formatTime(p.Event.ReceivedAt), formatTime(p.ParkedAt))
	if err != nil {
		return fmt.Errorf("park event %s: %w", p.Event.MessageID, interpretError(err))
	}
	return nil
}

const parkedColumns = `id, job_uuid, origin, message_id, topic, payload, body, received_at, parked_at`

// takeParkedFor removes and returns the events parked for the jobs, oldest first.
func (t *tx) takeParkedFor(ctx context.Context, ids []uuid.UUID) ([]storage.ParkedEvent, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id.String()
	}
	return t.takeParked(ctx, fmt.Sprintf("take events parked for %d jobs", len(ids)),
		`job_uuid IN (?`+strings.Repeat(", ?", len(ids)-1)+`)`, args...)
}

// TakeExpired removes and returns up to limit events parked before the given time.
func (t *tx) TakeExpired(ctx context.Context, before time.Time, limit int) ([]storage.ParkedEvent, error) {
	return t.takeParked(ctx, "take expired parked events",
		`id IN (SELECT id FROM parked_events WHERE parked_at < ? ORDER BY parked_at, id LIMIT ?)`,
		formatTime(before), limit)
}

func (t *tx) takeParked(ctx context.Context, what, where string, args ...any) ([]storage.ParkedEvent, error) {
	out, err := readParked(ctx, t, what, `SELECT `+parkedColumns+` FROM parked_events WHERE `+where+` ORDER BY id`, args...)
	if err != nil {
		return nil, err
	}
	for _, p := range out {
		if _, err := t.ExecContext(ctx, `DELETE FROM parked_events WHERE id = ?`, p.ID); err != nil {
			return nil, fmt.Errorf("%s: %w", what, interpretError(err))
		}
	}
	return out, nil
}

// readParked reads the parked events a query of parkedColumns selects.
func readParked(ctx context.Context, q queryer, what, query string, args ...any) ([]storage.ParkedEvent, error) {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, interpretError(err))
	}
	defer rows.Close()
	var out []storage.ParkedEvent
	for rows.Next() {
		var (
			p                                   storage.ParkedEvent
			jobUUID, origin, received, parkedAt string
			payload                             string
		)
		if err := rows.Scan(&p.ID, &jobUUID, &origin, &p.Event.MessageID, &p.Topic, &payload, &p.Body,
			&received, &parkedAt); err != nil {
			return nil, fmt.Errorf("%s: %w", what, interpretError(err))
		}
		p.Event.Origin = statemachine.Origin(origin)
		if p.JobUUID, err = uuid.Parse(jobUUID); err == nil {
			if p.Event.ReceivedAt, err = parseTime(received); err == nil {
				if p.ParkedAt, err = parseTime(parkedAt); err == nil {
					err = storage.DecodeEventPayload([]byte(payload), &p.Event)
				}
			}
		}
		if err != nil {
			return nil, fmt.Errorf("%s: parked event %d: %w", what, p.ID, err)
		}
		out = append(out, p)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", what, interpretError(err))
	}
	return out, nil
}

// appendRejected stores a rejected message.
func (t *tx) appendRejected(ctx context.Context, r storage.RejectedMessage) error {
	var jobUUID any
	if r.JobUUID != nil {
		jobUUID = r.JobUUID.String()
	}
	_, err := t.ExecContext(ctx, `INSERT INTO rejected_messages (transport, topic, message_id,
		reason, field, detail, job_uuid, body, body_size, body_truncated, received_at, rejected_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		string(r.Transport), r.Topic, r.MessageID, string(r.Reason), r.Field, r.Detail, jobUUID,
		nonNil(r.Body), r.BodySize, r.BodyTruncated, formatTime(r.ReceivedAt), formatTime(r.RejectedAt))
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

// lockJobs reads the jobs among ids that exist; the transaction's write lock keeps them.
func (t *tx) lockJobs(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]statemachine.Job, error) {
	out := make(map[uuid.UUID]statemachine.Job, len(ids))
	for _, id := range ids {
		job, err := readJob(ctx, t, `uuid = ?`, id.String())
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("lock job %s: %w", id, interpretError(err))
		}
		out[id] = job
	}
	return out, nil
}

// jobsByRequestID reads the jobs the request ids created.
func (t *tx) jobsByRequestID(ctx context.Context, requestIDs []string) (map[string]statemachine.Job, error) {
	out := make(map[string]statemachine.Job, len(requestIDs))
	for _, req := range requestIDs {
		job, err := readJob(ctx, t, `request_id = ?`, req)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("job with request id %q: %w", req, interpretError(err))
		}
		out[req] = job
	}
	return out, nil
}

// Load does what l asks one statement after the other: SQLite is in this process, so round
// trips cost nothing. Its keys need no lock: the transaction holds the database's only write
// lock.
func (t *tx) Load(ctx context.Context, l storage.Load) (storage.Loaded, error) {
	var out storage.Loaded
	var err error
	if len(l.SeenIDs) > 0 {
		if out.Fresh, err = t.markSeen(ctx, l.SeenIDs, l.SeenAt); err != nil {
			return out, err
		}
	}
	if len(l.Jobs) > 0 {
		if out.Jobs, err = t.lockJobs(ctx, l.Jobs); err != nil {
			return out, err
		}
	}
	if len(l.RequestIDs) > 0 {
		if out.ByRequestID, err = t.jobsByRequestID(ctx, l.RequestIDs); err != nil {
			return out, err
		}
	}
	if len(l.Parked) > 0 {
		if out.Parked, err = t.takeParkedFor(ctx, l.Parked); err != nil {
			return out, err
		}
	}
	return out, nil
}
