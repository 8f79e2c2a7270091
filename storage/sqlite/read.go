package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// Job returns the job with the given uuid, its data and crash keyvals included, or
// storage.ErrNotFound.
func (b *Backend) Job(ctx context.Context, id uuid.UUID) (statemachine.Job, error) {
	var job statemachine.Job
	err := b.readTx(ctx, func(tx *sql.Tx) error {
		var err error
		job, err = readJob(ctx, tx, `uuid = ?`, id.String())
		return err
	})
	if err != nil {
		return statemachine.Job{}, fmt.Errorf("job %s: %w", id, interpretError(err))
	}
	return job, nil
}

// History returns the job's history, oldest first; empty for an unknown job.
func (b *Backend) History(ctx context.Context, id uuid.UUID) ([]storage.HistoryEntry, error) {
	rows, err := b.reader.QueryContext(ctx, `SELECT id, job_uuid, kind, verdict, origin, message_id,
		actor, state_from, state_to, detail, recorded_at
		FROM job_events WHERE job_uuid = ? ORDER BY id`, id.String())
	if err != nil {
		return nil, fmt.Errorf("history of job %s: %w", id, interpretError(err))
	}
	defer rows.Close()
	entries := []storage.HistoryEntry{}
	for rows.Next() {
		var (
			e                              storage.HistoryEntry
			jobUUID, kind, verdict, origin string
			stateFrom, stateTo, recordedAt string
			detail                         []byte
		)
		if err := rows.Scan(&e.ID, &jobUUID, &kind, &verdict, &origin, &e.MessageID, &e.Actor,
			&stateFrom, &stateTo, &detail, &recordedAt); err != nil {
			return nil, fmt.Errorf("history of job %s: %w", id, interpretError(err))
		}
		if e.JobUUID, err = uuid.Parse(jobUUID); err != nil {
			return nil, fmt.Errorf("history of job %s: event %d: %w", id, e.ID, err)
		}
		if e.RecordedAt, err = parseTime(recordedAt); err != nil {
			return nil, fmt.Errorf("history of job %s: event %d: %w", id, e.ID, err)
		}
		e.Kind = statemachine.EventKind(kind)
		e.Verdict = statemachine.Verdict(verdict)
		e.Origin = statemachine.Origin(origin)
		e.StateFrom = statemachine.State(stateFrom)
		e.StateTo = statemachine.State(stateTo)
		e.Detail = detail // nil for NULL
		entries = append(entries, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("history of job %s: %w", id, interpretError(err))
	}
	return entries, nil
}

// Outbox returns up to limit unpublished messages with ID > afterID, in ID order; none for a
// limit below 1.
func (b *Backend) Outbox(ctx context.Context, afterID int64, limit int) ([]storage.OutboxMessage, error) {
	msgs := []storage.OutboxMessage{}
	if limit < 1 {
		return msgs, nil
	}
	rows, err := b.reader.QueryContext(ctx, `SELECT id, message_id, job_uuid, topic, body, headers, created_at
		FROM outbox WHERE published_at IS NULL AND id > ? ORDER BY id LIMIT ?`, afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("read outbox: %w", interpretError(err))
	}
	defer rows.Close()
	for rows.Next() {
		var (
			m                           storage.OutboxMessage
			messageID, jobUUID, created string
			body, headers               []byte
		)
		if err := rows.Scan(&m.ID, &messageID, &jobUUID, &m.Topic, &body, &headers, &created); err != nil {
			return nil, fmt.Errorf("read outbox: %w", interpretError(err))
		}
		if m.MessageID, err = uuid.Parse(messageID); err != nil {
			return nil, fmt.Errorf("read outbox message %d: %w", m.ID, err)
		}
		if m.JobUUID, err = uuid.Parse(jobUUID); err != nil {
			return nil, fmt.Errorf("read outbox message %d: %w", m.ID, err)
		}
		if err := json.Unmarshal(headers, &m.Headers); err != nil {
			return nil, fmt.Errorf("read outbox message %d: decode headers: %w", m.ID, err)
		}
		if m.CreatedAt, err = parseTime(created); err != nil {
			return nil, fmt.Errorf("read outbox message %d: %w", m.ID, err)
		}
		m.Body = body
		msgs = append(msgs, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read outbox: %w", interpretError(err))
	}
	return msgs, nil
}
