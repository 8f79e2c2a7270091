// Package postgres is the PostgreSQL storage backend, on pgx v5 and pgxpool.
package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

var _ storage.Backend = (*Backend)(nil)

// Backend stores jobs in PostgreSQL. It is safe for concurrent use.
type Backend struct {
	pool *pgxpool.Pool
}

// Open connects to the database at url (postgres://…). Parameters the URL carries that pgx does
// not know, e.g. search_path, are sent as run-time parameters. It does not migrate.
func Open(ctx context.Context, url string) (*Backend, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return &Backend{pool: pool}, nil
}

// Pool is the connection pool, for what storage.Backend does not cover.
func (b *Backend) Pool() *pgxpool.Pool { return b.pool }

// Close closes the pool.
func (b *Backend) Close() error {
	b.pool.Close()
	return nil
}

// Ping checks that the database answers.
func (b *Backend) Ping(ctx context.Context) error { return interpretError(b.pool.Ping(ctx)) }

// InTx runs fn in a READ COMMITTED transaction; jobs are locked row by row with FOR UPDATE.
func (b *Backend) InTx(ctx context.Context, fn func(storage.Tx) error) error {
	return interpretError(pgx.BeginFunc(ctx, b.pool, func(tx pgx.Tx) error {
		return fn(&txn{tx: tx})
	}))
}

// Job returns the job with the given uuid or storage.ErrNotFound.
func (b *Backend) Job(ctx context.Context, id uuid.UUID) (statemachine.Job, error) {
	return readJob(ctx, b.pool, `WHERE uuid = $1`, id)
}

// History returns the job's history, oldest first.
func (b *Backend) History(ctx context.Context, id uuid.UUID) ([]storage.HistoryEntry, error) {
	rows, err := b.pool.Query(ctx, `SELECT id, job_uuid, kind, verdict, origin, message_id, actor,
		state_from, state_to, detail, recorded_at FROM job_events WHERE job_uuid = $1 ORDER BY id`, id)
	if err != nil {
		return nil, interpretError(err)
	}
	entries, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.HistoryEntry, error) {
		var e storage.HistoryEntry
		var detail []byte
		err := row.Scan(&e.ID, &e.JobUUID, &e.Kind, &e.Verdict, &e.Origin, &e.MessageID, &e.Actor,
			&e.StateFrom, &e.StateTo, &detail, &e.RecordedAt)
		e.Detail = detail
		e.RecordedAt = e.RecordedAt.UTC()
		return e, err
	})
	return entries, interpretError(err)
}

// Outbox returns up to limit unpublished messages with id > afterID, in id order.
func (b *Backend) Outbox(ctx context.Context, afterID int64, limit int) ([]storage.OutboxMessage, error) {
	rows, err := b.pool.Query(ctx, `SELECT id, message_id, job_uuid, topic, body, headers, created_at
		FROM outbox WHERE published_at IS NULL AND id > $1 ORDER BY id LIMIT $2`, afterID, limit)
	if err != nil {
		return nil, interpretError(err)
	}
	msgs, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (storage.OutboxMessage, error) {
		var m storage.OutboxMessage
		var headers []byte
		if err := row.Scan(&m.ID, &m.MessageID, &m.JobUUID, &m.Topic, &m.Body, &headers, &m.CreatedAt); err != nil {
			return m, err
		}
		m.CreatedAt = m.CreatedAt.UTC()
		return m, json.Unmarshal(headers, &m.Headers)
	})
	return msgs, interpretError(err)
}

// txn implements storage.Tx over one pgx transaction.
type txn struct {
	tx pgx.Tx
}

func (t *txn) LockJob(ctx context.Context, id uuid.UUID) (statemachine.Job, error) {
	return readJob(ctx, t.tx, `WHERE uuid = $1 FOR UPDATE`, id)
}

func (t *txn) JobByRequestID(ctx context.Context, requestID string) (statemachine.Job, error) {
	return readJob(ctx, t.tx, `WHERE request_id = $1`, requestID)
}

func (t *txn) InsertJob(ctx context.Context, j statemachine.Job) error {
	c := crashColumns(j.Crash)
	_, err := t.tx.Exec(ctx, `INSERT INTO jobs (uuid, state, taskname, item, item_type, arch,
		source_msg_id, source_topic, request_id, runner, artifacts_url, log_url,
		crash_notify, crash_cause, crash_fatal, attempt, rescheduled_from, rescheduled_to,
		created_at, started_at, finished_at, updated_at, state_entered_at)
		VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22,$23)`,
		j.UUID, j.State, j.TaskName, j.Item, j.ItemType, j.Arch,
		sourceMsgID(j.Source), sourceTopic(j.Source), j.RequestID, runnerJSON(j.Runner),
		nullString(j.ArtifactsURL), nullString(j.LogURL), c.notify, c.cause, c.fatal,
		j.Attempt, j.RescheduledFrom, j.RescheduledTo, j.CreatedAt, j.StartedAt, j.FinishedAt, j.UpdatedAt,
		j.StateEnteredAt)
	if err != nil {
		return interpretError(err)
	}
	if err := insertKeyVals(ctx, t.tx, "job_data", j.UUID, j.Data); err != nil {
		return err
	}
	if j.Crash != nil { // a job copied (or created) crashed
		return insertKeyVals(ctx, t.tx, "crash_keyvals", j.UUID, j.Crash.KeyVals)
	}
	return nil
}

func (t *txn) UpdateJob(ctx context.Context, j statemachine.Job) error {
	c := crashColumns(j.Crash)
	tag, err := t.tx.Exec(ctx, `UPDATE jobs SET state = $2, runner = $3, artifacts_url = $4,
		log_url = $5, crash_notify = $6, crash_cause = $7, crash_fatal = $8, attempt = $9,
		rescheduled_from = $10, rescheduled_to = $11, started_at = $12, finished_at = $13,
		updated_at = $14, state_entered_at = $15 WHERE uuid = $1`,
		j.UUID, j.State, runnerJSON(j.Runner), nullString(j.ArtifactsURL), nullString(j.LogURL),
		c.notify, c.cause, c.fatal, j.Attempt, j.RescheduledFrom, j.RescheduledTo,
		j.StartedAt, j.FinishedAt, j.UpdatedAt, j.StateEnteredAt)
	if err != nil {
		return interpretError(err)
	}
	if tag.RowsAffected() == 0 {
		return storage.ErrNotFound
	}
	if _, err := t.tx.Exec(ctx, `DELETE FROM crash_keyvals WHERE job_uuid = $1`, j.UUID); err != nil {
		return interpretError(err)
	}
	if j.Crash != nil {
		return insertKeyVals(ctx, t.tx, "crash_keyvals", j.UUID, j.Crash.KeyVals)
	}
	return nil
}

func (t *txn) AppendHistory(ctx context.Context, e storage.HistoryEntry) error {
	_, err := t.tx.Exec(ctx, `INSERT INTO job_events (job_uuid, kind, verdict, origin, message_id,
		actor, state_from, state_to, detail, recorded_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)`,
		e.JobUUID, e.Kind, e.Verdict, e.Origin, e.MessageID, e.Actor, e.StateFrom, e.StateTo,
		jsonOrNil(e.Detail), e.RecordedAt)
	return interpretError(err)
}

func (t *txn) AppendOutbox(ctx context.Context, m storage.OutboxMessage) error {
	headers, err := json.Marshal(m.Headers)
	if err != nil {
		return err
	}
	_, err = t.tx.Exec(ctx, `INSERT INTO outbox (message_id, job_uuid, topic, body, headers, created_at)
		VALUES ($1,$2,$3,$4,$5,$6)`, m.MessageID, m.JobUUID, m.Topic, []byte(m.Body), string(headers), m.CreatedAt)
	return interpretError(err)
}

// querier is what pgxpool.Pool and pgx.Tx have in common.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

const jobColumns = `uuid, state, taskname, item, item_type, arch, source_msg_id, source_topic,
	request_id, runner, artifacts_url, log_url, crash_notify, crash_cause, crash_fatal, attempt,
	rescheduled_from, rescheduled_to, created_at, started_at, finished_at, updated_at,
	state_entered_at`

func readJob(ctx context.Context, q querier, where string, arg any) (statemachine.Job, error) {
	j, err := scanJob(q.QueryRow(ctx, `SELECT `+jobColumns+` FROM jobs `+where, arg))
	if err != nil {
		return j, interpretError(err)
	}
	if j.Data, err = readKeyVals(ctx, q, "job_data", j.UUID); err != nil {
		return j, err
	}
	if j.Crash != nil {
		if j.Crash.KeyVals, err = readKeyVals(ctx, q, "crash_keyvals", j.UUID); err != nil {
			return j, err
		}
		if j.Crash.KeyVals == nil {
			j.Crash.KeyVals = statemachine.KeyVals{}
		}
	}
	return j, nil
}

func scanJob(row pgx.Row) (statemachine.Job, error) {
	var (
		j                                  statemachine.Job
		srcID, srcTopic, artifacts, logURL *string
		notify, cause                      *string
		fatal                              *bool
		runner                             []byte
		created, updated, entered          time.Time
		started, finished                  *time.Time
		rescheduledFrom, rescheduledTo     *uuid.UUID
	)
	err := row.Scan(&j.UUID, &j.State, &j.TaskName, &j.Item, &j.ItemType, &j.Arch, &srcID, &srcTopic,
		&j.RequestID, &runner, &artifacts, &logURL, &notify, &cause, &fatal, &j.Attempt,
		&rescheduledFrom, &rescheduledTo, &created, &started, &finished, &updated, &entered)
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
	return j, nil
}

func readKeyVals(ctx context.Context, q querier, table string, id uuid.UUID) (statemachine.KeyVals, error) {
	rows, err := q.Query(ctx, `SELECT key, value FROM `+table+` WHERE job_uuid = $1 ORDER BY key, position`, id)
	if err != nil {
		return nil, interpretError(err)
	}
	defer rows.Close()
	var kv statemachine.KeyVals
	for rows.Next() {
		var k, v string
		if err := rows.Scan(&k, &v); err != nil {
			return nil, interpretError(err)
		}
		if kv == nil {
			kv = statemachine.KeyVals{}
		}
		kv[k] = append(kv[k], v)
	}
	return kv, interpretError(rows.Err())
}

func insertKeyVals(ctx context.Context, tx pgx.Tx, table string, id uuid.UUID, kv statemachine.KeyVals) error {
	if len(kv) == 0 {
		return nil
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
	_, err := tx.Exec(ctx, `INSERT INTO `+table+` (job_uuid, key, position, value)
		SELECT $1, k, p, v FROM unnest($2::text[], $3::int[], $4::text[]) AS u(k, p, v)`,
		id, keys, positions, values)
	return interpretError(err)
}

// interpretError maps pgx errors onto the storage sentinels, in one place (SQLSTATE codes from
// PostgreSQL's Appendix A, "PostgreSQL Error Codes"):
//   - 23505 unique_violation: ErrConflict; 23503 foreign_key_violation: ErrNotFound (the job
//     referred to does not exist); these are the conflicts the design expects;
//   - class 22 (data exception), class 54 (program limit exceeded, e.g. an index row too
//     large) and any other class 23 (integrity constraint) violation: ErrInvalidData, for the
//     value itself is refused;
//   - class 08 (connection exception), 57P01-57P03 (shutting down, cannot connect now), 53300
//     (too many connections), and failures to reach or keep the server at all: ErrUnavailable;
//   - anything else, serialization failures and deadlocks (class 40) included, as it is:
//     transient, and worth a retry.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, pgx.ErrNoRows) {
		return storage.ErrNotFound
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		switch code := pgErr.Code; {
		case code == "23505":
			return fmt.Errorf("%s: %w", pgErr.ConstraintName, storage.ErrConflict)
		case code == "23503":
			return fmt.Errorf("%s: %w", pgErr.ConstraintName, storage.ErrNotFound)
		case strings.HasPrefix(code, "22"), strings.HasPrefix(code, "54"), strings.HasPrefix(code, "23"):
			return fmt.Errorf("%s (SQLSTATE %s): %w", pgErr.Message, code, storage.ErrInvalidData)
		case strings.HasPrefix(code, "08"), code == "57P01", code == "57P02", code == "57P03", code == "53300":
			return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
		}
		return err
	}
	var connectErr *pgconn.ConnectError
	var netErr net.Error
	if errors.As(err, &connectErr) || errors.As(err, &netErr) || errors.Is(err, io.EOF) ||
		errors.Is(err, io.ErrUnexpectedEOF) || pgconn.SafeToRetry(err) {
		return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
	}
	return err
}

type crashCols struct {
	notify, cause *string
	fatal         *bool
}

func crashColumns(c *statemachine.Crash) crashCols {
	if c == nil {
		return crashCols{}
	}
	n, ca, f := string(c.Notify), string(c.Cause), c.Fatal
	return crashCols{notify: &n, cause: &ca, fatal: &f}
}

func sourceMsgID(s *statemachine.Source) *string {
	if s == nil {
		return nil
	}
	return &s.MsgID
}

func sourceTopic(s *statemachine.Source) *string {
	if s == nil {
		return nil
	}
	return &s.Topic
}

func runnerJSON(r *statemachine.Runner) *string {
	if r == nil {
		return nil
	}
	b, _ := json.Marshal(r)
	s := string(b)
	return &s
}

func jsonOrNil(b json.RawMessage) *string {
	if len(b) == 0 {
		return nil
	}
	s := string(b)
	return &s
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
