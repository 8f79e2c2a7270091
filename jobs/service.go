// Package jobs is the job service: what a job may do, above the storage seam. It creates jobs,
// applies their starts and ends (over HTTP, in batches of bus messages, from the watchdog),
// reschedules them, parks and rejects bus messages, runs the sweeps and prunes, and reads them
// back. Every change is a unit of work (unit.go): read and lock the jobs it touches, run the
// state machine in memory, write the jobs, their history and outgoing messages with one
// storage.Tx.Write, commit; after the commit one hook (Config.OnCommit) is told what changed,
// for metrics and logs. The service never speaks SQL; a storage.Backend does.
package jobs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// DefaultTopicPrefix is the prefix of every topic when none is configured.
const DefaultTopicPrefix = "org.fedoraproject.dev"

// MessageSchema is the fedora_messaging_schema header of outgoing job-state messages.
const MessageSchema = "execdb.job.v1"

// MessageSchemaPackage is the fedora_messaging_schema_package header of outgoing job-state
// messages: the Python package (schemas/python) that gives fedora-messaging consumers the
// message class of MessageSchema.
const MessageSchemaPackage = "execdb-messages"

// Fedora-messaging severities.
const (
	SeverityInfo    = 20
	SeverityWarning = 30
)

// Config configures a Service. The zero value is usable.
type Config struct {
	// TopicPrefix is put before every outgoing topic; empty means DefaultTopicPrefix.
	TopicPrefix string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// BaseURL is the public URL ExecDB is served under (EXECDB_BASE_URL), e.g.
	// https://taskotron.example.org/execdb; when set, job-state messages carry the absolute
	// URL of the job's page in "url". Without a trailing slash.
	BaseURL string
	// AutoReschedule, when set, is the automatic rescheduler's policy (CONTRACT section 4): a
	// job that crashes is decided about in the same unit of work (decideAuto). Without it,
	// crashes wait for a DecideAutoReschedules sweep.
	AutoReschedule *statemachine.AutoPolicy
	// GroupCommit, when Lanes is set, groups concurrent writes over HTTP (Create, Apply,
	// Reschedule) into shared units of work (group.go). Call Close when done.
	GroupCommit GroupCommit
	// OnCommit, when set, is told what every committed unit of work did, after the commit, in
	// commit order per job: the hook for metrics and write logs. It must not block for long.
	OnCommit func(Commit)
}

// Commit is what one committed unit of work did: every event it recorded (a create, start,
// end, reschedule or automatic-reschedule decision, applied or not) and every bus message it
// rejected.
type Commit struct {
	Events   []Event
	Rejected []storage.RejectedMessage
}

// Event is one event a unit of work recorded in a job's history.
type Event struct {
	Meta   statemachine.Meta
	Kind   statemachine.EventKind
	Result Result
	// Auto is the decision of an auto_reschedule event.
	Auto *statemachine.AutoDecision
}

// Service is the job service. It is safe for concurrent use.
type Service struct {
	backend  storage.Backend
	prefix   string
	now      func() time.Time
	baseURL  string
	onCommit func(Commit)
	auto     *statemachine.AutoPolicy
	group    *committer // nil without group commit
}

// New returns the job service over backend.
func New(backend storage.Backend, cfg Config) *Service {
	s := &Service{backend: backend, prefix: cfg.TopicPrefix, now: cfg.Now, baseURL: strings.TrimRight(cfg.BaseURL, "/"),
		onCommit: cfg.OnCommit, auto: cfg.AutoReschedule}
	if s.prefix == "" {
		s.prefix = DefaultTopicPrefix
	}
	if s.now == nil {
		s.now = time.Now
	}
	if cfg.GroupCommit.Lanes > 0 {
		s.group = newCommitter(s, cfg.GroupCommit)
	}
	return s
}

// Close stops group commit's lanes, after the writes they took; a write submitted later is
// ErrClosed. It does not close the backend. Without group commit it does nothing.
func (s *Service) Close() {
	if s.group != nil {
		s.group.close()
	}
}

// Result is the outcome of a create or an event.
type Result struct {
	Job       statemachine.Job
	Verdict   statemachine.Verdict
	StateFrom statemachine.State // empty for a create
	Created   bool               // a create made a new job (false: the request id was known)
	Parked    []ParkedApplied    // events that waited for a created job and were applied to it
}

// ParkedApplied is an event that had waited for its job and was applied when the job was
// created.
type ParkedApplied struct {
	Meta   statemachine.Meta
	Kind   statemachine.EventKind
	Result Result
	// Reason is set when the event was also rejected (a conflict).
	Reason storage.RejectReason
}

// Create makes a SCHEDULED job, or returns the job an earlier create with the same request id
// made (Created false, verdict duplicate). A new job without a uuid gets a UUIDv7. An empty
// request id defaults to the job's uuid, so repeating a create that names its uuid is safe too.
// A uuid taken by a job another request made, or a request id that made a job with another
// uuid than this create names, is storage.ErrConflict. Events parked for the job are applied to
// it in the same transaction.
func (s *Service) Create(ctx context.Context, n statemachine.NewJob, meta statemachine.Meta) (Result, error) {
	uuidGiven := n.UUID != uuid.Nil
	if !uuidGiven {
		id, err := uuid.NewV7()
		if err != nil {
			return Result{}, fmt.Errorf("issue uuid: %w", err)
		}
		n.UUID = id
	}
	if n.RequestID == "" {
		n.RequestID = n.UUID.String()
	}
	stampInTx := meta.ReceivedAt.IsZero()
	var res Result
	create := write{key: n.UUID, create: &n, do: func(ctx context.Context, u *unit) error {
		m := meta
		if stampInTx {
			// Inside the transaction: on SQLite, whose writers take turns, created_at then
			// follows commit order, so a newest-first walk never passes a job still committing.
			m.ReceivedAt = time.Time{}
		}
		r, rej, err := u.create(n, s.stamp(m), !uuidGiven)
		if err != nil {
			return err
		}
		if rej != nil {
			return &createRefused{Rejection: *rej}
		}
		res = r
		return nil
	}}
	err := s.submit(ctx, create)
	var refused *createRefused
	if errors.Is(err, storage.ErrConflict) && !errors.As(err, &refused) {
		// A concurrent create with the same request id committed first: a second try finds
		// its job and records this one as a repeat (or refuses it).
		err = s.submit(ctx, create)
	}
	if err != nil {
		return Result{}, fmt.Errorf("create job %s: %w", n.UUID, err)
	}
	return res, nil
}

// createRefused is a create refused because its request id or uuid is taken (HTTP 409). It
// wraps storage.ErrConflict.
type createRefused struct {
	Rejection Rejection
}

func (e *createRefused) Error() string { return e.Rejection.Detail }

func (e *createRefused) Unwrap() error { return storage.ErrConflict }

// Apply runs a start or end event against the job with the given uuid: the state machine
// decides, and the new job, the history entry and the outgoing message commit together. An
// unknown job is storage.ErrNotFound.
func (s *Service) Apply(ctx context.Context, id uuid.UUID, ev statemachine.Event) (Result, error) {
	ev.Meta = s.stamp(ev.Meta)
	ev = truncateTimes(ev)
	var res Result
	err := s.submit(ctx, write{key: id, do: func(ctx context.Context, u *unit) error {
		if _, ok, err := u.lock(ctx, id); err != nil {
			return err
		} else if !ok {
			return storage.ErrNotFound
		}
		res, _ = u.event(id, ev, "", nil, false)
		return nil
	}})
	if err != nil {
		return Result{}, fmt.Errorf("apply %s to job %s: %w", ev.Kind(), id, err)
	}
	return res, nil
}

// Job returns the job with the given uuid or storage.ErrNotFound.
func (s *Service) Job(ctx context.Context, id uuid.UUID) (statemachine.Job, error) {
	return s.backend.Job(ctx, id)
}

// History returns the job's history, oldest first; storage.ErrNotFound for an unknown job.
func (s *Service) History(ctx context.Context, id uuid.UUID) ([]storage.HistoryEntry, error) {
	if _, err := s.backend.Job(ctx, id); err != nil {
		return nil, err
	}
	return s.backend.History(ctx, id)
}

// Now is the service's clock, for relative times in filters.
func (s *Service) Now() time.Time { return s.now() }

// TopicPrefix is the prefix of every topic the service's messages go out under, and the bus
// messages it is given come in under.
func (s *Service) TopicPrefix() string { return s.prefix }

// Ping checks that the database answers.
func (s *Service) Ping(ctx context.Context) error { return s.backend.Ping(ctx) }

// Rejected lists rejected bus messages, newest first.
func (s *Service) Rejected(ctx context.Context, q storage.RejectedQuery) ([]storage.RejectedMessage, error) {
	return s.backend.Rejected(ctx, q)
}

// PruneSeen forgets the bus message ids received before the given time (the dedup of
// ApplyBus) and returns how many it forgot.
func (s *Service) PruneSeen(ctx context.Context, before time.Time) (int64, error) {
	return s.backend.PruneSeen(ctx, before)
}

// OutboxStats counts the job-state messages waiting to be published.
func (s *Service) OutboxStats(ctx context.Context) (storage.OutboxStats, error) {
	return s.backend.OutboxStats(ctx)
}

// Search returns a page of jobs matching f, newest first. A limit of 0 means
// storage.DefaultLimit; one outside 1…storage.MaxLimit is an error.
func (s *Service) Search(ctx context.Context, f storage.Filter, page storage.Page) ([]statemachine.Job, *storage.Cursor, error) {
	if page.Limit == 0 {
		page.Limit = storage.DefaultLimit
	}
	if page.Limit < 1 || page.Limit > storage.MaxLimit {
		return nil, nil, fmt.Errorf("limit %d outside 1…%d", page.Limit, storage.MaxLimit)
	}
	jobs, next, err := s.backend.Search(ctx, f, page)
	if err != nil {
		return nil, nil, fmt.Errorf("search: %w", err)
	}
	return jobs, next, nil
}

// Stats counts the jobs matching q.Filter, grouped and bucketed as q says.
func (s *Service) Stats(ctx context.Context, q storage.StatsQuery) (storage.StatsResult, error) {
	res, err := s.backend.Stats(ctx, q)
	if err != nil {
		return res, fmt.Errorf("stats: %w", err)
	}
	if res.Rows == nil {
		res.Rows = []storage.StatsRow{}
	}
	return res, nil
}

// stamp fills the receive time and truncates times to what every backend stores (microseconds).
func (s *Service) stamp(m statemachine.Meta) statemachine.Meta {
	if m.ReceivedAt.IsZero() {
		m.ReceivedAt = s.now()
	}
	m.ReceivedAt = m.ReceivedAt.UTC().Truncate(time.Microsecond)
	return m
}

// truncateTimes rounds the times an event carries to microseconds, what every backend stores,
// so that the job a write answers equals the job read back later.
func truncateTimes(ev statemachine.Event) statemachine.Event {
	trunc := func(t *time.Time) *time.Time {
		if t == nil {
			return nil
		}
		u := t.UTC().Truncate(time.Microsecond)
		return &u
	}
	if ev.Start != nil {
		s := *ev.Start
		s.StartedAt = trunc(s.StartedAt)
		ev.Start = &s
	}
	if ev.End != nil {
		e := *ev.End
		e.FinishedAt = trunc(e.FinishedAt)
		ev.End = &e
	}
	return ev
}

// createDetail is what a create's history entry records of the request.
func createDetail(n statemachine.NewJob) map[string]any {
	d := map[string]any{"taskname": n.TaskName, "item": n.Item, "item_type": n.ItemType, "request_id": n.RequestID}
	if n.Arch != "" {
		d["arch"] = n.Arch
	}
	if n.Attempt > 0 {
		d["attempt"] = n.Attempt
	}
	if n.Data != nil {
		d["data"] = n.Data
	}
	if n.Source != nil {
		d["source"] = n.Source
	}
	if n.RescheduledFrom != nil {
		d["rescheduled_from"] = n.RescheduledFrom
	}
	return d
}

// historyEntry is the history entry of an event with result r.
func historyEntry(id uuid.UUID, kind statemachine.EventKind, r Result, meta statemachine.Meta, payload any) storage.HistoryEntry {
	detail, err := json.Marshal(payload)
	if err != nil {
		detail = nil
	}
	return storage.HistoryEntry{
		JobUUID: id, Kind: kind, Verdict: r.Verdict, Origin: meta.Origin, MessageID: meta.MessageID,
		Actor: meta.Actor, StateFrom: r.StateFrom, StateTo: r.Job.State, Detail: detail,
		RecordedAt: meta.ReceivedAt,
	}
}

// outboxMessage renders a job-state message (CONTRACT section 3, Out): the body is the job
// plus previous_state, and url with a base URL; the headers name the schema and its Python
// package, the severity, the routing fields and the packages the job is about.
func (s *Service) outboxMessage(m statemachine.Message, at time.Time) (storage.OutboxMessage, error) {
	id, err := uuid.NewRandom()
	if err != nil {
		return storage.OutboxMessage{}, fmt.Errorf("message id: %w", err)
	}
	job, err := m.Job.MarshalJSON() // compact already: json.Marshal would compact it again
	if err != nil {
		return storage.OutboxMessage{}, fmt.Errorf("encode job: %w", err)
	}
	prev, _ := json.Marshal(m.PreviousState)
	body := make([]byte, 0, len(job)+160)
	body = append(body, job[:len(job)-1]...)
	body = append(body, `,"previous_state":`...)
	body = append(body, prev...)
	if s.baseURL != "" {
		page, _ := json.Marshal(s.baseURL + "/jobs/" + m.Job.UUID.String())
		body = append(body, `,"url":`...)
		body = append(body, page...)
	}
	body = append(body, '}')
	severity := SeverityInfo
	headers := map[string]string{
		"fedora_messaging_schema":         MessageSchema,
		"fedora_messaging_schema_package": MessageSchemaPackage,
		"execdb_state":                    string(m.Job.State),
	}
	for _, name := range m.Job.Packages() {
		headers["fedora_messaging_rpm_"+name] = "true"
	}
	if c := m.Job.Crash; m.Job.State == statemachine.Crashed && c != nil {
		severity = SeverityWarning
		headers["execdb_notify"] = string(c.Notify)
		headers["execdb_cause"] = string(c.Cause)
		headers["execdb_fatal"] = strconv.FormatBool(c.Fatal)
	}
	headers["fedora_messaging_severity"] = strconv.Itoa(severity)
	return storage.OutboxMessage{
		MessageID: id, JobUUID: m.Job.UUID, Topic: s.prefix + "." + m.TopicSuffix,
		Body: body, Headers: headers, CreatedAt: at,
	}, nil
}
