package storage

import (
	"context"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// Rescheduler is what the watchdog and rescheduling need from a backend beyond the core.
// Implementations are safe for concurrent use.
type Rescheduler interface {
	// RetryStats counts, for the crashed jobs matching q.Filter that were rescheduled, how their
	// successors fared, grouped and bucketed as q says (on the crashed jobs' fields).
	RetryStats(ctx context.Context, q StatsQuery) (RetryStatsResult, error)
}

// RescheduleTx is what the sweeps (the watchdog, the automatic rescheduler) need inside a
// transaction beyond the core.
// A sweep handles one job a transaction, so that one job's failure cannot roll back another's
// change. Each Claim method returns the first job (in the order it names) that matches and is
// not in skip, and locks it until the transaction ends; it passes over a job another
// transaction holds, so that concurrent sweeps (several serve processes on one database) get
// different jobs, and returns only a job that, as locked, still matches. With none left it
// returns ErrNotFound. skip holds the jobs the sweep already tried and must not get again.
type RescheduleTx interface {
	// ClaimOverdue claims a job in state (RUNNING or SCHEDULED) that entered it before the given
	// time by ExecDB's clock (Job.StateEnteredAt), the longest in it first.
	ClaimOverdue(ctx context.Context, state statemachine.State, before time.Time, skip []uuid.UUID) (uuid.UUID, error)
	// ClaimUndecided claims a CRASHED job without an automatic-reschedule mark, least recently
	// updated first.
	ClaimUndecided(ctx context.Context, skip []uuid.UUID) (uuid.UUID, error)
	// ClaimDue claims a job marked AutoPlanned whose due time is at or before now, soonest
	// due first.
	ClaimDue(ctx context.Context, now time.Time, skip []uuid.UUID) (uuid.UUID, error)
}

// RetryStatsRow is one group of a retry statistics answer.
type RetryStatsRow struct {
	// Group maps each group_by field to the crashed jobs' value; nil where a job lacks it.
	Group map[Field]*string `json:"group"`
	// Bucket is the start of the time bucket (of the crashed jobs' created_at), when bucketing.
	Bucket *time.Time `json:"bucket,omitempty"`
	// Rescheduled counts the crashed jobs that got a successor.
	Rescheduled int64 `json:"rescheduled"`
	// Finished, Crashed and Pending count the successors by their state: FINISHED, CRASHED,
	// and SCHEDULED or RUNNING.
	Finished int64 `json:"finished"`
	Crashed  int64 `json:"crashed"`
	Pending  int64 `json:"pending"`
	// SuccessRate is Finished / (Finished + Crashed): how often a retry helped; nil while no
	// successor has ended.
	SuccessRate *float64 `json:"success_rate"`
}

// RetryStatsResult is a retry statistics answer: Total rescheduled crashed jobs matched, Rows
// ordered by Rescheduled (descending), then group values and bucket.
type RetryStatsResult struct {
	Total int64           `json:"total"`
	Rows  []RetryStatsRow `json:"data"`
}
