package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
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

// Config configures a Store. The zero value is usable.
type Config struct {
	// TopicPrefix is put before every outgoing topic; empty means DefaultTopicPrefix.
	TopicPrefix string
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// BaseURL is the public URL ExecDB is served under (EXECDB_BASE_URL), e.g.
	// https://taskotron.example.org/execdb; when set, job-state messages carry the absolute
	// URL of the job's page in "url". Without a trailing slash.
	BaseURL string
}

// Store applies creates and events to jobs through the state machine, atomically with their
// history and outgoing messages. It is safe for concurrent use.
type Store struct {
	backend Backend
	prefix  string
	now     func() time.Time
	baseURL string
}

// New returns a Store over backend.
func New(backend Backend, cfg Config) *Store {
	s := &Store{backend: backend, prefix: cfg.TopicPrefix, now: cfg.Now, baseURL: strings.TrimRight(cfg.BaseURL, "/")}
	if s.prefix == "" {
		s.prefix = DefaultTopicPrefix
	}
	if s.now == nil {
		s.now = time.Now
	}
	return s
}

// Backend returns the backend the store writes to, for reads.
func (s *Store) Backend() Backend { return s.backend }

// Result is the outcome of Create or Apply.
type Result struct {
	Job       statemachine.Job
	Verdict   statemachine.Verdict
	StateFrom statemachine.State // empty for a create
	Created   bool               // a create made a new job (false: the request id was known)
	Parked    []ParkedApplied    // events that waited for a created job and were applied to it
}

// Create makes a SCHEDULED job, or returns the job an earlier create with the same request id
// made (Created false, verdict duplicate). A new job without a uuid gets a UUIDv7. An empty
// request id defaults to the job's uuid, so repeating a create that names its uuid is safe too.
// A uuid that is taken by a job with another request id is ErrConflict.
func (s *Store) Create(ctx context.Context, n statemachine.NewJob, meta statemachine.Meta) (Result, error) {
	stampInTx := meta.ReceivedAt.IsZero()
	meta = s.stamp(meta)
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
	var res Result
	create := func(tx Tx) error {
		if stampInTx {
			// Inside the transaction: on SQLite, whose writers take turns, created_at then
			// follows commit order, so a newest-first walk never passes a job still committing.
			meta.ReceivedAt = s.stamp(statemachine.Meta{}).ReceivedAt
		}
		// Serialised with parking events for this uuid (store_bus.go).
		if err := tx.LockKeys(ctx, []uuid.UUID{n.UUID}); err != nil {
			return err
		}
		existing, err := tx.JobByRequestID(ctx, n.RequestID)
		if err == nil {
			if uuidGiven && existing.UUID != n.UUID {
				return &requestIDUsedError{requestID: n.RequestID, job: existing.UUID}
			}
			res = Result{Job: existing, Verdict: statemachine.Duplicate, StateFrom: existing.State}
			return tx.AppendHistory(ctx, s.history(existing.UUID, statemachine.EventCreate, res, meta, createDetail(n)))
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		job, msg := statemachine.Create(n, meta.ReceivedAt)
		if err := tx.InsertJob(ctx, job); err != nil {
			return err
		}
		res = Result{Job: job, Verdict: statemachine.Applied, Created: true}
		if err := tx.AppendHistory(ctx, s.history(job.UUID, statemachine.EventCreate, res, meta, createDetail(n))); err != nil {
			return err
		}
		if err := s.queue(ctx, tx, msg, meta.ReceivedAt); err != nil {
			return err
		}
		res.Job, res.Parked, err = s.applyParked(ctx, tx, job)
		return err
	}
	err := s.backend.InTx(ctx, create)
	var taken *requestIDUsedError
	if errors.Is(err, ErrConflict) && !errors.As(err, &taken) {
		// Either a concurrent create with the same request id won the race, and this one is a
		// repeat that a second try records as such, or the uuid is taken by another request.
		err = s.backend.InTx(ctx, create)
		if errors.Is(err, ErrConflict) && !errors.As(err, &taken) {
			return Result{}, fmt.Errorf("create job %s: uuid already used by another request: %w", n.UUID, ErrConflict)
		}
	}
	if err != nil {
		return Result{}, fmt.Errorf("create job %s: %w", n.UUID, err)
	}
	return res, nil
}

// requestIDUsedError is a create whose request id made a job with another uuid than it names.
type requestIDUsedError struct {
	requestID string
	job       uuid.UUID
}

func (e *requestIDUsedError) Error() string {
	return fmt.Sprintf("request id %q already created job %s", e.requestID, e.job)
}

func (e *requestIDUsedError) Unwrap() error { return ErrConflict }

// Apply runs a start or end event against the job with the given uuid: the state machine
// decides, and the new job, the history entry and the outgoing message commit together. An
// unknown job is ErrNotFound.
func (s *Store) Apply(ctx context.Context, id uuid.UUID, ev statemachine.Event) (Result, error) {
	ev.Meta = s.stamp(ev.Meta)
	ev = truncateTimes(ev)
	var res Result
	err := s.backend.InTx(ctx, func(tx Tx) error {
		job, err := tx.LockJob(ctx, id)
		if err != nil {
			return err
		}
		d := statemachine.Apply(job, ev)
		res = Result{Job: d.Job, Verdict: d.Verdict, StateFrom: job.State}
		if d.Changed {
			if err := tx.UpdateJob(ctx, d.Job); err != nil {
				return err
			}
		}
		var payload any = ev.End
		if ev.Start != nil {
			payload = ev.Start
		}
		if err := tx.AppendHistory(ctx, s.history(id, ev.Kind(), res, ev.Meta, payload)); err != nil {
			return err
		}
		if d.Message != nil {
			return s.queue(ctx, tx, *d.Message, ev.ReceivedAt)
		}
		return nil
	})
	if err != nil {
		return Result{}, fmt.Errorf("apply %s to job %s: %w", ev.Kind(), id, err)
	}
	return res, nil
}

// Job returns the job with the given uuid or ErrNotFound.
func (s *Store) Job(ctx context.Context, id uuid.UUID) (statemachine.Job, error) {
	return s.backend.Job(ctx, id)
}

// History returns the job's history, oldest first; ErrNotFound for an unknown job.
func (s *Store) History(ctx context.Context, id uuid.UUID) ([]HistoryEntry, error) {
	if _, err := s.backend.Job(ctx, id); err != nil {
		return nil, err
	}
	return s.backend.History(ctx, id)
}

// stamp fills the receive time and truncates times to what every backend stores (microseconds).
func (s *Store) stamp(m statemachine.Meta) statemachine.Meta {
	if m.ReceivedAt.IsZero() {
		m.ReceivedAt = s.now()
	}
	m.ReceivedAt = m.ReceivedAt.UTC().Truncate(time.Microsecond)
	return m
}

// truncateTimes rounds the times an event carries to microseconds, what every backend stores,
// so that the job Apply returns equals the job read back later.
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

func (s *Store) history(id uuid.UUID, kind statemachine.EventKind, r Result, meta statemachine.Meta, payload any) HistoryEntry {
	detail, err := json.Marshal(payload)
	if err != nil {
		detail = nil
	}
	return HistoryEntry{
		JobUUID: id, Kind: kind, Verdict: r.Verdict, Origin: meta.Origin, MessageID: meta.MessageID,
		Actor: meta.Actor, StateFrom: r.StateFrom, StateTo: r.Job.State, Detail: detail,
		RecordedAt: meta.ReceivedAt,
	}
}

func (s *Store) queue(ctx context.Context, tx Tx, m statemachine.Message, at time.Time) error {
	out, err := s.outboxMessage(m, at)
	if err != nil {
		return err
	}
	return tx.AppendOutbox(ctx, out)
}

// outboxMessage renders a job-state message (CONTRACT section 3, Out): the body is the job
// plus previous_state, and url with a base URL; the headers name the schema and its Python
// package, the severity, the routing fields and the packages the job is about.
func (s *Store) outboxMessage(m statemachine.Message, at time.Time) (OutboxMessage, error) {
	id, err := uuid.NewRandom()
	if err != nil {
		return OutboxMessage{}, fmt.Errorf("message id: %w", err)
	}
	job, err := json.Marshal(m.Job)
	if err != nil {
		return OutboxMessage{}, fmt.Errorf("encode job: %w", err)
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
	return OutboxMessage{
		MessageID: id, JobUUID: m.Job.UUID, Topic: s.prefix + "." + m.TopicSuffix,
		Body: body, Headers: headers, CreatedAt: at,
	}, nil
}
