// Package storage is the seam between the job service (package jobs) and a database: the
// types that are stored (history entries, outbox, parked and rejected messages, filters and
// stats), Backend (the reads and maintenance that need no caller's transaction) and Tx (the
// locks and reads of a unit of work, and its one Write). A backend (storage/postgres,
// storage/sqlite) implements them; storage/storagetest states what each method must do and
// every backend passes it. Nothing here decides what a job may do.
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

// Backend is what a database supplies: transactions whose one write is Tx.Write, and the reads
// and maintenance that need no transaction of the caller. Implementations are safe for
// concurrent use; storagetest states what each method must do.
type Backend interface {
	// InTx runs fn in one transaction, committing when fn returns nil and rolling back
	// otherwise. The Tx must not be used after fn returns.
	InTx(ctx context.Context, fn func(Tx) error) error
	// Job returns the job with the given uuid or ErrNotFound.
	Job(ctx context.Context, id uuid.UUID) (statemachine.Job, error)
	// History returns the job's history, oldest first (empty for an unknown job).
	History(ctx context.Context, id uuid.UUID) ([]HistoryEntry, error)
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

// Tx is one transaction: it reads and locks what a unit of work needs, then writes everything
// the unit decided with one Write. A Tx is used by one goroutine.
type Tx interface {
	// Load locks and reads what a unit of work needs before it decides, every step l asks for
	// in one call (see Load); PostgreSQL sends it, with the transaction's BEGIN, in one round
	// trip.
	Load(ctx context.Context, l Load) (Loaded, error)
	// TakeExpired removes and returns up to limit events parked before the given time, oldest
	// first. Concurrent callers get different events.
	TakeExpired(ctx context.Context, before time.Time, limit int) ([]ParkedEvent, error)

	RescheduleTx // reschedule.go: the sweeps' claims

	// Write stores what the unit of work decided, in this order: new jobs (with their data,
	// and crash key-values when created crashed), changed jobs, history, outbox messages,
	// parked events and rejected messages, each list in its order (history and outbox ids
	// increase along their lists). A taken uuid or request id is ErrConflict; a value the
	// database refuses is ErrInvalidData.
	Write(ctx context.Context, w Writes) error
}

// Load is what a unit of work locks and reads before it decides (Tx.Load), in the order of
// its fields. An empty list skips its step.
type Load struct {
	// Keys are uuids to lock whether a job with that uuid exists or not, until the
	// transaction ends: it serialises parking an event with creating its job, and two creates
	// of one uuid. Sorted; a unit locks every key it needs in its first Load, before any job.
	Keys []uuid.UUID
	// SeenIDs are message ids to record as received at SeenAt; Loaded.Fresh says, for each,
	// whether it is new (false for an id recorded before). Distinct.
	SeenIDs []string
	SeenAt  time.Time
	// Jobs are uuids of jobs to lock until the transaction ends (a row lock on PostgreSQL;
	// SQLite's one writer holds the whole database) and read; those that exist are in
	// Loaded.Jobs. Sorted.
	Jobs []uuid.UUID
	// RequestIDs are request ids whose jobs to read (not locked): Loaded.ByRequestID.
	RequestIDs []string
	// Parked are uuids whose parked events to take (remove and return, oldest first):
	// Loaded.Parked. An event taken and not applied must be parked again (Writes.Parked).
	Parked []uuid.UUID
}

// Loaded is what Tx.Load found, each field for the one of Load named alike; jobs come with
// their data and crash key-values.
type Loaded struct {
	Fresh       []bool
	Jobs        map[uuid.UUID]statemachine.Job
	ByRequestID map[string]statemachine.Job
	Parked      []ParkedEvent
}

// Writes is everything one unit of work writes.
type Writes struct {
	NewJobs  []statemachine.Job // inserted whole, marks and all
	Changed  []Change           // existing jobs written back
	History  []HistoryEntry
	Outbox   []OutboxMessage
	Parked   []ParkedEvent
	Rejected []RejectedMessage
}

// Change is an existing job written back: every column that changes in a job's life (state,
// runner, urls, crash, lineage, times, automatic-reschedule mark); the trigger's fields and
// data never change.
type Change struct {
	Job statemachine.Job
	// Crashed reports that the job became CRASHED in this unit: its crash key-values are
	// written (they never change afterwards).
	Crashed bool
}

// Empty reports whether w writes nothing.
func (w Writes) Empty() bool {
	return len(w.NewJobs)+len(w.Changed)+len(w.History)+len(w.Outbox)+len(w.Parked)+len(w.Rejected) == 0
}
