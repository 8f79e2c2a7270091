package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// BusMessage is a message received from a bus, decoded into what it asks for: exactly one of
// Create, Event (with JobUUID) and Reject is set.
type BusMessage struct {
	// Meta says where the message came from: Origin (amqp or fedmsg), MessageID (the dedup key,
	// never empty) and ReceivedAt (zero means now).
	Meta  statemachine.Meta
	Topic string
	Body  []byte // the raw body, kept with a parked or rejected message
	// BodySize is the size of the body as sent, when the transport kept only its beginning
	// in Body; 0 means len(Body).
	BodySize int

	Create  *statemachine.NewJob // a trigger
	JobUUID uuid.UUID            // the job Event is about
	Event   *statemachine.Event  // a start or end; its Meta is taken from the message's
	Reject  *Rejection           // the message could not be decoded

	uuidIssued bool // the trigger named no uuid: ExecDB issued one
}

// Kind is the kind of event the message carries; empty for one rejected undecoded.
func (m BusMessage) Kind() statemachine.EventKind {
	switch {
	case m.Create != nil:
		return statemachine.EventCreate
	case m.Event != nil:
		return m.Event.Kind()
	}
	return ""
}

// Rejection says why a message is rejected.
type Rejection struct {
	Reason  RejectReason
	Field   string     // the failing field, for RejectSchema
	Detail  string     // what was wrong
	JobUUID *uuid.UUID // the job the message names, when it names one
	// Kind is what the message would have done, by its topic (create, start or end); empty
	// for an unknown topic. The rejection of a message that names a job that exists is
	// recorded in that job's history as an event of this kind, verdict rejected.
	Kind statemachine.EventKind
}

// BusOutcome is what applying a bus message did.
type BusOutcome string

// The outcomes of a bus message.
const (
	// BusApplied: the message created a job or changed one.
	BusApplied BusOutcome = "applied"
	// BusDuplicate: nothing changed. Either the message id was seen before (nothing was
	// recorded) or the event repeats one already applied (recorded in the job's history).
	BusDuplicate BusOutcome = "duplicate"
	// BusParked: the event waits for its job to be created.
	BusParked BusOutcome = "parked"
	// BusRejected: the message is kept as rejected. Conflicting events, and rejected messages
	// naming a job that exists, are also in that job's history.
	BusRejected BusOutcome = "rejected"
	// BusLate: a start for a job that already ended. It is recorded in the job's history and
	// fills in what the job lacks (CONTRACT section 2, v1.1), but it is no error: with several
	// processes, or producers that reorder, an end may well overtake its start.
	BusLate BusOutcome = "late"
)

// BusResult is the outcome of one BusMessage.
type BusResult struct {
	Outcome BusOutcome
	Kind    statemachine.EventKind // create, start or end; empty for an undecodable message
	// Result is the store's result of a create or an event that reached its job (applied,
	// duplicate, late or conflict); zero otherwise.
	Result Result
	// Reason is why the message was rejected.
	Reason RejectReason
	// Rejection is the rejection as stored, when Outcome is BusRejected.
	Rejection *Rejection
	// Unstored reports a rejection the database refused to keep (set by the consumer, never
	// by ApplyBus): the message is dead-lettered and counted, but not listed.
	Unstored bool
	// Seen reports that the message id was known: nothing was done.
	Seen bool
}

// ParkedApplied is an event that had waited for its job and was applied when the job was
// created.
type ParkedApplied struct {
	Meta   statemachine.Meta
	Kind   statemachine.EventKind
	Result Result
	// Reason is set when the event was also rejected (late or conflict).
	Reason RejectReason
}

// ApplyBus applies bus messages in one transaction, in order: triggers create jobs (and apply
// the events parked for them), starts and ends go through the state machine or are parked when
// their job is unknown, rejections are stored. A message whose id was applied before changes
// nothing. When ApplyBus returns an error nothing was applied.
func (s *Store) ApplyBus(ctx context.Context, msgs []BusMessage) ([]BusResult, error) {
	now := s.stamp(statemachine.Meta{}).ReceivedAt
	prepared := make([]BusMessage, len(msgs))
	for i, m := range msgs {
		if m.Meta.MessageID == "" {
			return nil, fmt.Errorf("bus message %d on %s: no message id", i, m.Topic)
		}
		m.Meta = s.stamp(m.Meta)
		if m.Event != nil {
			ev := truncateTimes(*m.Event)
			ev.Meta = m.Meta
			m.Event = &ev
		}
		if m.Create != nil {
			n := *m.Create
			if n.UUID == uuid.Nil {
				id, err := uuid.NewV7()
				if err != nil {
					return nil, fmt.Errorf("issue uuid: %w", err)
				}
				n.UUID = id
				m.uuidIssued = true
			}
			if n.RequestID == "" {
				n.RequestID = n.UUID.String()
			}
			m.Create = &n
		}
		prepared[i] = m
	}
	// The first of several messages with one id in the batch is the one that counts.
	first := map[string]int{}
	var ids []string
	for i, m := range prepared {
		if _, ok := first[m.Meta.MessageID]; !ok {
			first[m.Meta.MessageID] = i
			ids = append(ids, m.Meta.MessageID)
		}
	}
	var keys []uuid.UUID
	for _, m := range prepared {
		switch {
		case m.Event != nil:
			keys = append(keys, m.JobUUID)
		case m.Create != nil:
			keys = append(keys, m.Create.UUID)
		case m.Reject != nil && m.Reject.JobUUID != nil:
			keys = append(keys, *m.Reject.JobUUID)
		}
	}
	keys = sortedUnique(keys)

	results := make([]BusResult, len(prepared))
	err := s.backend.InTx(ctx, func(tx Tx) error {
		clear(results)
		if len(keys) > 0 {
			if err := tx.LockKeys(ctx, keys); err != nil {
				return fmt.Errorf("lock jobs: %w", err)
			}
		}
		fresh, err := tx.MarkSeen(ctx, ids, now)
		if err != nil {
			return fmt.Errorf("mark message ids: %w", err)
		}
		isNew := make(map[string]bool, len(ids))
		for i, id := range ids {
			isNew[id] = fresh[i]
		}
		todo := make([]bool, len(prepared))
		for i, m := range prepared {
			todo[i] = first[m.Meta.MessageID] == i && isNew[m.Meta.MessageID]
		}
		u, err := s.load(ctx, tx, prepared, todo, keys)
		if err != nil {
			return err
		}
		for i, m := range prepared {
			if !todo[i] {
				results[i] = BusResult{Outcome: BusDuplicate, Kind: m.Kind(), Seen: true}
				continue
			}
			if results[i], err = u.apply(m); err != nil {
				return fmt.Errorf("message %s on %s: %w", m.Meta.MessageID, m.Topic, err)
			}
		}
		return tx.WriteBatch(ctx, u.writes())
	})
	if err != nil {
		return nil, fmt.Errorf("apply %d bus messages: %w", len(msgs), err)
	}
	return results, nil
}

// unit is a batch's work in memory: the jobs it reads and changes, and what it will write.
type unit struct {
	s         *Store
	jobs      map[uuid.UUID]statemachine.Job // every job the batch knows, as it stands now
	isNew     map[uuid.UUID]bool
	newOrder  []uuid.UUID
	changed   []uuid.UUID // existing jobs changed, in first-change order
	byRequest map[string]uuid.UUID
	parked    map[uuid.UUID][]ParkedEvent // waiting for their job, oldest first
	w         BatchWrites
}

// load reads what the batch needs in a few queries: the jobs it names (locked), the jobs its
// triggers' request ids created, and the events parked for the jobs it will create.
func (s *Store) load(ctx context.Context, tx Tx, msgs []BusMessage, todo []bool, keys []uuid.UUID) (*unit, error) {
	u := &unit{s: s, isNew: map[uuid.UUID]bool{}, byRequest: map[string]uuid.UUID{}, parked: map[uuid.UUID][]ParkedEvent{}}
	var err error
	if u.jobs, err = tx.LockJobs(ctx, keys); err != nil {
		return nil, fmt.Errorf("read jobs: %w", err)
	}
	var reqs []string
	for i, m := range msgs {
		if todo[i] && m.Create != nil {
			reqs = append(reqs, m.Create.RequestID)
		}
	}
	if len(reqs) > 0 {
		byReq, err := tx.JobsByRequestID(ctx, reqs)
		if err != nil {
			return nil, fmt.Errorf("read jobs by request id: %w", err)
		}
		for req, job := range byReq {
			u.byRequest[req] = job.UUID
			if _, ok := u.jobs[job.UUID]; !ok {
				u.jobs[job.UUID] = job
			}
		}
	}
	// Which triggers will create a job: parked events are taken for those only.
	reqSeen := map[string]bool{}
	for req := range u.byRequest {
		reqSeen[req] = true
	}
	var creating []uuid.UUID
	created := map[uuid.UUID]bool{}
	for i, m := range msgs {
		if !todo[i] || m.Create == nil {
			continue
		}
		n := m.Create
		if reqSeen[n.RequestID] {
			continue
		}
		if _, taken := u.jobs[n.UUID]; taken || created[n.UUID] {
			continue
		}
		reqSeen[n.RequestID] = true
		created[n.UUID] = true
		creating = append(creating, n.UUID)
	}
	if len(creating) > 0 {
		parked, err := tx.TakeParked(ctx, creating)
		if err != nil {
			return nil, fmt.Errorf("take parked events: %w", err)
		}
		for _, p := range parked {
			u.parked[p.JobUUID] = append(u.parked[p.JobUUID], p)
		}
	}
	return u, nil
}

func (u *unit) apply(m BusMessage) (BusResult, error) {
	switch {
	case m.Reject != nil:
		u.w.Rejected = append(u.w.Rejected, rejected(m, *m.Reject))
		if id := m.Reject.JobUUID; id != nil && m.Reject.Kind != "" {
			if job, ok := u.jobs[*id]; ok {
				res := Result{Job: job, Verdict: statemachine.Rejected, StateFrom: job.State}
				detail := map[string]string{"reason": string(m.Reject.Reason), "field": m.Reject.Field, "detail": m.Reject.Detail}
				u.w.History = append(u.w.History, u.s.history(*id, m.Reject.Kind, res, m.Meta, detail))
			}
		}
		return BusResult{Outcome: BusRejected, Kind: m.Reject.Kind, Reason: m.Reject.Reason, Rejection: m.Reject}, nil
	case m.Create != nil:
		return u.create(m)
	case m.Event != nil:
		if _, ok := u.jobs[m.JobUUID]; !ok {
			p := ParkedEvent{JobUUID: m.JobUUID, Event: *m.Event, Topic: m.Topic, Body: m.Body, ParkedAt: m.Meta.ReceivedAt}
			u.parked[m.JobUUID] = append(u.parked[m.JobUUID], p)
			return BusResult{Outcome: BusParked, Kind: m.Kind()}, nil
		}
		r, rej, err := u.event(m.JobUUID, *m.Event, m.Topic, m.Body)
		if err != nil {
			return BusResult{}, err
		}
		res := BusResult{Outcome: outcome(r.Verdict), Kind: m.Kind(), Result: r, Rejection: rej}
		if rej != nil {
			res.Reason = rej.Reason
		}
		return res, nil
	}
	return BusResult{}, errors.New("bus message asks for nothing")
}

// create is Create inside the batch.
func (u *unit) create(m BusMessage) (BusResult, error) {
	n := *m.Create
	if id, ok := u.byRequest[n.RequestID]; ok {
		existing := u.jobs[id]
		if !m.uuidIssued && existing.UUID != n.UUID {
			// As over HTTP: the same request naming another uuid is not a repeat.
			rej := Rejection{Reason: RejectConflict, Field: "uuid", JobUUID: &id,
				Detail: fmt.Sprintf("request id %q already created job %s", n.RequestID, id)}
			u.w.Rejected = append(u.w.Rejected, rejected(m, rej))
			return BusResult{Outcome: BusRejected, Kind: statemachine.EventCreate, Reason: RejectConflict, Rejection: &rej}, nil
		}
		res := Result{Job: existing, Verdict: statemachine.Duplicate, StateFrom: existing.State}
		u.w.History = append(u.w.History, u.s.history(existing.UUID, statemachine.EventCreate, res, m.Meta, createDetail(n)))
		return BusResult{Outcome: BusDuplicate, Kind: statemachine.EventCreate, Result: res}, nil
	}
	if _, taken := u.jobs[n.UUID]; taken {
		id := n.UUID
		rej := Rejection{Reason: RejectConflict, Field: "uuid", JobUUID: &id,
			Detail: "uuid already used by a job another request created"}
		u.w.Rejected = append(u.w.Rejected, rejected(m, rej))
		return BusResult{Outcome: BusRejected, Kind: statemachine.EventCreate, Reason: RejectConflict, Rejection: &rej}, nil
	}
	job, msg := statemachine.Create(n, m.Meta.ReceivedAt)
	u.jobs[job.UUID], u.isNew[job.UUID], u.byRequest[n.RequestID] = job, true, job.UUID
	u.newOrder = append(u.newOrder, job.UUID)
	res := Result{Job: job, Verdict: statemachine.Applied, Created: true}
	u.w.History = append(u.w.History, u.s.history(job.UUID, statemachine.EventCreate, res, m.Meta, createDetail(n)))
	if err := u.queue(msg, m.Meta.ReceivedAt); err != nil {
		return BusResult{}, err
	}
	parked := u.parked[job.UUID]
	delete(u.parked, job.UUID)
	for _, p := range inLifecycleOrder(parked) {
		ev := truncateTimes(p.Event)
		r, rej, err := u.event(job.UUID, ev, p.Topic, p.Body)
		if err != nil {
			return BusResult{}, fmt.Errorf("apply parked %s %s: %w", ev.Kind(), ev.MessageID, err)
		}
		res.Parked = append(res.Parked, ParkedApplied{Meta: ev.Meta, Kind: ev.Kind(), Result: r, Reason: reasonOf(rej)})
	}
	res.Job = u.jobs[job.UUID]
	return BusResult{Outcome: BusApplied, Kind: statemachine.EventCreate, Result: res}, nil
}

// event runs the state machine on a job the batch knows, as Apply does, and returns the
// rejection it stored for a conflicting event.
func (u *unit) event(id uuid.UUID, ev statemachine.Event, topic string, body []byte) (Result, *Rejection, error) {
	job := u.jobs[id]
	d := statemachine.Apply(job, ev)
	res := Result{Job: d.Job, Verdict: d.Verdict, StateFrom: job.State}
	if d.Changed {
		if !u.isNew[id] && !slices.Contains(u.changed, id) {
			u.changed = append(u.changed, id)
		}
		u.jobs[id] = d.Job
	}
	var payload any = ev.End
	if ev.Start != nil {
		payload = ev.Start
	}
	u.w.History = append(u.w.History, u.s.history(id, ev.Kind(), res, ev.Meta, payload))
	if d.Message != nil {
		if err := u.queue(*d.Message, ev.ReceivedAt); err != nil {
			return res, nil, err
		}
	}
	rej := conflictRejection(job, d.Verdict)
	if rej != nil {
		u.w.Rejected = append(u.w.Rejected, rejected(BusMessage{Meta: ev.Meta, Topic: topic, Body: body}, *rej))
	}
	return res, rej, nil
}

func reasonOf(r *Rejection) RejectReason {
	if r == nil {
		return ""
	}
	return r.Reason
}

// conflictRejection is the rejection of an event that disagrees with the job's recorded
// outcome, nil for any other verdict. (A late start is no rejection: see BusLate.)
func conflictRejection(job statemachine.Job, v statemachine.Verdict) *Rejection {
	if v != statemachine.Conflict {
		return nil
	}
	id := job.UUID
	return &Rejection{Reason: RejectConflict, JobUUID: &id, Kind: statemachine.EventEnd,
		Detail: "job already " + string(job.State) + " with another outcome; the first outcome stays"}
}

func (u *unit) queue(m statemachine.Message, at time.Time) error {
	out, err := u.s.outboxMessage(m, at)
	if err != nil {
		return err
	}
	u.w.Outbox = append(u.w.Outbox, out)
	return nil
}

// writes is what the batch leaves to write: the jobs in their final state, and the events
// parked in this batch that still wait for their job.
func (u *unit) writes() BatchWrites {
	w := u.w
	for _, id := range u.newOrder {
		w.NewJobs = append(w.NewJobs, u.jobs[id])
	}
	for _, id := range u.changed {
		w.Changed = append(w.Changed, u.jobs[id])
	}
	for _, ps := range u.parked {
		w.Parked = append(w.Parked, ps...)
	}
	slices.SortStableFunc(w.Parked, func(a, b ParkedEvent) int { return a.ParkedAt.Compare(b.ParkedAt) })
	return w
}

// applyParked applies the events parked for a job that was just created, in the order they
// arrived, and returns the job after them. The caller holds the job's key lock (LockKeys).
func (s *Store) applyParked(ctx context.Context, tx Tx, job statemachine.Job) (statemachine.Job, []ParkedApplied, error) {
	parked, err := tx.TakeParked(ctx, []uuid.UUID{job.UUID})
	if err != nil || len(parked) == 0 {
		return job, nil, err
	}
	applied := make([]ParkedApplied, 0, len(parked))
	for _, p := range inLifecycleOrder(parked) {
		ev := truncateTimes(p.Event)
		r, reason, err := s.applyEvent(ctx, tx, job, ev, p.Topic, p.Body)
		if err != nil {
			return job, nil, fmt.Errorf("apply parked %s %s: %w", ev.Kind(), ev.MessageID, err)
		}
		job = r.Job
		applied = append(applied, ParkedApplied{Meta: ev.Meta, Kind: ev.Kind(), Result: r, Reason: reason})
	}
	return job, applied, nil
}

// inLifecycleOrder orders the events that waited for a job: starts before ends, each kind in
// arrival order. What only the order of arrival mixed up is applied in the order it happened,
// so the job's history reads start, then end, whichever came first.
func inLifecycleOrder(parked []ParkedEvent) []ParkedEvent {
	sort.SliceStable(parked, func(i, j int) bool { return parked[i].Event.Start != nil && parked[j].Event.Start == nil })
	return parked
}

// applyEvent runs the state machine on a locked job and writes the outcome: the job, its
// history, the outgoing message, and for a late or conflicting event a rejected message.
func (s *Store) applyEvent(ctx context.Context, tx Tx, job statemachine.Job, ev statemachine.Event, topic string, body []byte) (Result, RejectReason, error) {
	d := statemachine.Apply(job, ev)
	res := Result{Job: d.Job, Verdict: d.Verdict, StateFrom: job.State}
	if d.Changed {
		if err := tx.UpdateJob(ctx, d.Job); err != nil {
			return res, "", err
		}
	}
	var payload any = ev.End
	if ev.Start != nil {
		payload = ev.Start
	}
	if err := tx.AppendHistory(ctx, s.history(job.UUID, ev.Kind(), res, ev.Meta, payload)); err != nil {
		return res, "", err
	}
	if d.Message != nil {
		if err := s.queue(ctx, tx, *d.Message, ev.ReceivedAt); err != nil {
			return res, "", err
		}
	}
	rej := conflictRejection(job, d.Verdict)
	if rej == nil {
		return res, "", nil
	}
	m := BusMessage{Meta: ev.Meta, Topic: topic, Body: body}
	if err := tx.AppendRejected(ctx, rejected(m, *rej)); err != nil {
		return res, "", err
	}
	return res, rej.Reason, nil
}

// ExpireParked rejects as unknown_job up to limit events parked longer than ttl, and returns
// them.
func (s *Store) ExpireParked(ctx context.Context, ttl time.Duration, limit int) ([]RejectedMessage, error) {
	now := s.stamp(statemachine.Meta{}).ReceivedAt
	var out []RejectedMessage
	err := s.backend.InTx(ctx, func(tx Tx) error {
		out = out[:0]
		expired, err := tx.TakeExpired(ctx, now.Add(-ttl), limit)
		if err != nil {
			return err
		}
		for _, p := range expired {
			id := p.JobUUID
			m := BusMessage{Meta: p.Event.Meta, Topic: p.Topic, Body: p.Body}
			r := rejected(m, Rejection{Reason: RejectUnknownJob, JobUUID: &id, Kind: p.Event.Kind(),
				Detail: fmt.Sprintf("no job %s was created within %s", id, ttl)})
			r.RejectedAt = now
			if err := tx.AppendRejected(ctx, r); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expire parked events: %w", err)
	}
	return out, nil
}

// rejected builds the stored form of a rejected message. Text fields that break the text rule
// (a topic or field name with NUL or invalid UTF-8) are kept escaped (schemas.Escape) and
// bounded, so that they can be stored and shown; the body is kept as bytes, truncated.
func rejected(m BusMessage, r Rejection) RejectedMessage {
	size := max(m.BodySize, len(m.Body))
	return RejectedMessage{
		Transport: statemachine.Origin(schemas.EscapeTruncate(string(m.Meta.Origin), 32)),
		Topic:     schemas.EscapeTruncate(m.Topic, 1024), MessageID: schemas.EscapeTruncate(m.Meta.MessageID, 1024),
		Reason: r.Reason, Field: schemas.EscapeTruncate(r.Field, 1024), Detail: schemas.EscapeTruncate(r.Detail, 4096),
		JobUUID: r.JobUUID, Body: truncate(m.Body), BodySize: size, BodyTruncated: size > MaxRejectedBody || size > len(m.Body),
		ReceivedAt: m.Meta.ReceivedAt, RejectedAt: m.Meta.ReceivedAt,
	}
}

func truncate(b []byte) []byte {
	if len(b) > MaxRejectedBody {
		return bytes.Clone(b[:MaxRejectedBody])
	}
	return b
}

func outcome(v statemachine.Verdict) BusOutcome {
	switch v {
	case statemachine.Applied:
		return BusApplied
	case statemachine.Duplicate:
		return BusDuplicate
	case statemachine.Late:
		return BusLate
	default:
		return BusRejected
	}
}

func sortedUnique(ids []uuid.UUID) []uuid.UUID {
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(ids)
}
