package storage

import (
	"context"
	"errors"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
)

// Pruner is what retention needs from a backend (CONTRACT section 7, v1.1). Each call is its own
// short transaction, so that pruning a million jobs never holds a long lock: writers get their
// turn between batches. Implementations are safe for concurrent use; of several processes
// pruning one database at once, one prunes a batch at a time and the others find nothing to do
// (ErrPruneBusy).
type Pruner interface {
	// PruneJobs deletes up to limit jobs in state (FINISHED or CRASHED) created before the given
	// time, oldest first, with their history, data and crash key-values, and returns how many.
	// It keeps every job that is not Prunable.
	PruneJobs(ctx context.Context, state statemachine.State, before time.Time, limit int) (int64, error)
	// CountPrunable counts the jobs in state created before the given time: those PruneJobs
	// would delete, and those it keeps and why.
	CountPrunable(ctx context.Context, state statemachine.State, before time.Time) (PruneCount, error)
	// PruneRejected deletes up to limit rejected messages rejected before the given time,
	// oldest first, and returns how many; CountRejected counts them.
	PruneRejected(ctx context.Context, before time.Time, limit int) (int64, error)
	CountRejected(ctx context.Context, before time.Time) (int64, error)
}

// ErrPruneBusy is a prune batch that found another process pruning the database: it did
// nothing, and leaves the work to that process.
var ErrPruneBusy = errors.New("another process is pruning")

// The rule of retention, which every backend's PruneJobs and CountPrunable keep: a job in a
// final state, past its retention, is removed unless
//   - its successor is still pending (SCHEDULED or RUNNING): the lineage of a retry in
//     progress stays whole;
//   - it is CRASHED and the automatic rescheduler has not decided about it yet, or planned a
//     successor that is not made yet;
//   - the outbox still has a message about it to publish.

// PruneCount is what a prune finds among the jobs of one state past their retention.
type PruneCount struct {
	Prunable int64 `json:"prunable"` // what PruneJobs deletes
	// Kept, and why.
	SuccessorPending  int64 `json:"kept_successor_pending"`
	ReschedulePending int64 `json:"kept_reschedule_pending"`
	OutboxPending     int64 `json:"kept_unpublished"`
}
