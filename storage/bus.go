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

// Bus is what the bus side (consumers, the outbox relay, the sweeper of message ids) needs from
// a backend beyond the core. Implementations are safe for concurrent use.
type Bus interface {
	// Rejected lists rejected messages, newest first.
	Rejected(ctx context.Context, q RejectedQuery) ([]RejectedMessage, error)
	// Outbox returns up to limit unpublished messages with ID > afterID, in ID order.
	Outbox(ctx context.Context, afterID int64, limit int) ([]OutboxMessage, error)
	// DeletePublished removes the outbox messages with these ids: they were published. (A
	// delete, not an update that copies each row: the outbox stays small and cheap.)
	DeletePublished(ctx context.Context, ids []int64) error
	// OutboxStats counts the unpublished outbox messages.
	OutboxStats(ctx context.Context) (OutboxStats, error)
	// Lead blocks until this process is the one among all sharing the database that relays
	// the outbox, then calls fn with a channel that receives a value when messages were
	// queued (nil when the backend has no such notice: poll), and returns when fn does; fn's
	// ctx ends when the lead is lost or ctx ends. A backend only one process uses (SQLite)
	// leads at once.
	Lead(ctx context.Context, fn func(ctx context.Context, wake <-chan struct{}) error) error
	// PruneSeen forgets the message ids received before the given time (see Load.SeenIDs)
	// and returns how many it forgot.
	PruneSeen(ctx context.Context, before time.Time) (int64, error)
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
