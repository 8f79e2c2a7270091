package jobs

import (
	"context"
	"fmt"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
)

// PruneResult is what a prune removed, or would remove in a dry run.
type PruneResult struct {
	DryRun    bool      `json:"dry_run"`
	Retention string    `json:"retention"`
	At        time.Time `json:"at"`
	// Jobs are the jobs of each final state past their retention: removed (or prunable in a dry
	// run) and kept, and why.
	Jobs map[statemachine.State]storage.PruneCount `json:"jobs"`
	// Rejected is the number of rejected messages removed (or to remove).
	Rejected int64 `json:"rejected"`
}

// PruneBatch is how many jobs or rejected messages one prune transaction removes at most.
const PruneBatch = 500

// Prune applies the retention r now: it removes, in batches of PruneBatch, a transaction each,
// the jobs of each final state created longer ago than r says (with their history, data and
// key-values) that are Prunable, and the rejected messages rejected longer ago than r says.
// With dryRun it removes nothing and counts what it would. pause is waited between batches, so
// that writers get the database between them. storage.ErrPruneBusy is returned, with what was done, when
// another process prunes the same database.
func (s *Service) Prune(ctx context.Context, r Retention, dryRun bool, pause time.Duration) (PruneResult, error) {
	now := s.stamp(statemachine.Meta{}).ReceivedAt
	res := PruneResult{DryRun: dryRun, Retention: r.String(), At: now, Jobs: map[statemachine.State]storage.PruneCount{}}
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
