package jobs

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// Rescheduling and the watchdog (CONTRACT section 4).
//
// Exactly once with several processes on one database: a sweep claims its jobs one at a time,
// each in a unit of work of its own, with a row lock that skips what another transaction holds
// (FOR UPDATE SKIP LOCKED on PostgreSQL; SQLite runs one write transaction at a time anyway),
// re-checks under the lock what made it pick the job (its state, its automatic-reschedule
// mark), and writes the job with its history and outbox message in that transaction. One transaction a job also means
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
// Asking again cannot help. It is a storage.ErrConflict.
type requestIDTakenError struct {
	requestID string
	by        uuid.UUID
}

func (e *requestIDTakenError) Error() string {
	return fmt.Sprintf("request id %s is taken by job %s, not linked to it", e.requestID, e.by)
}

func (e *requestIDTakenError) Unwrap() error { return storage.ErrConflict }

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
// opts.Force, is a *RefusedError; an unknown job storage.ErrNotFound; a job whose successor's
// request id a client took for a job of its own storage.ErrConflict.
func (s *Service) Reschedule(ctx context.Context, id uuid.UUID, opts RescheduleOptions, meta statemachine.Meta) (RescheduleResult, error) {
	meta = s.stamp(meta)
	var res RescheduleResult
	err := s.submit(ctx, write{key: id, do: func(ctx context.Context, u *unit) error {
		var err error
		res, err = u.reschedule(ctx, id, opts, whyManual, meta, true)
		return err
	}})
	if err != nil {
		return RescheduleResult{}, fmt.Errorf("reschedule job %s: %w", id, err)
	}
	return res, nil
}

// reschedule does the work of Reschedule in the unit. With recordDuplicate, a job that already
// has a successor gets a duplicate entry in its history.
func (u *unit) reschedule(ctx context.Context, id uuid.UUID, opts RescheduleOptions, why string, meta statemachine.Meta, recordDuplicate bool) (RescheduleResult, error) {
	parent, ok, err := u.lock(ctx, id)
	if err != nil {
		return RescheduleResult{}, err
	}
	if !ok {
		return RescheduleResult{}, storage.ErrNotFound
	}
	detail := map[string]any{"why": why, "force": opts.Force}
	if opts.Reason != "" {
		detail["reason"] = opts.Reason
	}
	switch skip := statemachine.CanReschedule(parent, opts.Force); skip {
	case "":
	case statemachine.SkipAlreadyRescheduled:
		successor, ok, err := u.lock(ctx, *parent.RescheduledTo)
		if err != nil {
			return RescheduleResult{}, err
		}
		if !ok {
			return RescheduleResult{}, fmt.Errorf("successor %s: %w", *parent.RescheduledTo, storage.ErrNotFound)
		}
		if recordDuplicate {
			detail["successor"] = successor.UUID
			u.record(id, statemachine.EventReschedule, Result{Job: parent, Verdict: statemachine.Duplicate, StateFrom: parent.State}, meta, detail)
		}
		return RescheduleResult{Parent: parent, Successor: successor}, nil
	default:
		return RescheduleResult{}, &RefusedError{Job: parent, Reason: skip}
	}

	newID, err := uuid.NewV7()
	if err != nil {
		return RescheduleResult{}, fmt.Errorf("issue uuid: %w", err)
	}
	// No key lock for newID: nobody can know a uuid issued just now, so no event is parked
	// for it and no other create names it.
	n := statemachine.Successor(parent, newID)
	if _, err := u.load(ctx, storage.Load{RequestIDs: []string{n.RequestID}}); err != nil {
		return RescheduleResult{}, err
	}
	if by, taken := u.byRequest[n.RequestID]; taken {
		// Only a client that named this request id itself can have taken it.
		return RescheduleResult{}, &requestIDTakenError{requestID: n.RequestID, by: by}
	}
	successor, msg := statemachine.Create(n, meta.ReceivedAt)
	u.add(successor, n.RequestID)
	linked := statemachine.LinkSuccessor(parent, newID, meta.ReceivedAt)
	u.change(linked, false)
	detail["successor"] = newID
	detail["attempt"] = successor.Attempt
	u.record(id, statemachine.EventReschedule, Result{Job: linked, Verdict: statemachine.Applied, StateFrom: parent.State}, meta, detail)
	created := createDetail(n)
	created["why"] = why
	created["force"] = opts.Force
	if opts.Reason != "" {
		created["reason"] = opts.Reason
	}
	u.record(newID, statemachine.EventCreate, Result{Job: successor, Verdict: statemachine.Applied, Created: true}, meta, created)
	if err := u.queue(msg, meta.ReceivedAt); err != nil {
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
}

// RescheduleBulk reschedules every job f matches, each in its own unit of work as Reschedule
// does (one job's failure cannot undo another's successor), and says per job what it did:
// rescheduled, or skipped because it is not crashed, its crash is fatal (without opts.Force), it
// was rescheduled already, or its successor's request id is taken by a job a client created
// under it. With dryRun it changes nothing and says what it would do (the request id is not
// checked then). A filter matching more than MaxBulk jobs is refused before anything is done.
func (s *Service) RescheduleBulk(ctx context.Context, f storage.Filter, dryRun bool, opts RescheduleOptions, meta statemachine.Meta) (BulkResult, error) {
	res := BulkResult{DryRun: dryRun, Force: opts.Force, Items: []BulkItem{}}
	var jobs []statemachine.Job
	page := storage.Page{Limit: storage.MaxLimit}
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
			err := s.run(ctx, func(u *unit) error {
				var err error
				r, err = u.reschedule(ctx, job.UUID, opts, whyBulk, meta, false)
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
	// claim claims the next job, not one in skip (storage.RescheduleTx); storage.ErrNotFound
	// when none is left.
	claim func(ctx context.Context, tx storage.Tx, now time.Time, skip []uuid.UUID) (uuid.UUID, error)
	// work re-checks the claimed job under its lock and changes it, in the claim's unit; it
	// returns errNoWork when the re-check finds nothing to do.
	work func(ctx context.Context, u *unit, id uuid.UUID, meta statemachine.Meta) (T, error)
	// settle, when set, is given a job whose work failed, after the rollback. A failure that no
	// retry would cure it settles in a unit of its own and answers nil (changed reports whether
	// it changed the job); any other failure it answers as it is.
	settle func(ctx context.Context, id uuid.UUID, failure error) (res T, changed bool, err error)
}

// sweepJobs runs a sweep, the loop every sweep shares: it claims a job and works on it in one
// unit of work, a unit a job, until the claim finds none left or maxSweepJobs were tried. A job
// whose work fails is rolled back alone and, unless settle settles it, left for the next sweep
// and reported in the *SweepError; the sweep goes on with the next job. A job the sweep tried
// and did not change (it failed, or the re-check under the lock found nothing to do) is not
// claimed again by this sweep, so that every claim makes progress. A claim that fails, or ctx
// ending, ends the sweep early. It returns what it reported about the jobs it changed.
func sweepJobs[T any](ctx context.Context, s *Service, sw sweep[T]) ([]T, error) {
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
			claimed bool
		)
		err := s.run(ctx, func(u *unit) error {
			meta := s.stamp(statemachine.Meta{Origin: sw.origin})
			var err error
			if id, err = sw.claim(ctx, u.tx, meta.ReceivedAt, skip); err != nil {
				return err
			}
			claimed = true
			res, err = sw.work(ctx, u, id, meta)
			return err
		})
		if !claimed {
			if !errors.Is(err, storage.ErrNotFound) {
				stop = fmt.Errorf("claim: %w", err)
			}
			break
		}
		changed := err == nil
		if errors.Is(err, errNoWork) {
			err = nil
		}
		if err != nil {
			var zero T
			res = zero
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

// Watchdog crashes the jobs that are overdue at the service's current time (CONTRACT section
// 4): RUNNING longer than t.Run since they started, SCHEDULED longer than t.Schedule since they
// were created. Each crash is applied through the state machine with origin watchdog, with its
// history entry and its crash message, as any end; a job is re-checked under its row lock, so
// of several concurrent sweeps only one crashes it. It returns the applied crashes, and a
// *SweepError when some job could not be crashed (the others were) or the sweep ended early.
func (s *Service) Watchdog(ctx context.Context, t statemachine.Timeouts) ([]Result, error) {
	if t.Run <= 0 && t.Schedule <= 0 {
		return nil, nil
	}
	return sweepJobs(ctx, s, sweep[Result]{
		name:   "watchdog",
		origin: statemachine.OriginWatchdog,
		claim: func(ctx context.Context, tx storage.Tx, now time.Time, skip []uuid.UUID) (uuid.UUID, error) {
			for _, st := range []struct {
				state   statemachine.State
				timeout time.Duration
			}{{statemachine.Running, t.Run}, {statemachine.Scheduled, t.Schedule}} {
				if st.timeout <= 0 {
					continue
				}
				id, err := tx.ClaimOverdue(ctx, st.state, now.Add(-st.timeout), skip)
				if !errors.Is(err, storage.ErrNotFound) {
					return id, err
				}
			}
			return uuid.Nil, storage.ErrNotFound
		},
		work: func(ctx context.Context, u *unit, id uuid.UUID, meta statemachine.Meta) (Result, error) {
			job, ok, err := u.lock(ctx, id)
			if err != nil {
				return Result{}, err
			}
			if !ok || !t.Overdue(job, meta.ReceivedAt) {
				return Result{}, errNoWork
			}
			end := statemachine.WatchdogEnd(job, meta.ReceivedAt)
			r, _ := u.event(id, truncateTimes(statemachine.Event{Meta: meta, End: &end}), "", nil, false)
			if r.Verdict != statemachine.Applied {
				return Result{}, errNoWork
			}
			return r, nil
		},
	})
}

// AutoDecisionResult is the automatic rescheduler's decision about one crashed job.
type AutoDecisionResult struct {
	Job      statemachine.Job
	Decision statemachine.AutoDecision
}

// decideAuto makes the automatic rescheduler's decision about the crashed job id under policy
// p at meta's time, marks the job with it, and records it in the job's history, except a
// decline because automatic rescheduling is off: that is only marked, so that a crash is never
// retried should it be switched on later, and history is not filled with the obvious.
func (u *unit) decideAuto(id uuid.UUID, p statemachine.AutoPolicy, meta statemachine.Meta) statemachine.AutoDecision {
	job := u.jobs[id]
	d := statemachine.DecideAuto(job, p, meta.ReceivedAt)
	verdict := statemachine.Declined
	detail := map[string]any{"attempt": job.Attempt, "limit": p.Limit}
	if d.Planned {
		verdict = statemachine.Applied
		d.DueAt = d.DueAt.Truncate(time.Microsecond)
		at := d.DueAt
		job.Auto, job.AutoDueAt = statemachine.AutoPlanned, &at
		detail["decision"] = "planned"
		detail["due_at"] = at
		detail["delay"] = d.Delay.String()
	} else {
		job.Auto, job.AutoDueAt = statemachine.AutoDeclined, nil
		detail["decision"] = "declined"
		detail["reason"] = d.Reason
	}
	u.change(job, false)
	if d.Reason != statemachine.SkipAutoOff {
		u.recordAuto(id, Result{Job: job, Verdict: verdict, StateFrom: job.State}, meta, detail, d)
	}
	return d
}

// recordAuto records an automatic-reschedule decision in the job's history.
func (u *unit) recordAuto(id uuid.UUID, r Result, meta statemachine.Meta, detail map[string]any, d statemachine.AutoDecision) {
	meta.Origin = statemachine.OriginReschedule
	u.w.History = append(u.w.History, historyEntry(id, statemachine.EventAutoReschedule, r, meta, detail))
	u.events = append(u.events, Event{Meta: meta, Kind: statemachine.EventAutoReschedule, Result: r, Auto: &d})
}

// DecideAutoReschedules makes the automatic rescheduler's decision, under policy p at the
// service's current time, about every crashed job nobody has decided about: normally none,
// since a service with Config.AutoReschedule decides in the unit of work that crashes a job;
// this sweep decides about crashes that a service without it stored. See decideAuto for what
// a decision writes; each job is decided about exactly once however many processes sweep.
// Along with the decisions made it returns a *SweepError when some job could not be decided
// about (the others were) or the sweep ended early.
func (s *Service) DecideAutoReschedules(ctx context.Context, p statemachine.AutoPolicy) ([]AutoDecisionResult, error) {
	return sweepJobs(ctx, s, sweep[AutoDecisionResult]{
		name:   "automatic reschedule decisions",
		origin: statemachine.OriginReschedule,
		claim: func(ctx context.Context, tx storage.Tx, _ time.Time, skip []uuid.UUID) (uuid.UUID, error) {
			return tx.ClaimUndecided(ctx, skip)
		},
		work: func(ctx context.Context, u *unit, id uuid.UUID, meta statemachine.Meta) (AutoDecisionResult, error) {
			job, ok, err := u.lock(ctx, id)
			if err != nil {
				return AutoDecisionResult{}, err
			}
			if !ok || job.State != statemachine.Crashed || job.Auto != statemachine.AutoUndecided {
				return AutoDecisionResult{}, errNoWork // another sweep decided meanwhile
			}
			d := u.decideAuto(id, p, meta)
			return AutoDecisionResult{Job: job, Decision: d}, nil
		},
	})
}

// RescheduleDue makes the successors of the planned automatic reschedules that are due at the
// service's current time, each exactly once, with origin reschedule. A job rescheduled by hand
// meanwhile gets a duplicate entry in its history instead. A job whose successor's request id a
// client took for a job of its own is declined instead (Declined, see declineTaken). It returns
// what it did (Created tells new successors from found ones), and a *SweepError when some job
// failed otherwise (it is tried again next sweep; the others were handled) or the sweep ended
// early.
func (s *Service) RescheduleDue(ctx context.Context) ([]RescheduleResult, error) {
	return sweepJobs(ctx, s, sweep[RescheduleResult]{
		name:   "automatic reschedule",
		origin: statemachine.OriginReschedule,
		claim: func(ctx context.Context, tx storage.Tx, now time.Time, skip []uuid.UUID) (uuid.UUID, error) {
			return tx.ClaimDue(ctx, now, skip)
		},
		work: func(ctx context.Context, u *unit, id uuid.UUID, meta statemachine.Meta) (RescheduleResult, error) {
			job, ok, err := u.lock(ctx, id)
			if err != nil {
				return RescheduleResult{}, err
			}
			if !ok || job.Auto != statemachine.AutoPlanned || job.AutoDueAt == nil || job.AutoDueAt.After(meta.ReceivedAt) {
				return RescheduleResult{}, errNoWork // another sweep made it meanwhile
			}
			job.Auto, job.AutoDueAt = statemachine.AutoDone, nil
			u.change(job, false)
			r, err := u.reschedule(ctx, id, RescheduleOptions{}, whyAutomatic, meta, true)
			var refused *RefusedError
			if errors.As(err, &refused) {
				// Cannot happen (a crash stays as it is), but should it: decline, saying why.
				u.decline(id, refused.Reason, meta, nil)
				return RescheduleResult{Parent: u.jobs[id], Declined: refused.Reason}, nil
			}
			return r, err
		},
		settle: s.declineTaken,
	})
}

// decline marks a planned automatic reschedule declined after all, and records why.
func (u *unit) decline(id uuid.UUID, reason statemachine.SkipReason, meta statemachine.Meta, extra map[string]any) {
	job := u.jobs[id]
	job.Auto, job.AutoDueAt = statemachine.AutoDeclined, nil
	u.change(job, false)
	detail := map[string]any{"decision": "declined", "reason": reason, "attempt": job.Attempt}
	for k, v := range extra {
		detail[k] = v
	}
	u.recordAuto(id, Result{Job: job, Verdict: statemachine.Declined, StateFrom: job.State}, meta, detail,
		statemachine.AutoDecision{Reason: reason})
}

// declineTaken settles a planned automatic reschedule that failed because the successor's
// request id is taken (requestIDTakenError): no retry can cure that, so rather than fail again
// every sweep, the job is marked declined, with a history entry that says why
// (statemachine.SkipRequestIDTaken) and which job holds the request id. Any other failure it
// answers as it is.
func (s *Service) declineTaken(ctx context.Context, id uuid.UUID, failure error) (RescheduleResult, bool, error) {
	var taken *requestIDTakenError
	if !errors.As(failure, &taken) {
		return RescheduleResult{}, false, failure
	}
	var res RescheduleResult
	err := s.run(ctx, func(u *unit) error {
		meta := s.stamp(statemachine.Meta{Origin: statemachine.OriginReschedule})
		job, ok, err := u.lock(ctx, id)
		if err != nil {
			return err
		}
		if !ok || job.Auto != statemachine.AutoPlanned {
			return errNoWork // another sweep settled it meanwhile
		}
		u.decline(id, statemachine.SkipRequestIDTaken, meta, map[string]any{"request_id": taken.requestID, "taken_by": taken.by})
		res = RescheduleResult{Parent: u.jobs[id], Declined: statemachine.SkipRequestIDTaken}
		return nil
	})
	if errors.Is(err, errNoWork) {
		return RescheduleResult{}, false, nil
	}
	if err != nil {
		return RescheduleResult{}, false, fmt.Errorf("%w; declining it: %w", failure, err)
	}
	return res, true, nil
}

// RetryStats counts, for the rescheduled crashed jobs matching q.Filter, how their successors
// fared: finished, crashed again or pending, grouped and bucketed as q says.
func (s *Service) RetryStats(ctx context.Context, q storage.StatsQuery) (storage.RetryStatsResult, error) {
	res, err := s.backend.RetryStats(ctx, q)
	if err != nil {
		return res, fmt.Errorf("retry stats: %w", err)
	}
	if res.Rows == nil {
		res.Rows = []storage.RetryStatsRow{}
	}
	for i := range res.Rows {
		row := &res.Rows[i]
		row.SuccessRate = nil
		if ended := row.Finished + row.Crashed; ended > 0 {
			rate := float64(row.Finished) / float64(ended)
			row.SuccessRate = &rate
		}
	}
	storage.SortRetryStatsRows(res.Rows, q.GroupBy)
	return res, nil
}
