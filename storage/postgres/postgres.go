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
	// tallyRows bounds the rows a stats question is counted from in Go (see Stats).
	tallyRows int
}

// DefaultMaxConns is the size of the connection pool when the URL does not set pool_max_conns.
const DefaultMaxConns = 16

// Open connects to the database at url (postgres://…). Parameters the URL carries that pgx does
// not know, e.g. search_path, are sent as run-time parameters. It does not migrate.
func Open(ctx context.Context, url string) (*Backend, error) {
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("parse postgres url: %w", err)
	}
	if !strings.Contains(url, "pool_max_conns") {
		// pgxpool's default, max(4, CPUs), would queue the HTTP lanes, the bus workers and
		// the readers behind each other on a small machine.
		cfg.MaxConns = DefaultMaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("connect to postgres: %w", err)
	}
	return &Backend{pool: pool, tallyRows: tallyRows}, nil
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
