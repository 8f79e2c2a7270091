package storage

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// Rescheduling and the watchdog (CONTRACT section 4).
//
// Exactly once with several processes on one database: a sweep claims its jobs one at a time,
// each in a transaction of its own, with a row lock that skips what another transaction holds
// (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite runs one write transaction at a time anyway),
// re-checks under the lock what made it pick the job, and changes the job with a guarded write
// in the same transaction as its history and outbox message. One transaction a job also means
// that a job whose change fails is rolled back alone and cannot hold the others up (sweepJobs).
// A successor's request id is derived from its parent, so even a bug in all of that could not
// make two successors of one job: the second insert would break the unique key.

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
	// Declined is set by RescheduleDue only, for a planned automatic reschedule it could not
	// carry out and never will (statemachine.SkipRequestIDTaken): the job is marked declined,
	// with the reason in its history, and has no Successor.
	Declined statemachine.SkipReason
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

// requestIDTakenError is the failure to reschedule a job because the request id its successor
// would get belongs to a job that is not linked to it: one a client created under that id.
// Asking again cannot help. It is an ErrConflict.
type requestIDTakenError struct {
	requestID string
	by        uuid.UUID
}

func (e *requestIDTakenError) Error() string {
	return fmt.Sprintf("request id %s is taken by job %s, not linked to it", e.requestID, e.by)
}

func (e *requestIDTakenError) Unwrap() error { return ErrConflict }

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
// opts.Force, is a *RefusedError; an unknown job ErrNotFound; a job whose successor's request
// id a client took for a job of its own ErrConflict.
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
		return RescheduleResult{}, &requestIDTakenError{requestID: n.RequestID, by: taken.UUID}
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
// crash is fatal (without opts.Force), it was rescheduled already, or its successor's request
// id is taken by a job a client created under it. With dryRun it changes nothing and says what
// it would do (the request id is not checked then). A filter matching more than MaxBulk jobs is refused
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
			var taken *requestIDTakenError
			switch {
			case errors.As(err, &refused):
				item.Outcome, item.Reason, item.State = BulkSkipped, refused.Reason, refused.Job.State
			case errors.As(err, &taken):
				item.Outcome, item.Reason = BulkSkipped, statemachine.SkipRequestIDTaken
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

// maxSweepJobs bounds the jobs (and so the transactions) of one sweep call, so that one call
// ends even when jobs keep coming; the next sweep goes on.
const maxSweepJobs = 10000

// JobError is a sweep's failure on one job: the job's transaction was rolled back, the sweep
// went on with the other jobs, and the next sweep tries this one again.
type JobError struct {
	JobUUID uuid.UUID
	Err     error
}

func (e *JobError) Error() string { return fmt.Sprintf("job %s: %v", e.JobUUID, e.Err) }

func (e *JobError) Unwrap() error { return e.Err }

// SweepError is what went wrong in a sweep (Watchdog, DecideAutoReschedules, RescheduleDue):
// Jobs failed one by one while the sweep handled the others, and Err, when set, ended the sweep
// early (a claim failed, or ctx ended). Whatever the sweep returned along with it is done and
// committed.
type SweepError struct {
	Sweep string // the sweep, e.g. "watchdog"
	Jobs  []JobError
	Err   error
}

func (e *SweepError) Error() string {
	var parts []string
	if e.Err != nil {
		parts = append(parts, e.Err.Error())
	}
	switch n := len(e.Jobs); {
	case n == 1:
		parts = append(parts, fmt.Sprintf("1 job failed: %v", &e.Jobs[0]))
	case n > 1:
		parts = append(parts, fmt.Sprintf("%d jobs failed, the first: %v", n, &e.Jobs[0]))
	}
	return e.Sweep + ": " + strings.Join(parts, "; ")
}

// Unwrap returns Err and the job errors, for errors.Is and errors.As.
func (e *SweepError) Unwrap() []error {
	var errs []error
	if e.Err != nil {
		errs = append(errs, e.Err)
	}
	for i := range e.Jobs {
		errs = append(errs, &e.Jobs[i])
	}
	return errs
}

// sweep is one kind of sweep, for sweepJobs; T is what it reports about a job it changed.
type sweep[T any] struct {
	name   string              // in errors
	origin statemachine.Origin // of the history entries it writes
	// claim claims the next job, not one in skip (RescheduleTx); ErrNotFound when none is left.
	claim func(ctx context.Context, tx Tx, now time.Time, skip []uuid.UUID) (uuid.UUID, error)
	// work re-checks the claimed job under its lock and changes it, in the claim's transaction;
	// changed reports whether it did.
	work func(ctx context.Context, tx Tx, id uuid.UUID, meta statemachine.Meta) (res T, changed bool, err error)
	// settle, when set, is given a job whose work failed, after the rollback. A failure that no
	// retry would cure it settles in a transaction of its own and answers nil (changed reports
	// whether it changed the job); any other failure it answers as it is.
	settle func(ctx context.Context, id uuid.UUID, failure error) (res T, changed bool, err error)
}

// sweepJobs runs a sweep, the loop every sweep shares: it claims a job and works on it in one
// transaction, a transaction a job, until the claim finds none left or maxSweepJobs were tried.
// A job whose work fails is rolled back alone and, unless settle settles it, left for the next
// sweep and reported in the *SweepError; the sweep goes on with the next job. A job the sweep
// tried and did not change (it failed, or the re-check under the lock found nothing to do) is
// not claimed again by this sweep, so that every claim makes progress. A claim that fails, or
// ctx ending, ends the sweep early. It returns what it reported about the jobs it changed.
func sweepJobs[T any](ctx context.Context, s *Store, sw sweep[T]) ([]T, error) {
	var (
		out    []T
		skip   []uuid.UUID
		failed []JobError
		stop   error
	)
	for range maxSweepJobs {
		if stop = ctx.Err(); stop != nil {
			break
		}
		var (
			id      uuid.UUID
			res     T
			changed bool
			claimed bool
		)
		err := s.backend.InTx(ctx, func(tx Tx) error {
			meta := s.stamp(statemachine.Meta{Origin: sw.origin})
			var err error
			if id, err = sw.claim(ctx, tx, meta.ReceivedAt, skip); err != nil {
				return err
			}
			claimed = true
			res, changed, err = sw.work(ctx, tx, id, meta)
			return err
		})
		if !claimed {
			if !errors.Is(err, ErrNotFound) {
				stop = fmt.Errorf("claim: %w", err)
			}
			break
		}
		if err != nil {
			var zero T
			res, changed = zero, false
			if sw.settle != nil {
				res, changed, err = sw.settle(ctx, id, err)
			}
		}
		if err != nil {
			failed = append(failed, JobError{JobUUID: id, Err: err})
		}
		if changed {
			out = append(out, res)
		} else {
			skip = append(skip, id)
		}
	}
	if stop == nil && len(failed) == 0 {
		return out, nil
	}
	return out, &SweepError{Sweep: sw.name, Jobs: failed, Err: stop}
}

// Watchdog crashes the jobs that are overdue at the store's current time (CONTRACT section 4):
// RUNNING longer than t.Run since they started, SCHEDULED longer than t.Schedule since they
// were created. Each crash is applied through the state machine with origin watchdog, with its
// history entry and its crash message, as any end; a job is re-checked under its row lock, so
// of several concurrent sweeps only one crashes it. It returns the applied crashes, and a
// *SweepError when some job could not be crashed (the others were) or the sweep ended early.
func (s *Store) Watchdog(ctx context.Context, t statemachine.Timeouts) ([]Result, error) {
	if t.Run <= 0 && t.Schedule <= 0 {
		return nil, nil
	}
	return sweepJobs(ctx, s, sweep[Result]{
		name:   "watchdog",
		origin: statemachine.OriginWatchdog,
		claim: func(ctx context.Context, tx Tx, now time.Time, skip []uuid.UUID) (uuid.UUID, error) {
			for _, st := range []struct {
				state   statemachine.State
				timeout time.Duration
			}{{statemachine.Running, t.Run}, {statemachine.Scheduled, t.Schedule}} {
				if st.timeout <= 0 {
					continue
				}
				id, err := tx.ClaimOverdue(ctx, st.state, now.Add(-st.timeout), skip)
				if !errors.Is(err, ErrNotFound) {
					return id, err
				}
			}
			return uuid.Nil, ErrNotFound
		},
		work: func(ctx context.Context, tx Tx, id uuid.UUID, meta statemachine.Meta) (Result, bool, error) {
			job, err := tx.LockJob(ctx, id)
			if err != nil || !t.Overdue(job, meta.ReceivedAt) {
				return Result{}, false, err
			}
			end := statemachine.WatchdogEnd(job, meta.ReceivedAt)
			ev := truncateTimes(statemachine.Event{Meta: meta, End: &end})
			d := statemachine.Apply(job, ev)
			if d.Verdict != statemachine.Applied {
				return Result{}, false, nil
			}
			r := Result{Job: d.Job, Verdict: d.Verdict, StateFrom: job.State}
			if err := tx.UpdateJob(ctx, d.Job); err != nil {
				return Result{}, false, err
			}
			if err := tx.AppendHistory(ctx, s.history(id, statemachine.EventEnd, r, meta, ev.End)); err != nil {
				return Result{}, false, err
			}
			if err := s.queue(ctx, tx, *d.Message, meta.ReceivedAt); err != nil {
				return Result{}, false, err
			}
			return r, true, nil
		},
	})
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
// history either way, exactly once per job however many processes sweep. Along with the
// decisions made it returns a *SweepError when some job could not be decided about (the others
// were) or the sweep ended early.
func (s *Store) DecideAutoReschedules(ctx context.Context, p statemachine.AutoPolicy) ([]AutoDecisionResult, error) {
	return sweepJobs(ctx, s, sweep[AutoDecisionResult]{
		name:   "automatic reschedule decisions",
		origin: statemachine.OriginReschedule,
		claim: func(ctx context.Context, tx Tx, _ time.Time, skip []uuid.UUID) (uuid.UUID, error) {
			return tx.ClaimUndecided(ctx, skip)
		},
		work: func(ctx context.Context, tx Tx, id uuid.UUID, meta statemachine.Meta) (AutoDecisionResult, bool, error) {
			job, err := tx.LockJob(ctx, id)
			if err != nil || job.State != statemachine.Crashed {
				return AutoDecisionResult{}, false, err
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
			if err != nil || !ok { // !ok: another sweep decided meanwhile
				return AutoDecisionResult{}, false, err
			}
			r := Result{Job: job, Verdict: verdict, StateFrom: job.State}
			if err := tx.AppendHistory(ctx, s.history(id, statemachine.EventAutoReschedule, r, meta, detail)); err != nil {
				return AutoDecisionResult{}, false, err
			}
			return AutoDecisionResult{Job: job, Decision: d}, true, nil
		},
	})
}

// RescheduleDue makes the successors of the planned automatic reschedules that are due at the
// store's current time, each exactly once, with origin reschedule. A job rescheduled by hand
// meanwhile gets a duplicate entry in its history instead. A job whose successor's request id a
// client took for a job of its own is declined instead (Declined, see declineTaken). It returns
// what it did (Created tells new successors from found ones), and a *SweepError when some job
// failed otherwise (it is tried again next sweep; the others were handled) or the sweep ended
// early.
func (s *Store) RescheduleDue(ctx context.Context) ([]RescheduleResult, error) {
	return sweepJobs(ctx, s, sweep[RescheduleResult]{
		name:   "automatic reschedule",
		origin: statemachine.OriginReschedule,
		claim: func(ctx context.Context, tx Tx, now time.Time, skip []uuid.UUID) (uuid.UUID, error) {
			return tx.ClaimDue(ctx, now, skip)
		},
		work: func(ctx context.Context, tx Tx, id uuid.UUID, meta statemachine.Meta) (RescheduleResult, bool, error) {
			ok, err := tx.MarkAuto(ctx, id, AutoPlanned, AutoDone, nil)
			if err != nil || !ok {
				return RescheduleResult{}, false, err
			}
			r, err := s.reschedule(ctx, tx, id, RescheduleOptions{}, whyAutomatic, meta, true)
			var refused *RefusedError
			if errors.As(err, &refused) {
				return RescheduleResult{}, false, nil // cannot happen: a crash stays as it is; the mark says done
			}
			if err != nil {
				return RescheduleResult{}, false, err
			}
			return r, true, nil
		},
		settle: s.declineTaken,
	})
}

// declineTaken settles a planned automatic reschedule that failed because the successor's
// request id is taken (requestIDTakenError): no retry can cure that, so rather than fail again
// every sweep, the job is marked declined, with a history entry that says why
// (statemachine.SkipRequestIDTaken) and which job holds the request id. Any other failure it
// answers as it is.
func (s *Store) declineTaken(ctx context.Context, id uuid.UUID, failure error) (RescheduleResult, bool, error) {
	var taken *requestIDTakenError
	if !errors.As(failure, &taken) {
		return RescheduleResult{}, false, failure
	}
	var res RescheduleResult
	declined := false
	err := s.backend.InTx(ctx, func(tx Tx) error {
		meta := s.stamp(statemachine.Meta{Origin: statemachine.OriginReschedule})
		job, err := tx.LockJob(ctx, id)
		if err != nil {
			return err
		}
		ok, err := tx.MarkAuto(ctx, id, AutoPlanned, AutoDeclined, nil)
		if err != nil || !ok { // !ok: another sweep settled it meanwhile
			return err
		}
		detail := map[string]any{
			"decision": "declined", "reason": statemachine.SkipRequestIDTaken, "attempt": job.Attempt,
			"request_id": taken.requestID, "taken_by": taken.by,
		}
		r := Result{Job: job, Verdict: statemachine.Declined, StateFrom: job.State}
		if err := tx.AppendHistory(ctx, s.history(id, statemachine.EventAutoReschedule, r, meta, detail)); err != nil {
			return err
		}
		res, declined = RescheduleResult{Parent: job, Declined: statemachine.SkipRequestIDTaken}, true
		return nil
	})
	if err != nil {
		return RescheduleResult{}, false, fmt.Errorf("%w; declining it: %w", failure, err)
	}
	return res, declined, nil
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
	sortGroupRows(rows, groupBy, func(r *RetryStatsRow) groupRowKey {
		return groupRowKey{count: r.Rescheduled, group: r.Group, bucket: r.Bucket}
	})
}

// groupRowKey is what a row of a grouped answer (StatsRow, RetryStatsRow) is ordered by.
type groupRowKey struct {
	count  int64
	group  map[Field]*string
	bucket *time.Time
}

// sortGroupRows orders the rows of a grouped answer, for SortStatsRows and
// SortRetryStatsRows: by count, largest first, then by each group_by value in turn (a
// missing value last), then by bucket. Rows alike in all of that keep their order.
func sortGroupRows[R any](rows []R, groupBy []Field, key func(*R) groupRowKey) {
	slices.SortStableFunc(rows, func(x, y R) int {
		a, b := key(&x), key(&y)
		if c := cmp.Compare(b.count, a.count); c != 0 {
			return c
		}
		for _, f := range groupBy {
			av, bv := a.group[f], b.group[f]
			switch {
			case av == nil && bv == nil:
				continue
			case av == nil:
				return 1
			case bv == nil:
				return -1
			case *av != *bv:
				return strings.Compare(*av, *bv)
			}
		}
		if a.bucket != nil && b.bucket != nil {
			return a.bucket.Compare(*b.bucket)
		}
		return 0
	})
}
