package statemachine

import (
	"reflect"
	"time"

	"github.com/google/uuid"
)

// EventKind names what happened to a job.
type EventKind string

// The kinds of event a job's history holds.
const (
	EventCreate     EventKind = "create"
	EventStart      EventKind = "start"
	EventEnd        EventKind = "end"
	EventReschedule EventKind = "reschedule"
)

// Origin is the channel an event came through.
type Origin string

// The origins an event can have (CONTRACT section 2).
const (
	OriginHTTP       Origin = "http"
	OriginAMQP       Origin = "amqp"
	OriginFedmsg     Origin = "fedmsg"
	OriginWatchdog   Origin = "watchdog"
	OriginReschedule Origin = "reschedule"
)

// Verdict is what the state machine made of an event.
type Verdict string

// The verdicts. Applied changes the state; Duplicate changes nothing and is not an error; Late
// (a start after the end) and Conflict (an end that disagrees with the recorded outcome) are
// recorded but leave the state alone.
const (
	Applied   Verdict = "applied"
	Duplicate Verdict = "duplicate"
	Late      Verdict = "late"
	Conflict  Verdict = "conflict"
	// Rejected: the message could not be applied at all (it broke the schema, say); it is in
	// the job's history because it names the job. Only bus messages are recorded so.
	Rejected Verdict = "rejected"
)

// Meta says where an event came from; it travels into the job's history.
type Meta struct {
	Origin     Origin
	MessageID  string    // the bus message id, or the HTTP request id
	Actor      string    // the token name of an HTTP write, empty otherwise
	ReceivedAt time.Time // when ExecDB received the event
}

// Start reports that a runner began executing a job.
type Start struct {
	StartedAt *time.Time `json:"started_at,omitempty"` // nil means when ExecDB received it
	Runner    *Runner    `json:"runner,omitempty"`
}

// End reports how a job ended.
type End struct {
	State        State      `json:"state"` // Finished or Crashed
	Crash        *Crash     `json:"crash,omitempty"`
	FinishedAt   *time.Time `json:"finished_at,omitempty"` // nil means when ExecDB received it
	ArtifactsURL string     `json:"artifacts_url,omitempty"`
	LogURL       string     `json:"log_url,omitempty"`
	Runner       *Runner    `json:"runner,omitempty"`
}

// Event is one start or end report about a job. Exactly one of Start and End is set.
type Event struct {
	Meta
	Start *Start
	End   *End
}

// Kind is the event's kind.
func (e Event) Kind() EventKind {
	if e.Start != nil {
		return EventStart
	}
	return EventEnd
}

// Decision is the outcome of applying an event to a job.
type Decision struct {
	Verdict Verdict
	// Job is the job after the event. It equals the input job unless Changed.
	Job Job
	// Changed reports that Job must be written back. A late start may fill in a started_at the
	// job lacked (the end overtook the start) without changing the state.
	Changed bool
	// Message is the job-state message to publish, set when the state changed.
	Message *Message
}

// Message is an outgoing job-state message (CONTRACT section 3, Out).
type Message struct {
	TopicSuffix   string // e.g. "execdb.job.crashed.task.minion"
	PreviousState *State // nil for a newly created job
	Job           Job
}

// NewJob is what is needed to create a job.
type NewJob struct {
	UUID            uuid.UUID
	TaskName        string
	Item            string
	ItemType        string
	Arch            string
	Data            KeyVals
	Source          *Source
	RequestID       string
	Attempt         int        // 0 means 1
	RescheduledFrom *uuid.UUID // set for a successor of a crashed job
}

// DefaultArch is the arch of a job that names none.
const DefaultArch = "noarch"

// Create makes the SCHEDULED job for n at time now and the message announcing it.
func Create(n NewJob, now time.Time) (Job, Message) {
	arch := n.Arch
	if arch == "" {
		arch = DefaultArch
	}
	attempt := n.Attempt
	if attempt < 1 {
		attempt = 1
	}
	job := Job{
		UUID: n.UUID, State: Scheduled, TaskName: n.TaskName, Item: n.Item, ItemType: n.ItemType,
		Arch: arch, Data: n.Data, Source: n.Source, RequestID: n.RequestID, Attempt: attempt,
		RescheduledFrom: n.RescheduledFrom, CreatedAt: now, UpdatedAt: now, StateEnteredAt: now,
	}
	return job, Message{TopicSuffix: TopicSuffix(job), Job: job}
}

// Apply decides what ev does to job (CONTRACT section 2). It is pure: the same job and event
// always give the same decision.
func Apply(job Job, ev Event) Decision {
	if ev.Start != nil {
		return applyStart(job, ev)
	}
	return applyEnd(job, ev)
}

func applyStart(job Job, ev Event) Decision {
	s := ev.Start
	switch job.State {
	case Scheduled:
		prev := job.State
		job.State = Running
		job.StartedAt = keptTime(s.StartedAt, ev.ReceivedAt, job.CreatedAt, nil)
		job.Runner = overlayRunner(job.Runner, s.Runner)
		enter(&job, ev.ReceivedAt)
		return applied(job, prev)
	case Running:
		if otherAttempt(job.Runner, s.Runner) {
			// Another runner took the job over: Buildbot retries a build whose worker was
			// lost as a new build of the same request, uuid and all. Its start replaces the
			// lost attempt's runner and start time, and the watchdog counts from it.
			started := keptTime(s.StartedAt, ev.ReceivedAt, job.CreatedAt, nil)
			if job.StartedAt != nil && started.Before(*job.StartedAt) {
				// A start of the lost attempt that arrives after its successor's changes nothing.
				return Decision{Verdict: Duplicate, Job: job}
			}
			prev := job.State
			job.StartedAt = started
			job.Runner = overlayRunner(&Runner{}, s.Runner)
			job.StateEnteredAt = time.Time{}
			enter(&job, ev.ReceivedAt)
			return applied(job, prev)
		}
		// The same start again: nothing changes but what the job still lacks.
		runner, filled := fillRunner(job.Runner, s.Runner)
		if !filled {
			return Decision{Verdict: Duplicate, Job: job}
		}
		job.Runner = runner
		touch(&job, ev.ReceivedAt)
		return Decision{Verdict: Duplicate, Job: job, Changed: true}
	default:
		// The end overtook the start. The state stays, but what only the start knows is kept so
		// that the final job does not depend on the order the two arrived in (CONTRACT section
		// 2, v1.1): the start time, within when the job was created and when it ended, and the
		// runner's fields the job lacks.
		changed := false
		if job.StartedAt == nil {
			job.StartedAt = keptTime(s.StartedAt, ev.ReceivedAt, job.CreatedAt, job.FinishedAt)
			changed = true
		}
		if runner, filled := fillRunner(job.Runner, s.Runner); filled {
			job.Runner = runner
			changed = true
		}
		if changed {
			touch(&job, ev.ReceivedAt)
		}
		return Decision{Verdict: Late, Job: job, Changed: changed}
	}
}

func applyEnd(job Job, ev Event) Decision {
	e := ev.End
	if job.State.Terminal() {
		if !SameOutcome(job.State, job.Crash, e.State, e.Crash) {
			return Decision{Verdict: Conflict, Job: job}
		}
		// The same end again: it changes nothing but fills in what the job lacks (CONTRACT
		// section 2, v1.1).
		changed := false
		if job.ArtifactsURL == "" && e.ArtifactsURL != "" {
			job.ArtifactsURL, changed = e.ArtifactsURL, true
		}
		if job.LogURL == "" && e.LogURL != "" {
			job.LogURL, changed = e.LogURL, true
		}
		if runner, filled := fillRunner(job.Runner, e.Runner); filled {
			job.Runner, changed = runner, true
		}
		if changed {
			touch(&job, ev.ReceivedAt)
		}
		return Decision{Verdict: Duplicate, Job: job, Changed: changed}
	}
	prev := job.State
	job.State = e.State
	lower := job.CreatedAt
	if job.StartedAt != nil {
		lower = *job.StartedAt
	}
	job.FinishedAt = keptTime(e.FinishedAt, ev.ReceivedAt, lower, nil)
	job.Crash = nil
	if e.State == Crashed {
		job.Crash = NormalizeCrash(e.Crash)
	}
	if e.ArtifactsURL != "" {
		job.ArtifactsURL = e.ArtifactsURL
	}
	if e.LogURL != "" {
		job.LogURL = e.LogURL
	}
	job.Runner = overlayRunner(job.Runner, e.Runner)
	enter(&job, ev.ReceivedAt)
	return applied(job, prev)
}

// ClockSkew is how far ahead of ExecDB's clock a reported time may be and still be kept as
// reported: the clocks of workers and ExecDB may differ by this much.
const ClockSkew = 5 * time.Minute

// keptTime is the time a job keeps for a start or an end (CONTRACT section 1, v1.1): the time
// the report gives, or when ExecDB received it when it gives none, brought into the job's
// order:
//   - a reported time more than ClockSkew after ExecDB received the report lies in the future:
//     the receive time replaces it;
//   - a time after upper (finished_at, for a start that arrives after the end) is lowered to
//     upper;
//   - a time before lower (created_at for a start; started_at, or else created_at, for an end)
//     is raised to lower.
func keptTime(reported *time.Time, received, lower time.Time, upper *time.Time) *time.Time {
	t := received
	if reported != nil && !reported.After(received.Add(ClockSkew)) {
		t = *reported
	}
	if upper != nil && t.After(*upper) {
		t = *upper
	}
	if t.Before(lower) {
		t = lower
	}
	t = t.UTC()
	return &t
}

// enter records that the job entered its new state at ExecDB's time received (never before it
// entered the previous one), and touches it.
func enter(job *Job, received time.Time) {
	if received.After(job.StateEnteredAt) {
		job.StateEnteredAt = received.UTC()
	}
	touch(job, received)
}

// touch sets updated_at to the latest of its old value, received and the job's times, so that
// created_at ≤ started_at ≤ finished_at ≤ updated_at holds.
func touch(job *Job, received time.Time) {
	latest := job.UpdatedAt
	for _, t := range []*time.Time{&received, job.StartedAt, job.FinishedAt} {
		if t != nil && t.After(latest) {
			latest = *t
		}
	}
	job.UpdatedAt = latest.UTC()
}

// runnerFields lists the fields of two runners side by side.
func runnerFields(a, b *Runner) [][2]*string {
	return [][2]*string{{&a.Name, &b.Name}, {&a.JobID, &b.JobID}, {&a.Worker, &b.Worker}, {&a.URL, &b.URL}}
}

// otherAttempt reports whether got names another run of the job than have: some field both
// name differs (another build, another worker).
func otherAttempt(have, got *Runner) bool {
	if have == nil || got == nil {
		return false
	}
	for _, f := range runnerFields(have, got) {
		if *f[0] != "" && *f[1] != "" && *f[0] != *f[1] {
			return true
		}
	}
	return false
}

// overlayRunner is have with every field that got sets taken from got: where a later report of
// the runner says something, it wins.
func overlayRunner(have, got *Runner) *Runner {
	if got == nil || *got == (Runner{}) {
		return have
	}
	var r Runner
	if have != nil {
		r = *have
	}
	for _, f := range runnerFields(&r, got) {
		if *f[1] != "" {
			*f[0] = *f[1]
		}
	}
	return &r
}

// fillRunner is have with the fields it lacks taken from got; filled reports whether any was.
func fillRunner(have, got *Runner) (r *Runner, filled bool) {
	if got == nil {
		return have, false
	}
	var c Runner
	if have != nil {
		c = *have
	}
	for _, f := range runnerFields(&c, got) {
		if *f[0] == "" && *f[1] != "" {
			*f[0], filled = *f[1], true
		}
	}
	if !filled {
		return have, false
	}
	return &c, true
}

func applied(job Job, prev State) Decision {
	return Decision{
		Verdict: Applied,
		Job:     job,
		Changed: true,
		Message: &Message{TopicSuffix: TopicSuffix(job), PreviousState: &prev, Job: job},
	}
}

// NormalizeCrash fills the defaults of a crash report: unknown notify and cause, no keyvals.
func NormalizeCrash(c *Crash) *Crash {
	n := Crash{Notify: NotifyUnknown, Cause: CauseUnknown, KeyVals: KeyVals{}}
	if c != nil {
		n.Fatal = c.Fatal
		if c.Notify != "" {
			n.Notify = c.Notify
		}
		if c.Cause != "" {
			n.Cause = c.Cause
		}
		if c.KeyVals != nil {
			n.KeyVals = c.KeyVals
		}
	}
	return &n
}

// SameOutcome reports whether two end reports say the same thing: the same final state and, for
// a crash, the same classification and keyvals. A watchdog's crash and a runner's crash differ.
func SameOutcome(state State, crash *Crash, otherState State, otherCrash *Crash) bool {
	if state != otherState {
		return false
	}
	if state != Crashed {
		return true
	}
	a, b := NormalizeCrash(crash), NormalizeCrash(otherCrash)
	return a.Notify == b.Notify && a.Cause == b.Cause && a.Fatal == b.Fatal &&
		(len(a.KeyVals) == 0 && len(b.KeyVals) == 0 || reflect.DeepEqual(a.KeyVals, b.KeyVals))
}

// TopicSuffix is the topic, without the configured prefix, announcing the job's current state.
func TopicSuffix(job Job) string {
	switch job.State {
	case Scheduled:
		return "execdb.job.scheduled"
	case Running:
		return "execdb.job.running"
	case Finished:
		return "execdb.job.finished"
	default:
		c := NormalizeCrash(job.Crash)
		return "execdb.job.crashed." + string(c.Notify) + "." + string(c.Cause)
	}
}
