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
		RescheduledFrom: n.RescheduledFrom, CreatedAt: now, UpdatedAt: now,
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
		job.StartedAt = timeOr(s.StartedAt, ev.ReceivedAt)
		if s.Runner != nil {
			job.Runner = s.Runner
		}
		job.UpdatedAt = ev.ReceivedAt
		return applied(job, prev)
	case Running:
		return Decision{Verdict: Duplicate, Job: job}
	default:
		// The end overtook the start. The state stays, but what only the start knows is kept so
		// that the final job does not depend on the order the two arrived in.
		changed := false
		if job.StartedAt == nil && s.StartedAt != nil {
			job.StartedAt = timeOr(s.StartedAt, ev.ReceivedAt)
			changed = true
		}
		if job.Runner == nil && s.Runner != nil {
			job.Runner = s.Runner
			changed = true
		}
		if changed {
			job.UpdatedAt = ev.ReceivedAt
		}
		return Decision{Verdict: Late, Job: job, Changed: changed}
	}
}

func applyEnd(job Job, ev Event) Decision {
	e := ev.End
	if job.State.Terminal() {
		if SameOutcome(job.State, job.Crash, e.State, e.Crash) {
			return Decision{Verdict: Duplicate, Job: job}
		}
		return Decision{Verdict: Conflict, Job: job}
	}
	prev := job.State
	job.State = e.State
	job.FinishedAt = timeOr(e.FinishedAt, ev.ReceivedAt)
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
	if e.Runner != nil {
		job.Runner = e.Runner
	}
	job.UpdatedAt = ev.ReceivedAt
	return applied(job, prev)
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

func timeOr(t *time.Time, fallback time.Time) *time.Time {
	if t != nil {
		u := t.UTC()
		return &u
	}
	u := fallback.UTC()
	return &u
}
