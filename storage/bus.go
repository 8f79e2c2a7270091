package storage

import (
	"context"
	"encoding/json"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// RejectReason says why a bus message was rejected.
type RejectReason string

// The reasons a bus message is rejected (CONTRACT section 3).
const (
	// RejectUndecodable: the body is not a JSON object (or the envelope could not be read).
	RejectUndecodable RejectReason = "undecodable"
	// RejectSchema: the body breaks the message's schema; the field is named.
	RejectSchema RejectReason = "schema"
	// RejectUnknownTopic: the topic is none of those ExecDB consumes.
	RejectUnknownTopic RejectReason = "unknown_topic"
	// RejectTopicMismatch: a fedmsg frame's topic disagrees with its envelope's.
	RejectTopicMismatch RejectReason = "topic_mismatch"
	// RejectUnknownJob: a start or end waited the park TTL for its job in vain.
	RejectUnknownJob RejectReason = "unknown_job"
	// RejectConflict: an end that disagrees with the job's recorded outcome, or a trigger whose
	// uuid another request took. The event is in the job's history.
	RejectConflict RejectReason = "conflict"
	// RejectLate: a start for a job that already ended. The event is in the job's history.
	RejectLate RejectReason = "late"
	// RejectUnprocessable: the database refused to store what the message asks for, e.g. a
	// string with a NUL character.
	RejectUnprocessable RejectReason = "unprocessable"
)

// MaxRejectedBody bounds the raw body kept with a rejected or parked message.
const MaxRejectedBody = 64 << 10

// RejectedMessage is a bus message that ExecDB did not apply, kept for people to look at.
type RejectedMessage struct {
	ID            int64               `json:"id"`
	Transport     statemachine.Origin `json:"transport"` // amqp or fedmsg
	Topic         string              `json:"topic"`
	MessageID     string              `json:"message_id"`
	Reason        RejectReason        `json:"reason"`
	Field         string              `json:"field,omitempty"`  // the failing field of a schema violation
	Detail        string              `json:"detail,omitempty"` // what exactly was wrong
	JobUUID       *uuid.UUID          `json:"job_uuid"`         // the job the message was about, when known
	Body          []byte              `json:"-"`                // the raw body, at most MaxRejectedBody bytes
	BodySize      int                 `json:"body_size"`        // the size of the whole body
	BodyTruncated bool                `json:"body_truncated"`
	ReceivedAt    time.Time           `json:"received_at"`
	RejectedAt    time.Time           `json:"rejected_at"`
}

// ParkedEvent is a start or end for a job ExecDB does not know (yet). It waits for the job to be
// created, at most the park TTL.
type ParkedEvent struct {
	ID       int64
	JobUUID  uuid.UUID
	Event    statemachine.Event // its Meta says where it came from
	Topic    string
	Body     []byte // the raw body, kept for the rejection should the job never come
	ParkedAt time.Time
}

// RejectedQuery selects rejected messages, newest first.
type RejectedQuery struct {
	BeforeID  int64               // only messages with a smaller id; 0 means from the newest
	Limit     int                 // at most this many; < 1 means none
	Reason    RejectReason        // only this reason when set
	Transport statemachine.Origin // only this transport when set
	MessageID string              // only messages with this (stored) message id when set
	JobUUID   *uuid.UUID          // only messages about this job when set
}

// OutboxStats describes the messages waiting to be published.
type OutboxStats struct {
	Backlog int64      // unpublished messages
	Oldest  *time.Time // creation time of the oldest unpublished message; nil when none
}

// Bus is what the bus consumers and the publisher relay need from a backend beyond the core.
// Implementations are safe for concurrent use.
type Bus interface {
	// Rejected lists rejected messages, newest first.
	Rejected(ctx context.Context, q RejectedQuery) ([]RejectedMessage, error)
	// DeletePublished removes the outbox messages with these ids: they were published. (A
	// delete, not an update that copies each row: the outbox stays small and cheap.)
	DeletePublished(ctx context.Context, ids []int64) error
	// OutboxStats counts the unpublished outbox messages.
	OutboxStats(ctx context.Context) (OutboxStats, error)
	// PruneSeen forgets the message ids received before the given time (see BusTx.MarkSeen)
	// and returns how many it forgot.
	PruneSeen(ctx context.Context, before time.Time) (int64, error)
}

// BusTx is what the bus consumers need inside a transaction beyond the core. The plural
// methods let a batch of messages cost a few round trips to the database rather than several
// per message.
type BusTx interface {
	// LockKeys keeps other transactions that lock one of the same job uuids waiting until this
	// transaction ends, whether a job with that uuid exists or not. It serialises parking an
	// event with creating its job. Callers lock every uuid of a transaction in one call, sorted.
	LockKeys(ctx context.Context, ids []uuid.UUID) error
	// MarkSeen records the message ids as received at the given time and reports, for each,
	// whether it is new: false for an id recorded before. The ids are distinct.
	MarkSeen(ctx context.Context, ids []string, at time.Time) ([]bool, error)
	// LockJobs returns the jobs among ids that exist, locked as LockJob locks one.
	LockJobs(ctx context.Context, ids []uuid.UUID) (map[uuid.UUID]statemachine.Job, error)
	// JobsByRequestID returns the jobs created by the given request ids, by request id.
	JobsByRequestID(ctx context.Context, requestIDs []string) (map[string]statemachine.Job, error)
	// Park keeps an event for a job that does not exist yet.
	Park(ctx context.Context, p ParkedEvent) error
	// TakeParked removes and returns the events parked for the jobs, oldest first.
	TakeParked(ctx context.Context, ids []uuid.UUID) ([]ParkedEvent, error)
	// TakeExpired removes and returns up to limit events parked before the given time, oldest
	// first. Concurrent callers get different events.
	TakeExpired(ctx context.Context, before time.Time, limit int) ([]ParkedEvent, error)
	// AppendRejected stores a rejected message.
	AppendRejected(ctx context.Context, r RejectedMessage) error
	// WriteBatch stores what a batch of bus messages did, in this order: new jobs, changed jobs,
	// history, outbox, parked events and rejected messages, each list in its order (history
	// and outbox ids increase along their lists).
	WriteBatch(ctx context.Context, w BatchWrites) error
}

// BatchWrites is what one batch of bus messages writes.
type BatchWrites struct {
	NewJobs  []statemachine.Job // inserted with their data, in their final state
	Changed  []statemachine.Job // existing jobs written back as UpdateJob does
	History  []HistoryEntry
	Outbox   []OutboxMessage
	Parked   []ParkedEvent
	Rejected []RejectedMessage
}

// eventPayload is how a parked event's Start or End is stored.
type eventPayload struct {
	Start *statemachine.Start `json:"start,omitempty"`
	End   *statemachine.End   `json:"end,omitempty"`
}

// EncodeEventPayload encodes the Start or End of ev for a backend to store with a parked event.
func EncodeEventPayload(ev statemachine.Event) ([]byte, error) {
	return json.Marshal(eventPayload{Start: ev.Start, End: ev.End})
}

// DecodeEventPayload restores into ev the Start or End that EncodeEventPayload encoded.
func DecodeEventPayload(b []byte, ev *statemachine.Event) error {
	var p eventPayload
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	ev.Start, ev.End = p.Start, p.End
	return nil
}
