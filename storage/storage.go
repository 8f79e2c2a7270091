// Package storage keeps jobs, their history and the outbox of job-state messages. Store holds
// the logic every backend shares (run the state machine inside a transaction, record history,
// queue messages); a Backend (storage/postgres, storage/sqlite) supplies the transactions and
// queries. storage/storagetest states the semantics once and every backend passes it.
package storage

import (
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// Sentinel errors that backends map their driver errors onto; callers use errors.Is.
var (
	// ErrNotFound means the job (or row) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrConflict means a unique key (job uuid, request id) is already taken.
	ErrConflict = errors.New("conflict")
	// ErrInvalidData means the database refuses a value itself (PostgreSQL's data exceptions,
	// class 22, and program limits, class 54, such as an index entry too large; a check or
	// not-null constraint): writing it again can never succeed, unlike a timeout or a lost
	// lock. Callers reject what brought it rather than retry.
	ErrInvalidData = errors.New("invalid data")
	// ErrUnavailable means the database cannot be reached or is not taking work right now
	// (connection refused or lost, shutting down, too many connections, locked beyond the
	// busy timeout): a retry later may well succeed. The HTTP API answers 503.
	ErrUnavailable = errors.New("database unavailable")
)

// HistoryEntry is one event in a job's history: applied, duplicate, late or conflicting.
type HistoryEntry struct {
	ID         int64                  `json:"id"`
	JobUUID    uuid.UUID              `json:"job_uuid"`
	Kind       statemachine.EventKind `json:"kind"`
	Verdict    statemachine.Verdict   `json:"verdict"`
	Origin     statemachine.Origin    `json:"source"`
	MessageID  string                 `json:"message_id"`
	Actor      string                 `json:"actor"`
	StateFrom  statemachine.State     `json:"state_from"` // empty for a create
	StateTo    statemachine.State     `json:"state_to"`
	Detail     json.RawMessage        `json:"detail"` // the event's payload as received
	RecordedAt time.Time              `json:"recorded_at"`
}

// OutboxMessage is a job-state message waiting to be published (CONTRACT section 3, Out).
// Everything about it, its message id included, is fixed when it is written, so that a message
// re-sent after a crash is byte-for-byte the same.
type OutboxMessage struct {
	ID        int64             // position in the outbox, increasing in commit order per job
	MessageID uuid.UUID         // the AMQP message_id; stable across re-sends
	JobUUID   uuid.UUID         //
	Topic     string            // full topic: prefix + suffix
	Body      json.RawMessage   // the job plus previous_state
	Headers   map[string]string // fedora_messaging_schema, severity and execdb_* routing headers
	CreatedAt time.Time
}

// Backend is what a database supplies. Implementations are safe for concurrent use.
type Backend interface {
	// InTx runs fn in one transaction, committing when fn returns nil and rolling back
	// otherwise. The Tx must not be used after fn returns.
	InTx(ctx context.Context, fn func(Tx) error) error
	// Job returns the job with the given uuid or ErrNotFound.
	Job(ctx context.Context, id uuid.UUID) (statemachine.Job, error)
	// History returns the job's history, oldest first (empty for an unknown job).
	History(ctx context.Context, id uuid.UUID) ([]HistoryEntry, error)
	// Outbox returns up to limit unpublished messages with ID > afterID, in ID order.
	Outbox(ctx context.Context, afterID int64, limit int) ([]OutboxMessage, error)
	// Ping checks that the database answers.
	Ping(ctx context.Context) error
	// Close releases the backend's connections.
	Close() error

	Searcher    // search.go
	Bus         // bus.go
	Rescheduler // reschedule.go
	Pruner      // prune.go
	Exporter    // copy.go
}

// Tx is the work one transaction can do. A Tx is used by one goroutine.
type Tx interface {
	// LockJob returns the job and keeps other writers of it waiting until the transaction
	// ends; ErrNotFound if it does not exist.
	LockJob(ctx context.Context, id uuid.UUID) (statemachine.Job, error)
	// JobByRequestID returns the job created by the request id or ErrNotFound.
	JobByRequestID(ctx context.Context, requestID string) (statemachine.Job, error)
	// InsertJob stores a new job with its data; ErrConflict if its uuid or request id is taken.
	InsertJob(ctx context.Context, job statemachine.Job) error
	// UpdateJob writes back a job read with LockJob, crash keyvals included.
	UpdateJob(ctx context.Context, job statemachine.Job) error
	// AppendHistory adds an entry to a job's history.
	AppendHistory(ctx context.Context, e HistoryEntry) error
	// AppendOutbox queues a message for publishing.
	AppendOutbox(ctx context.Context, m OutboxMessage) error

	BusTx        // bus.go
	RescheduleTx // reschedule.go
}
