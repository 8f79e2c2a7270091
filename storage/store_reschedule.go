package storage

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// Rescheduling and the watchdog (CONTRACT section 4).
//
// Exactly once with several processes on one database: every sweep claims its jobs with row
// locks that skip what another transaction holds (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite
// runs one write transaction at a time anyway), re-checks under the lock what made it pick the
// job, and changes the job with a guarded write in the same transaction as its history and
// outbox message. A successor's request id is derived from its parent, so even a bug in all of
// that could not make two successors of one job: the second insert would break the unique key.

// RescheduleOptions says how to reschedule.
type RescheduleOptions struct {
	// Force reschedules a fatal crash too.
	Force bool
	// Reason is free text from whoever asks, kept in both jobs' history.
	Reason string
}

// RescheduleResult is the outcome of rescheduling one job.
type RescheduleResult struct {
	Parent    statemachine.Job // the crashed job, linked to its successor
	Successor statemachine.Job
	// Created is false when the job had been rescheduled before: Successor is that one.
	Created bool
}

// RefusedError is the answer for a job that cannot be rescheduled: not crashed, or a fatal
// crash without force.
type RefusedError struct {
	Job    statemachine.Job
	Reason statemachine.SkipReason
}

func (e *RefusedError) Error() string {
	switch e.Reason {
	case statemachine.SkipNotCrashed:
		return fmt.Sprintf("job %s is %s: only a CRASHED job can be rescheduled", e.Job.UUID, e.Job.State)
	case statemachine.SkipFatal:
		return fmt.Sprintf("job %s crashed fatally: rescheduling it needs force", e.Job.UUID)
	}
	return fmt.Sprintf("job %s cannot be rescheduled: %s", e.Job.UUID, e.Reason)
}

// why says who made a successor, in the history.
const (
	whyManual    = "manual"
	whyBulk      = "bulk"
	whyAutomatic = "automatic"
)

// Reschedule makes the successor of the CRASHED job with the given uuid: a new SCHEDULED job
// with the same task, item, item type, arch, data and source, the next attempt, linked both
// ways. Both jobs, their history entries and the successor's execdb.job.scheduled message
// commit together. A job rescheduled before answers its successor (Created false, and a
// duplicate entry in its history). A job that is not CRASHED, or whose crash is fatal without
// opts.Force, is a *RefusedError; an unknown job ErrNotFound.
func (s *Store) Reschedule(ctx context.Context, id uuid.UUID, opts RescheduleOptions, meta statemachine.Meta) (RescheduleResult, error) {
	meta = s.stamp(meta)
	var res RescheduleResult
	err := s.backend.InTx(ctx, func(tx Tx) error {
		var err error
		res, err = s.reschedule(ctx, tx, id, opts, whyManual, meta, true)
		return err
	})
	if err != nil {
		return RescheduleResult{}, fmt.Errorf("reschedule job %s: %w", id, err)
	}
	return res, nil
}

// reschedule does the work of Reschedule inside tx. With recordDuplicate, a job that already
// has a successor gets a duplicate entry in its history.
func (s *Store) reschedule(ctx context.Context, tx Tx, id uuid.UUID, opts RescheduleOptions, why string, meta statemachine.Meta, recordDuplicate bool) (RescheduleResult, error) {
	parent, err := tx.LockJob(ctx, id)
	if err != nil {
		return RescheduleResult{}, err
	}
	detail := map[string]any{"why": why, "force": opts.Force}
	if opts.Reason != "" {
		detail["reason"] = opts.Reason
	}
	switch skip := statemachine.CanReschedule(parent, opts.Force); skip {
	case "":
	case statemachine.SkipAlreadyRescheduled:
		successor, err := tx.LockJob(ctx, *parent.RescheduledTo)
		if err != nil {
			return RescheduleResult{}, fmt.Errorf("successor %s: %w", *parent.RescheduledTo, err)
		}
		if recordDuplicate {
			detail["successor"] = successor.UUID
			r := Result{Job: parent, Verdict: statemachine.Duplicate, StateFrom: parent.State}
			if err := tx.AppendHistory(ctx, s.history(id, statemachine.EventReschedule, r, meta, detail)); err != nil {
				return RescheduleResult{}, err
			}
		}
		return RescheduleResult{Parent: parent, Successor: successor}, nil
	default:
		return RescheduleResult{}, &RefusedError{Job: parent, Reason: skip}
	}

	newID, err := uuid.NewV7()
	if err != nil {
		return RescheduleResult{}, fmt.Errorf("issue uuid: %w", err)
	}
	n := statemachine.Successor(parent, newID)
	if taken, err := tx.JobByRequestID(ctx, n.RequestID); err == nil {
		// Only a client that named this request id itself can have taken it.
		return RescheduleResult{}, fmt.Errorf("request id %s is taken by job %s, not linked to it: %w", n.RequestID, taken.UUID, ErrConflict)
	} else if !errors.Is(err, ErrNotFound) {
		return RescheduleResult{}, err
	}
	successor, msg := statemachine.Create(n, meta.ReceivedAt)
	if err := tx.InsertJob(ctx, successor); err != nil {
		return RescheduleResult{}, err
	}
	linked := statemachine.LinkSuccessor(parent, newID, meta.ReceivedAt)
	if err := tx.UpdateJob(ctx, linked); err != nil {
		return RescheduleResult{}, err
	}
	detail["successor"] = newID
	detail["attempt"] = successor.Attempt
	r := Result{Job: linked, Verdict: statemachine.Applied, StateFrom: parent.State}
	if err := tx.AppendHistory(ctx, s.history(id, statemachine.EventReschedule, r, meta, detail)); err != nil {
		return RescheduleResult{}, err
	}
	created := createDetail(n)
	created["why"] = why
	created["force"] = opts.Force
	if opts.Reason != "" {
		created["reason"] = opts.Reason
	}
	r = Result{Job: successor, Verdict: statemachine.Applied, Created: true}
	if err := tx.AppendHistory(ctx, s.history(newID, statemachine.EventCreate, r, meta, created)); err != nil {
		return RescheduleResult{}, err
	}
	if err := s.queue(ctx, tx, msg, meta.ReceivedAt); err != nil {
		return RescheduleResult{}, err
	}
	return RescheduleResult{Parent: linked, Successor: successor, Created: true}, nil
}

// MaxBulk is the most jobs one bulk reschedule may match.
const MaxBulk = 10000

// BulkOutcome is what a bulk reschedule did with one job.
type BulkOutcome string

// The outcomes of a bulk reschedule.
const (
	BulkRescheduled     BulkOutcome = "rescheduled"      // a successor was made
	BulkWouldReschedule BulkOutcome = "would_reschedule" // dry run: a successor would be made
	BulkSkipped         BulkOutcome = "skipped"          // see the reason
)

// BulkItem is one job a bulk reschedule matched.
type BulkItem struct {
	UUID      uuid.UUID               `json:"uuid"`
	TaskName  string                  `json:"taskname"`
	Item      string                  `json:"item"`
	Arch      string                  `json:"arch"`
	State     statemachine.State      `json:"state"`
	Attempt   int                     `json:"attempt"`
	Outcome   BulkOutcome             `json:"outcome"`
	Reason    statemachine.SkipReason `json:"reason,omitempty"` // why skipped
	Successor *uuid.UUID              `json:"successor"`        // the new one, or the one it had
}

// BulkResult is the answer of a bulk reschedule: every matched job, newest first.
type BulkResult struct {
	DryRun      bool       `json:"dry_run"`
	Force       bool       `json:"force"`
	Matched     int        `json:"matched"`
	Rescheduled int        `json:"rescheduled"` // or would be, in a dry run
	Skipped     int        `json:"skipped"`
	Items       []BulkItem `json:"data"`
	// Successors are the jobs made, for the caller's metrics and logs; not part of the answer.
	Successors []statemachine.Job `json:"-"`
}

// RescheduleBulk reschedules every job f matches, each in its own transaction as Reschedule
// does, and says per job what it did: rescheduled, or skipped because it is not crashed, its
// crash is fatal (without opts.Force) or it was rescheduled already. With dryRun it changes
// nothing and says what it would do. A filter matching more than MaxBulk jobs is refused
// before anything is done.
func (s *Store) RescheduleBulk(ctx context.Context, f Filter, dryRun bool, opts RescheduleOptions, meta statemachine.Meta) (BulkResult, error) {
	res := BulkResult{DryRun: dryRun, Force: opts.Force, Items: []BulkItem{}}
	var jobs []statemachine.Job
	page := Page{Limit: MaxLimit}
	for {
		batch, next, err := s.backend.Search(ctx, f, page)
		if err != nil {
			return res, fmt.Errorf("bulk reschedule: search: %w", err)
		}
		jobs = append(jobs, batch...)
		if len(jobs) > MaxBulk {
			return res, &schemas.FieldError{Field: "filter",
				Message: fmt.Sprintf("matches more than %d jobs; narrow it, e.g. with since", MaxBulk)}
		}
		if next == nil {
			break
		}
		page.After = next
	}
	meta = s.stamp(meta)
	for _, job := range jobs {
		item := BulkItem{UUID: job.UUID, TaskName: job.TaskName, Item: job.Item, Arch: job.Arch, State: job.State, Attempt: job.Attempt}
		if dryRun {
			if skip := statemachine.CanReschedule(job, opts.Force); skip != "" {
				item.Outcome, item.Reason, item.Successor = BulkSkipped, skip, job.RescheduledTo
			} else {
				item.Outcome = BulkWouldReschedule
			}
		} else {
			var r RescheduleResult
			err := s.backend.InTx(ctx, func(tx Tx) error {
				var err error
				r, err = s.reschedule(ctx, tx, job.UUID, opts, whyBulk, meta, false)
				return err
			})
			var refused *RefusedError
			switch {
			case errors.As(err, &refused):
				item.Outcome, item.Reason, item.State = BulkSkipped, refused.Reason, refused.Job.State
			case err != nil:
				return res, fmt.Errorf("bulk reschedule: job %s: %w", job.UUID, err)
			case r.Created:
				item.Outcome, item.Successor = BulkRescheduled, &r.Successor.UUID
				res.Successors = append(res.Successors, r.Successor)
			default:
				item.Outcome, item.Reason, item.Successor = BulkSkipped, statemachine.SkipAlreadyRescheduled, &r.Successor.UUID
			}
		}
		if item.Outcome == BulkSkipped {
			res.Skipped++
		} else {
			res.Rescheduled++
		}
		res.Items = append(res.Items, item)
	}
	res.Matched = len(res.Items)
	return res, nil
}

// sweepBatch is how many jobs one sweep transaction handles.
const sweepBatch = 100

// maxSweepBatches bounds the transactions of one sweep call, so that one call ends even when
// jobs keep coming; the next sweep goes on.
const maxSweepBatches = 100

// Watchdog crashes the jobs that are overdue at the store's current time (CONTRACT section 4):
// RUNNING longer than t.Run since they started, SCHEDULED longer than t.Schedule since they
// were created. Each crash is applied through the state machine with origin watchdog, with its
// history entry and its crash message, as any end; a job is re-checked under its row lock, so
// of several concurrent sweeps only one crashes it. It returns the applied crashes.
func (s *Store) Watchdog(ctx context.Context, t statemachine.Timeouts) ([]Result, error) {
	var crashed []Result
	for _, st := range []struct {
		state   statemachine.State
		timeout time.Duration
	}{{statemachine.Running, t.Run}, {statemachine.Scheduled, t.Schedule}} {
		if st.timeout <= 0 {
			continue
		}
		for range maxSweepBatches {
			var batch []Result
			claimed := 0
			err := s.backend.InTx(ctx, func(tx Tx) error {
				batch = batch[:0]
				meta := s.stamp(statemachine.Meta{Origin: statemachine.OriginWatchdog})
				ids, err := tx.ClaimOverdue(ctx, st.state, meta.ReceivedAt.Add(-st.timeout), sweepBatch)
				if err != nil {
					return err
				}
				claimed = len(ids)
				for _, id := range ids {
					job, err := tx.LockJob(ctx, id)
					if err != nil {
						return err
					}
					if job.State != st.state || !t.Overdue(job, meta.ReceivedAt) {
						continue
					}
					end := statemachine.WatchdogEnd(job, meta.ReceivedAt)
					ev := truncateTimes(statemachine.Event{Meta: meta, End: &end})
					d := statemachine.Apply(job, ev)
					if d.Verdict != statemachine.Applied {
						continue
					}
					r := Result{Job: d.Job, Verdict: d.Verdict, StateFrom: job.State}
					if err := tx.UpdateJob(ctx, d.Job); err != nil {
						return err
					}
					if err := tx.AppendHistory(ctx, s.history(id, statemachine.EventEnd, r, meta, ev.End)); err != nil {
						return err
					}
					if err := s.queue(ctx, tx, *d.Message, meta.ReceivedAt); err != nil {
						return err
					}
					batch = append(batch, r)
				}
				return nil
			})
			if err != nil {
				return crashed, fmt.Errorf("watchdog: %s jobs: %w", st.state, err)
			}
			crashed = append(crashed, batch...)
			if claimed < sweepBatch || len(batch) == 0 {
				break
			}
		}
	}
	return crashed, nil
}

// AutoDecisionResult is the automatic rescheduler's decision about one crashed job.
type AutoDecisionResult struct {
	Job      statemachine.Job
	Decision statemachine.AutoDecision
}

// DecideAutoReschedules makes the automatic rescheduler's decision about every crashed job it
// has not decided about yet, under policy p at the store's current time: planned (due after
// the policy's delay for the job's attempt) or declined (automatic rescheduling off, fatal,
// attempt limit reached, already rescheduled). The decision and its reason go into the job's
// history either way, exactly once per job however many processes sweep.
func (s *Store) DecideAutoReschedules(ctx context.Context, p statemachine.AutoPolicy) ([]AutoDecisionResult, error) {
	var out []AutoDecisionResult
	for range maxSweepBatches {
		var batch []AutoDecisionResult
		claimed := 0
		err := s.backend.InTx(ctx, func(tx Tx) error {
			batch = batch[:0]
			meta := s.stamp(statemachine.Meta{Origin: statemachine.OriginReschedule})
			ids, err := tx.ClaimUndecided(ctx, sweepBatch)
			if err != nil {
				return err
			}
			claimed = len(ids)
			for _, id := range ids {
				job, err := tx.LockJob(ctx, id)
				if err != nil {
					return err
				}
				if job.State != statemachine.Crashed {
					continue
				}
				d := statemachine.DecideAuto(job, p, meta.ReceivedAt)
				to, verdict := AutoDeclined, statemachine.Declined
				detail := map[string]any{"attempt": job.Attempt, "limit": p.Limit}
				var due *time.Time
				if d.Planned {
					to, verdict = AutoPlanned, statemachine.Applied
					at := d.DueAt.Truncate(time.Microsecond)
					due = &at
					detail["decision"] = "planned"
					detail["due_at"] = at
					detail["delay"] = d.Delay.String()
				} else {
					detail["decision"] = "declined"
					detail["reason"] = d.Reason
				}
				ok, err := tx.MarkAuto(ctx, id, AutoUndecided, to, due)
				if err != nil {
					return err
				}
				if !ok {
					continue // another sweep decided meanwhile
				}
				r := Result{Job: job, Verdict: verdict, StateFrom: job.State}
				if err := tx.AppendHistory(ctx, s.history(id, statemachine.EventAutoReschedule, r, meta, detail)); err != nil {
					return err
				}
				batch = append(batch, AutoDecisionResult{Job: job, Decision: d})
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("automatic reschedule decisions: %w", err)
		}
		out = append(out, batch...)
		if claimed < sweepBatch || len(batch) == 0 {
			break
		}
	}
	return out, nil
}

// RescheduleDue makes the successors of the planned automatic reschedules that are due at the
// store's current time, each exactly once, with origin reschedule. A job rescheduled by hand
// meanwhile gets a duplicate entry in its history instead. It returns what it did; Created
// tells new successors from found ones.
func (s *Store) RescheduleDue(ctx context.Context) ([]RescheduleResult, error) {
	var out []RescheduleResult
	for range maxSweepBatches {
		var batch []RescheduleResult
		claimed := 0
		err := s.backend.InTx(ctx, func(tx Tx) error {
			batch = batch[:0]
			meta := s.stamp(statemachine.Meta{Origin: statemachine.OriginReschedule})
			ids, err := tx.ClaimDue(ctx, meta.ReceivedAt, sweepBatch)
			if err != nil {
				return err
			}
			claimed = len(ids)
			for _, id := range ids {
				ok, err := tx.MarkAuto(ctx, id, AutoPlanned, AutoDone, nil)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				r, err := s.reschedule(ctx, tx, id, RescheduleOptions{}, whyAutomatic, meta, true)
				var refused *RefusedError
				if errors.As(err, &refused) {
					continue // cannot happen: a crash stays as it is; the mark says done
				}
				if err != nil {
					return fmt.Errorf("job %s: %w", id, err)
				}
				batch = append(batch, r)
			}
			return nil
		})
		if err != nil {
			return out, fmt.Errorf("automatic reschedule: %w", err)
		}
		out = append(out, batch...)
		if claimed < sweepBatch || len(batch) == 0 {
			break
		}
	}
	return out, nil
}

// RetryStats counts, for the rescheduled crashed jobs matching q.Filter, how their successors
// fared: finished, crashed again or pending, grouped and bucketed as q says.
func (s *Store) RetryStats(ctx context.Context, q StatsQuery) (RetryStatsResult, error) {
	res, err := s.backend.RetryStats(ctx, q)
	if err != nil {
		return res, fmt.Errorf("retry stats: %w", err)
	}
	if res.Rows == nil {
		res.Rows = []RetryStatsRow{}
	}
	for i := range res.Rows {
		row := &res.Rows[i]
		row.SuccessRate = nil
		if ended := row.Finished + row.Crashed; ended > 0 {
			rate := float64(row.Finished) / float64(ended)
			row.SuccessRate = &rate
		}
	}
	SortRetryStatsRows(res.Rows, q.GroupBy)
	return res, nil
}

// SortRetryStatsRows puts rows in the order RetryStatsResult promises.
func SortRetryStatsRows(rows []RetryStatsRow, groupBy []Field) {
	sort.SliceStable(rows, func(i, j int) bool {
		a, b := rows[i], rows[j]
		if a.Rescheduled != b.Rescheduled {
			return a.Rescheduled > b.Rescheduled
		}
		for _, f := range groupBy {
			av, bv := a.Group[f], b.Group[f]
			switch {
			case av == nil && bv == nil:
				continue
			case av == nil:
				return false
			case bv == nil:
				return true
			case *av != *bv:
				return *av < *bv
			}
		}
		if a.Bucket != nil && b.Bucket != nil {
			return a.Bucket.Before(*b.Bucket)
		}
		return false
	})
}
