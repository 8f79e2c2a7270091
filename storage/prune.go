package storage

import (
	"context"
	"errors"
	"fmt"
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

// PruneResult is what a prune removed, or would remove in a dry run.
type PruneResult struct {
	DryRun    bool      `json:"dry_run"`
	Retention string    `json:"retention"`
	At        time.Time `json:"at"`
	// Jobs are the jobs of each final state past their retention: removed (or prunable in a dry
	// run) and kept, and why.
	Jobs map[statemachine.State]PruneCount `json:"jobs"`
	// Rejected is the number of rejected messages removed (or to remove).
	Rejected int64 `json:"rejected"`
}

// PruneBatch is how many jobs or rejected messages one prune transaction removes at most.
const PruneBatch = 500

// Prune applies the retention r now: it removes, in batches of PruneBatch, a transaction each,
// the jobs of each final state created longer ago than r says (with their history, data and
// key-values) that are Prunable, and the rejected messages rejected longer ago than r says.
// With dryRun it removes nothing and counts what it would. pause is waited between batches, so
// that writers get the database between them. ErrPruneBusy is returned, with what was done, when
// another process prunes the same database.
func (s *Store) Prune(ctx context.Context, r Retention, dryRun bool, pause time.Duration) (PruneResult, error) {
	now := s.stamp(statemachine.Meta{}).ReceivedAt
	res := PruneResult{DryRun: dryRun, Retention: r.String(), At: now, Jobs: map[statemachine.State]PruneCount{}}
	for _, state := range []statemachine.State{statemachine.Finished, statemachine.Crashed} {
		age := r.Of(state)
		if age <= 0 {
			continue
		}
		before := now.Add(-age)
		count, err := s.backend.CountPrunable(ctx, state, before)
		if err != nil {
			return res, fmt.Errorf("prune %s jobs: %w", state, err)
		}
		if !dryRun {
			removed, err := batches(ctx, pause, func() (int64, error) { return s.backend.PruneJobs(ctx, state, before, PruneBatch) })
			count.Prunable = removed
			res.Jobs[state] = count
			if err != nil {
				return res, fmt.Errorf("prune %s jobs: %w", state, err)
			}
		}
		res.Jobs[state] = count
	}
	if r.Rejected > 0 {
		before := now.Add(-r.Rejected)
		var err error
		if dryRun {
			res.Rejected, err = s.backend.CountRejected(ctx, before)
		} else {
			res.Rejected, err = batches(ctx, pause, func() (int64, error) { return s.backend.PruneRejected(ctx, before, PruneBatch) })
		}
		if err != nil {
			return res, fmt.Errorf("prune rejected messages: %w", err)
		}
	}
	return res, nil
}

// batches calls prune until it removes less than a batch, pausing in between, and returns the
// sum.
func batches(ctx context.Context, pause time.Duration, prune func() (int64, error)) (int64, error) {
	var total int64
	for {
		n, err := prune()
		total += n
		if err != nil || n < PruneBatch {
			return total, err
		}
		select {
		case <-ctx.Done():
			return total, ctx.Err()
		case <-time.After(pause):
		}
	}
}
