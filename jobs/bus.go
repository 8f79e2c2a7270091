package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
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
	Reason  storage.RejectReason
	Field   string     // the failing field, for storage.RejectSchema
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
	// Result is the service's result of a create or an event that reached its job (applied,
	// duplicate, late or conflict); zero otherwise.
	Result Result
	// Reason is why the message was rejected.
	Reason storage.RejectReason
	// Rejection is the rejection as stored, when Outcome is BusRejected.
	Rejection *Rejection
	// Unstored reports a rejection the database refused to keep (set by the consumer, never
	// by ApplyBus): the message is dead-lettered and counted, but not listed.
	Unstored bool
	// Seen reports that the message id was known: nothing was done.
	Seen bool
}

// ApplyBus applies bus messages as one unit of work, in order: triggers create jobs (and apply
// the events parked for them), starts and ends go through the state machine or are parked when
// their job is unknown, rejections are stored. A message whose id was applied before changes
// nothing. When ApplyBus returns an error nothing was applied.
func (s *Service) ApplyBus(ctx context.Context, msgs []BusMessage) ([]BusResult, error) {
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

	results := make([]BusResult, len(prepared))
	err := s.run(ctx, func(u *unit) error {
		clear(results)
		// Every create's request id and parked events are loaded, also those of a message
		// seen before: what it does not apply is parked again.
		l := storage.Load{Keys: keys, SeenIDs: ids, SeenAt: now, Jobs: keys}
		var creates []statemachine.NewJob
		for _, m := range prepared {
			if m.Create != nil {
				creates = append(creates, *m.Create)
			}
		}
		loadCreates(&l, creates)
		fresh, err := u.load(ctx, l)
		if err != nil {
			return err
		}
		isNew := make(map[string]bool, len(ids))
		for i, id := range ids {
			isNew[id] = fresh[i]
		}
		todo := make([]bool, len(prepared))
		for i, m := range prepared {
			todo[i] = first[m.Meta.MessageID] == i && isNew[m.Meta.MessageID]
		}
		for i, m := range prepared {
			if !todo[i] {
				results[i] = BusResult{Outcome: BusDuplicate, Kind: m.Kind(), Seen: true}
				continue
			}
			if results[i], err = u.apply(ctx, m); err != nil {
				return fmt.Errorf("message %s on %s: %w", m.Meta.MessageID, m.Topic, err)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("apply %d bus messages: %w", len(msgs), err)
	}
	return results, nil
}

// apply applies one bus message inside ApplyBus's unit, which has locked and loaded what it
// names.
func (u *unit) apply(ctx context.Context, m BusMessage) (BusResult, error) {
	switch {
	case m.Reject != nil:
		if err := u.reject(ctx, m, *m.Reject); err != nil {
			return BusResult{}, err
		}
		return BusResult{Outcome: BusRejected, Kind: m.Reject.Kind, Reason: m.Reject.Reason, Rejection: m.Reject}, nil
	case m.Create != nil:
		r, rej, err := u.create(*m.Create, m.Meta, m.uuidIssued)
		if err != nil {
			return BusResult{}, err
		}
		if rej != nil {
			if err := u.reject(ctx, m, *rej); err != nil {
				return BusResult{}, err
			}
			return BusResult{Outcome: BusRejected, Kind: statemachine.EventCreate, Reason: rej.Reason, Rejection: rej}, nil
		}
		return BusResult{Outcome: outcome(r.Verdict), Kind: statemachine.EventCreate, Result: r}, nil
	case m.Event != nil:
		if _, ok := u.jobs[m.JobUUID]; !ok {
			u.park(storage.ParkedEvent{JobUUID: m.JobUUID, Event: *m.Event, Topic: m.Topic, Body: m.Body, ParkedAt: m.Meta.ReceivedAt})
			return BusResult{Outcome: BusParked, Kind: m.Kind()}, nil
		}
		r, rej := u.event(m.JobUUID, *m.Event, m.Topic, m.Body, true)
		return BusResult{Outcome: outcome(r.Verdict), Kind: m.Kind(), Result: r, Rejection: rej, Reason: reasonOf(rej)}, nil
	}
	return BusResult{}, errors.New("bus message asks for nothing")
}

// ExpireParked rejects as unknown_job up to limit events parked longer than ttl, and returns
// them.
func (s *Service) ExpireParked(ctx context.Context, ttl time.Duration, limit int) ([]storage.RejectedMessage, error) {
	now := s.stamp(statemachine.Meta{}).ReceivedAt
	var out []storage.RejectedMessage
	err := s.run(ctx, func(u *unit) error {
		expired, err := u.tx.TakeExpired(ctx, now.Add(-ttl), limit)
		if err != nil {
			return err
		}
		for _, p := range expired {
			id := p.JobUUID
			m := BusMessage{Meta: p.Event.Meta, Topic: p.Topic, Body: p.Body}
			r := rejected(m, Rejection{Reason: storage.RejectUnknownJob, JobUUID: &id, Kind: p.Event.Kind(),
				Detail: fmt.Sprintf("no job %s was created within %s", id, ttl)})
			r.RejectedAt = now
			u.w.Rejected = append(u.w.Rejected, r)
		}
		out = u.w.Rejected
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("expire parked events: %w", err)
	}
	return out, nil
}

func reasonOf(r *Rejection) storage.RejectReason {
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
	return &Rejection{Reason: storage.RejectConflict, JobUUID: &id, Kind: statemachine.EventEnd,
		Detail: "job already " + string(job.State) + " with another outcome; the first outcome stays"}
}

// rejected builds the stored form of a rejected message. Text fields that break the text rule
// (a topic or field name with NUL or invalid UTF-8) are kept escaped (schemas.Escape) and
// bounded, so that they can be stored and shown; the body is kept as bytes, truncated.
func rejected(m BusMessage, r Rejection) storage.RejectedMessage {
	size := max(m.BodySize, len(m.Body))
	return storage.RejectedMessage{
		Transport: statemachine.Origin(schemas.EscapeTruncate(string(m.Meta.Origin), 32)),
		Topic:     schemas.EscapeTruncate(m.Topic, 1024), MessageID: schemas.EscapeTruncate(m.Meta.MessageID, 1024),
		Reason: r.Reason, Field: schemas.EscapeTruncate(r.Field, 1024), Detail: schemas.EscapeTruncate(r.Detail, 4096),
		JobUUID: r.JobUUID, Body: truncate(m.Body), BodySize: size,
		BodyTruncated: size > storage.MaxRejectedBody || size > len(m.Body),
		ReceivedAt:    m.Meta.ReceivedAt, RejectedAt: m.Meta.ReceivedAt,
	}
}

func truncate(b []byte) []byte {
	if len(b) > storage.MaxRejectedBody {
		return bytes.Clone(b[:storage.MaxRejectedBody])
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
