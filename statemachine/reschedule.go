package statemachine

import (
	"time"

	"github.com/google/uuid"
)

// Rescheduling and the watchdog (CONTRACT section 4): what a successor of a crashed job looks
// like, when a job may be rescheduled, the watchdog's synthetic crash and the automatic
// rescheduler's decision. Pure like the rest of the package: the caller supplies the time.

// EventAutoReschedule is the kind of the history entry that records the automatic rescheduler's
// decision about a crashed job: planned (verdict Applied) or declined (verdict Declined).
const EventAutoReschedule EventKind = "auto_reschedule"

// Declined is the verdict of an automatic-reschedule decision not to reschedule a crash.
const Declined Verdict = "declined"

// AutoMark is where a crashed job stands with the automatic rescheduler. A job it has not
// looked at has none (AutoUndecided).
type AutoMark string

// The automatic rescheduler's marks on a crashed job.
const (
	AutoUndecided AutoMark = ""
	// AutoPlanned: a successor is due at the job's AutoDueAt.
	AutoPlanned AutoMark = "planned"
	// AutoDeclined: no successor; the reason is in the job's history.
	AutoDeclined AutoMark = "declined"
	// AutoDone: the planned successor was made (or the job had one by then).
	AutoDone AutoMark = "done"
	// AutoPredates: the job crashed before the database knew about automatic rescheduling;
	// migrations mark such jobs so that switching it on does not retry old crashes.
	AutoPredates AutoMark = "predates"
)

// SkipReason says why a job is not (or would not be) rescheduled.
type SkipReason string

// The reasons a job is not rescheduled.
const (
	// SkipNotCrashed: only a CRASHED job can be rescheduled.
	SkipNotCrashed SkipReason = "not_crashed"
	// SkipFatal: the crash is fatal and the request did not force it.
	SkipFatal SkipReason = "fatal"
	// SkipAlreadyRescheduled: the job has a successor already.
	SkipAlreadyRescheduled SkipReason = "already_rescheduled"
	// SkipAttemptLimit: automatic rescheduling only; the job's attempt reached the limit.
	SkipAttemptLimit SkipReason = "attempt_limit"
	// SkipAutoOff: automatic rescheduling only; it is switched off.
	SkipAutoOff SkipReason = "auto_reschedule_off"
	// SkipRequestIDTaken: the request id the successor would get (SuccessorRequestID) belongs
	// to a job that is not the successor, one a client created under that id. No retry cures
	// it: the automatic rescheduler declines the planned reschedule, a bulk reschedule skips
	// the job.
	SkipRequestIDTaken SkipReason = "successor_request_id_taken"
)

// CanReschedule says whether job may get a successor: "" when it may, otherwise why not. A job
// that already has a successor answers SkipAlreadyRescheduled whatever its crash says, so a
// repeated request finds the successor the first one made.
func CanReschedule(job Job, force bool) SkipReason {
	switch {
	case job.RescheduledTo != nil:
		return SkipAlreadyRescheduled
	case job.State != Crashed:
		return SkipNotCrashed
	case job.Crash != nil && job.Crash.Fatal && !force:
		return SkipFatal
	}
	return ""
}

// SuccessorRequestID is the request id of the successor of the job with the given uuid. It is
// derived from the parent alone, so that however often and by whomever a job is rescheduled,
// the unique request id lets only one successor exist.
func SuccessorRequestID(parent uuid.UUID) string { return "reschedule:" + parent.String() }

// Successor is what creates the successor of parent: the same task, item, item type, arch, data
// and source, the next attempt, linked back to parent. id is the successor's uuid.
func Successor(parent Job, id uuid.UUID) NewJob {
	from := parent.UUID
	attempt := parent.Attempt
	if attempt < 1 {
		attempt = 1
	}
	return NewJob{
		UUID: id, TaskName: parent.TaskName, Item: parent.Item, ItemType: parent.ItemType,
		Arch: parent.Arch, Data: parent.Data, Source: parent.Source,
		RequestID: SuccessorRequestID(parent.UUID), Attempt: attempt + 1, RescheduledFrom: &from,
	}
}

// LinkSuccessor returns parent with its rescheduled_to set to the successor, updated at now.
// The state does not change.
func LinkSuccessor(parent Job, successor uuid.UUID, now time.Time) Job {
	to := successor
	parent.RescheduledTo = &to
	parent.UpdatedAt = now
	return parent
}

// The keyvals of a watchdog crash.
const (
	ReasonTimedOut     = "TIMED_OUT"     // RUNNING longer than the run timeout
	ReasonNeverStarted = "NEVER_STARTED" // SCHEDULED longer than the schedule timeout
	DetectedByWatchdog = "watchdog"
)

// Timeouts are the watchdog's limits. A zero timeout never expires.
type Timeouts struct {
	Run      time.Duration // since started_at, for RUNNING jobs
	Schedule time.Duration // since created_at, for SCHEDULED jobs
}

// Overdue reports whether the watchdog should crash job at now: RUNNING for longer than the run
// timeout, or SCHEDULED for longer than the schedule timeout, both counted on ExecDB's own
// clock from when the job entered its state (StateEnteredAt), never from a time a worker
// reported (CONTRACT section 4, v1.1). Exactly at the limit a job is not overdue yet.
func (t Timeouts) Overdue(job Job, now time.Time) bool {
	since := now.Sub(job.StateEnteredAt)
	switch job.State {
	case Running:
		return t.Run > 0 && since > t.Run
	case Scheduled:
		return t.Schedule > 0 && since > t.Schedule
	}
	return false
}

// WatchdogEnd is the end the watchdog reports for an overdue job (CONTRACT section 4): CRASHED,
// notify taskotron, cause unknown, not fatal, with keyvals reason (TIMED_OUT for a RUNNING job,
// NEVER_STARTED for a SCHEDULED one), detected_by=watchdog and last_state. Apply it like any
// end, with Meta.Origin OriginWatchdog.
func WatchdogEnd(job Job, now time.Time) End {
	reason := ReasonTimedOut
	if job.State == Scheduled {
		reason = ReasonNeverStarted
	}
	at := now.UTC()
	return End{
		State: Crashed,
		Crash: &Crash{
			Notify: NotifyTaskotron, Cause: CauseUnknown, Fatal: false,
			KeyVals: KeyVals{
				"reason":      {reason},
				"detected_by": {DetectedByWatchdog},
				"last_state":  {string(job.State)},
			},
		},
		FinishedAt: &at,
	}
}

// AutoPolicy is how crashes are rescheduled automatically.
type AutoPolicy struct {
	// Limit is the number of attempts a job may have: a non-fatal crash whose attempt is below
	// it gets a successor. 0 switches automatic rescheduling off (and so does 1: a job that
	// may run once is never retried).
	Limit int
	// FirstDelay is the wait before the successor of a first attempt; it doubles with each
	// further attempt.
	FirstDelay time.Duration
	// MaxDelay caps the wait; 0 means DefaultMaxAutoDelay.
	MaxDelay time.Duration
}

// DefaultMaxAutoDelay caps the automatic rescheduler's wait when the policy names no cap.
const DefaultMaxAutoDelay = 24 * time.Hour

// Delay is the wait before the successor of a crashed attempt: FirstDelay × 2^(attempt−1),
// capped at MaxDelay.
func (p AutoPolicy) Delay(attempt int) time.Duration {
	limit := p.MaxDelay
	if limit <= 0 {
		limit = DefaultMaxAutoDelay
	}
	d := p.FirstDelay
	if d <= 0 {
		return 0
	}
	for i := 1; i < attempt; i++ {
		if d >= limit/2 {
			return limit
		}
		d *= 2
	}
	return min(d, limit)
}

// AutoDecision is the automatic rescheduler's decision about one crashed job.
type AutoDecision struct {
	Planned bool          // a successor is due at DueAt
	Reason  SkipReason    // why not, when not Planned
	Delay   time.Duration // the wait, when Planned
	DueAt   time.Time     // when the successor is to be made, when Planned
}

// DecideAuto is the automatic rescheduler's decision about a crashed job at now: planned after
// the policy's delay for the job's attempt, or not, and why (already rescheduled, switched off,
// fatal, attempt limit reached). A job that is not CRASHED is not planned (SkipNotCrashed).
func DecideAuto(job Job, p AutoPolicy, now time.Time) AutoDecision {
	reason := CanReschedule(job, false)
	switch {
	case reason == SkipAlreadyRescheduled || reason == SkipNotCrashed:
	case p.Limit <= 0:
		reason = SkipAutoOff
	case reason != "":
	case job.Attempt >= p.Limit:
		reason = SkipAttemptLimit
	}
	if reason != "" {
		return AutoDecision{Reason: reason}
	}
	d := p.Delay(job.Attempt)
	return AutoDecision{Planned: true, Delay: d, DueAt: now.Add(d).UTC()}
}
