// Package statemachine is the pure core of ExecDB: the job, its states and the one function that
// decides what an event does to a job. It performs no I/O; time comes in with the event.
package statemachine

import (
	"encoding/json"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
)

// State is the lifecycle state of a job.
type State string

// The states of a job (CONTRACT section 2).
const (
	Scheduled State = "SCHEDULED"
	Running   State = "RUNNING"
	Finished  State = "FINISHED"
	Crashed   State = "CRASHED"
)

// States lists every state in lifecycle order.
var States = []State{Scheduled, Running, Finished, Crashed}

// Valid reports whether s is one of the four states.
func (s State) Valid() bool {
	switch s {
	case Scheduled, Running, Finished, Crashed:
		return true
	}
	return false
}

// Terminal reports whether no further transition leaves s.
func (s State) Terminal() bool { return s == Finished || s == Crashed }

// Notify says whose problem a crash is: who gets told.
type Notify string

// The values of Notify.
const (
	NotifyTaskotron Notify = "taskotron"
	NotifyTask      Notify = "task"
	NotifyUnknown   Notify = "unknown"
)

// Notifies lists every Notify value.
var Notifies = []Notify{NotifyTaskotron, NotifyTask, NotifyUnknown}

// Cause says what went wrong in a crash.
type Cause string

// The values of Cause.
const (
	CauseMinion       Cause = "minion"
	CauseTask         Cause = "task"
	CauseNetwork      Cause = "network"
	CauseLibtaskotron Cause = "libtaskotron"
	CauseUnknown      Cause = "unknown"
)

// Causes lists every Cause value.
var Causes = []Cause{CauseMinion, CauseTask, CauseNetwork, CauseLibtaskotron, CauseUnknown}

// KeyVals is multi-valued free detail, like ResultsDB result data: key → list of strings.
type KeyVals map[string][]string

// Crash classifies why a job crashed.
type Crash struct {
	Notify  Notify  `json:"notify"`
	Cause   Cause   `json:"cause"`
	Fatal   bool    `json:"fatal"`
	KeyVals KeyVals `json:"keyvals"`
}

// Runner identifies who runs a job, e.g. a Buildbot build. An empty field is unknown.
type Runner struct {
	Name   string `json:"name"`
	JobID  string `json:"jobid"`
	Worker string `json:"worker"`
	URL    string `json:"url"`
}

// MarshalJSON writes unknown (empty) fields as null, as CONTRACT section 1 shows the runner.
func (r Runner) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		Name   *string `json:"name"`
		JobID  *string `json:"jobid"`
		Worker *string `json:"worker"`
		URL    *string `json:"url"`
	}{nullable(r.Name), nullable(r.JobID), nullable(r.Worker), nullable(r.URL)})
}

// Source is the bus message that made Trigger ask for a job.
type Source struct {
	MsgID string `json:"msg_id"`
	Topic string `json:"topic"`
}

// Job is one execution of a task on an item.
type Job struct {
	UUID            uuid.UUID
	State           State
	TaskName        string
	Item            string
	ItemType        string
	Arch            string
	Data            KeyVals
	Source          *Source
	RequestID       string
	Runner          *Runner
	ArtifactsURL    string // empty means unknown
	LogURL          string // empty means unknown
	Crash           *Crash // set only when State is Crashed
	Attempt         int
	RescheduledFrom *uuid.UUID
	RescheduledTo   *uuid.UUID
	CreatedAt       time.Time
	StartedAt       *time.Time
	FinishedAt      *time.Time
	UpdatedAt       time.Time
	// StateEnteredAt is when the job entered its current state by ExecDB's own clock: when
	// ExecDB created it, applied its start or its end. The watchdog counts from it (CONTRACT
	// section 4, v1.1), never from a time a reporter sent. Not part of the wire form.
	StateEnteredAt time.Time
	// Auto is where a crashed job stands with the automatic rescheduler, and AutoDueAt when
	// its planned successor is due (set only with AutoPlanned). Not part of the wire form.
	Auto      AutoMark
	AutoDueAt *time.Time
}

// Href is the job's path in the HTTP API.
func (j Job) Href() string { return "/api/v1/jobs/" + j.UUID.String() }

// ItemTypeKojiBuild is the item type of a Koji build, whose item is an NVR.
const ItemTypeKojiBuild = "koji_build"

// Packages are the RPM package names the job is about, sorted and without repeats, for
// fedora-messaging's package filters (the fedora_messaging_rpm_<name> headers, and the
// packages of the execdb-messages Python class, which follows the same rule): the name of a
// koji_build item's NVR (the item without its last two "-" parts, version and release:
// "python-foo-1.0-2.fc45" → "python-foo"; an item of fewer than three parts names none), and
// every value of the trigger data's "packages" key, whatever the item type (a Bodhi update
// lists its builds' packages there). Empty names are left out.
func (j Job) Packages() []string {
	var names []string
	if j.ItemType == ItemTypeKojiBuild {
		if parts := strings.Split(j.Item, "-"); len(parts) >= 3 {
			names = append(names, strings.Join(parts[:len(parts)-2], "-"))
		}
	}
	names = append(names, j.Data["packages"]...)
	names = slices.DeleteFunc(names, func(s string) bool { return s == "" })
	slices.Sort(names)
	return slices.Compact(names)
}

// jobJSON is the wire form of a job (CONTRACT section 1).
type jobJSON struct {
	UUID            uuid.UUID  `json:"uuid"`
	State           State      `json:"state"`
	TaskName        string     `json:"taskname"`
	Item            string     `json:"item"`
	ItemType        string     `json:"item_type"`
	Arch            string     `json:"arch"`
	Data            KeyVals    `json:"data"`
	Source          *Source    `json:"source"`
	RequestID       string     `json:"request_id"`
	Runner          *Runner    `json:"runner"`
	ArtifactsURL    *string    `json:"artifacts_url"`
	LogURL          *string    `json:"log_url"`
	Crash           *Crash     `json:"crash"`
	Attempt         int        `json:"attempt"`
	RescheduledFrom *uuid.UUID `json:"rescheduled_from"`
	RescheduledTo   *uuid.UUID `json:"rescheduled_to"`
	CreatedAt       time.Time  `json:"created_at"`
	StartedAt       *time.Time `json:"started_at"`
	FinishedAt      *time.Time `json:"finished_at"`
	UpdatedAt       time.Time  `json:"updated_at"`
	Href            string     `json:"href"`
}

// MarshalJSON encodes the job as CONTRACT section 1 describes it: UTC times, null for unknowns.
func (j Job) MarshalJSON() ([]byte, error) {
	return json.Marshal(j.wire())
}

// UnmarshalJSON decodes the wire form written by MarshalJSON.
func (j *Job) UnmarshalJSON(b []byte) error {
	var w jobJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*j = Job{
		UUID: w.UUID, State: w.State, TaskName: w.TaskName, Item: w.Item, ItemType: w.ItemType,
		Arch: w.Arch, Data: w.Data, Source: w.Source, RequestID: w.RequestID, Runner: w.Runner,
		ArtifactsURL: deref(w.ArtifactsURL), LogURL: deref(w.LogURL), Crash: w.Crash,
		Attempt: w.Attempt, RescheduledFrom: w.RescheduledFrom, RescheduledTo: w.RescheduledTo,
		CreatedAt: w.CreatedAt, StartedAt: w.StartedAt, FinishedAt: w.FinishedAt, UpdatedAt: w.UpdatedAt,
	}
	return nil
}

func (j Job) wire() jobJSON {
	data := j.Data
	if data == nil {
		data = KeyVals{}
	}
	crash := j.Crash
	if crash != nil && crash.KeyVals == nil {
		c := *crash
		c.KeyVals = KeyVals{}
		crash = &c
	}
	return jobJSON{
		UUID: j.UUID, State: j.State, TaskName: j.TaskName, Item: j.Item, ItemType: j.ItemType,
		Arch: j.Arch, Data: data, Source: j.Source, RequestID: j.RequestID, Runner: j.Runner,
		ArtifactsURL: nullable(j.ArtifactsURL), LogURL: nullable(j.LogURL), Crash: crash,
		Attempt: j.Attempt, RescheduledFrom: j.RescheduledFrom, RescheduledTo: j.RescheduledTo,
		CreatedAt: j.CreatedAt.UTC(), StartedAt: utc(j.StartedAt), FinishedAt: utc(j.FinishedAt),
		UpdatedAt: j.UpdatedAt.UTC(), Href: j.Href(),
	}
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func utc(t *time.Time) *time.Time {
	if t == nil {
		return nil
	}
	u := t.UTC()
	return &u
}
