package postgres

import (
	"cmp"
	"context"
	"encoding/binary"
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

// jobLockClass is the first key of the two-key advisory locks Load takes on job uuids
// (Load.Keys); the single-key locks (migrations, the relay) live in another key space.
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

// lockKeysSQL takes transaction-scoped advisory locks on $2 (lockKeys), in the order given
// (callers sort them, so that two transactions cannot wait for each other).
const lockKeysSQL = `SELECT count(pg_advisory_xact_lock($1::int4, k))
	FROM unnest($2::int4[]) WITH ORDINALITY AS u(k, n)`

func lockKeys(ids []uuid.UUID) []int32 {
	keys := make([]int32, len(ids))
	for i, id := range ids {
		keys[i] = lockKey(id)
	}
	return keys
}

// lockKey is the second advisory lock key of a job uuid. Two uuids may share one; that only
// makes one transaction wait for the other.
func lockKey(id uuid.UUID) int32 {
	h := fnv.New32a()
	h.Write(id[:])
	return int32(binary.BigEndian.Uint32(h.Sum(nil)))
}

// markSeenSQL records the message ids $1 as received at $2 and returns those that are new.
const markSeenSQL = `INSERT INTO bus_seen (message_id, received_at)
	SELECT id, $2 FROM unnest($1::text[]) AS u(id)
	ON CONFLICT (message_id) DO NOTHING RETURNING message_id`

// freshOf reports, for each of ids, whether it is among those inserted.
func freshOf(ids, inserted []string) []bool {
	isNew := make(map[string]bool, len(inserted))
	for _, id := range inserted {
		isNew[id] = true
	}
	fresh := make([]bool, len(ids))
	for i, id := range ids {
		fresh[i] = isNew[id]
	}
	return fresh
}

const parkedColumns = `id, job_uuid, origin, message_id, topic, payload, body, received_at, parked_at`

// TakeExpired removes and returns up to limit events parked before the given time; rows another
// transaction is taking are skipped.
func (t *txn) TakeExpired(ctx context.Context, before time.Time, limit int) ([]storage.ParkedEvent, error) {
	rows, err := t.Query(ctx, `DELETE FROM parked_events WHERE id IN (
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
