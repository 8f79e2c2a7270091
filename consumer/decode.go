package consumer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// The topic suffixes ExecDB consumes (CONTRACT section 3, In).
const (
	SuffixTrigger = "taskotron.job.trigger"
	SuffixStart   = "taskotron.runtask.start"
	SuffixEnd     = "taskotron.runtask.end"
)

// MaxBodyBytes bounds a message body: a job request or runtask report is a few kilobytes, and
// a body beyond this is rejected before it is parsed. Give the subscribers the same limit, so
// that they keep only the beginning of larger bodies (bus.Truncate).
const MaxBodyBytes = 256 << 10

// Topics are the full topics ExecDB consumes under prefix.
func Topics(prefix string) []string {
	return []string{prefix + "." + SuffixTrigger, prefix + "." + SuffixStart, prefix + "." + SuffixEnd}
}

// Decode turns a delivery into what it asks the store to do. Whatever is wrong with it becomes
// a rejection with its reason, the field at fault, and the job it names when it names one;
// Decode never fails. The body is held to the text rule first (schemas.CheckJSON) and then
// decoded by the same decoders as HTTP bodies, so that the same mistake gets the same message
// on both ways in; unknown fields are ignored, as producers may be newer than ExecDB.
func Decode(d bus.Delivery, origin statemachine.Origin, prefix string) jobs.BusMessage {
	id, kept := d.ID, true
	if id == "" {
		id = bus.ContentID(d.Topic, d.Body)
	}
	id, kept = bus.StorableID(id)
	m := jobs.BusMessage{
		Meta:  statemachine.Meta{Origin: origin, MessageID: id, ReceivedAt: d.ReceivedAt},
		Topic: d.Topic, Body: d.Body, BodySize: max(d.BodySize, len(d.Body)),
	}
	suffix, known := strings.CutPrefix(d.Topic, prefix+".")
	var kind schemas.Body
	switch {
	case known && suffix == SuffixTrigger:
		kind = schemas.BodyTrigger
	case known && suffix == SuffixStart:
		kind = schemas.BodyStart
	case known && suffix == SuffixEnd:
		kind = schemas.BodyEnd
	}
	reject := func(reason storage.RejectReason, field, detail string) jobs.BusMessage {
		if !kept {
			detail += fmt.Sprintf(" (message id stored as its SHA-256; as sent: %s)", schemas.EscapeTruncate(d.ID, 512))
		}
		m.Reject = &jobs.Rejection{Reason: reason, Field: field, Detail: detail, Kind: eventKinds[kind]}
		if reason != storage.RejectUndecodable {
			m.Reject.JobUUID = namedJob(d.Body)
		}
		return m
	}
	switch {
	case errors.Is(d.Malformed, bus.ErrTopicMismatch):
		return reject(storage.RejectTopicMismatch, "topic", d.Malformed.Error())
	case errors.Is(d.Malformed, bus.ErrTooLarge) || len(d.Body) > MaxBodyBytes:
		return reject(storage.RejectSchema, "", fmt.Sprintf("body of %d bytes, more than %d", m.BodySize, MaxBodyBytes))
	case d.Malformed != nil:
		return reject(storage.RejectUndecodable, "", d.Malformed.Error())
	case kind == "":
		return reject(storage.RejectUnknownTopic, "", "ExecDB consumes "+strings.Join(Topics(prefix), ", "))
	}
	body := bytes.TrimSpace(d.Body)
	if !json.Valid(body) {
		return reject(storage.RejectUndecodable, "", "body is not JSON")
	}
	if len(body) == 0 || body[0] != '{' {
		return reject(storage.RejectUndecodable, "", "body is not a JSON object")
	}
	var err error
	switch kind {
	case schemas.BodyTrigger:
		var t schemas.Trigger
		if t, err = schemas.DecodeTrigger(body, schemas.Lenient); err == nil {
			n := statemachine.NewJob{UUID: t.UUID, TaskName: t.TaskName, Item: t.Item, ItemType: t.ItemType,
				Arch: t.Arch, Data: t.Data, Source: t.Source, RequestID: t.RequestID}
			if n.RequestID == "" {
				n.RequestID = id // idempotent on the message id
			}
			if n.Source == nil {
				n.Source = &statemachine.Source{MsgID: id, Topic: d.Topic}
			}
			m.Create = &n
		}
	case schemas.BodyStart:
		var s schemas.StartBody
		if s, err = schemas.DecodeStart(body, schemas.Lenient, true); err == nil {
			m.JobUUID, m.Event = s.UUID, &statemachine.Event{Start: &s.Start}
		}
	case schemas.BodyEnd:
		var e schemas.EndBody
		if e, err = schemas.DecodeEnd(body, schemas.Lenient, true); err == nil {
			m.JobUUID, m.Event = e.UUID, &statemachine.Event{End: &e.End}
		}
	}
	if err == nil {
		// The decoders are the authority; the published JSON Schema must agree with them.
		err = schemas.Validate(kind, body)
	}
	if err != nil {
		m.Create, m.Event = nil, nil
		var fe *schemas.FieldError
		if errors.As(err, &fe) {
			return reject(storage.RejectSchema, fe.Field, fe.Message)
		}
		return reject(storage.RejectSchema, "", err.Error())
	}
	return m
}

// eventKinds is the kind of event each body asks for.
var eventKinds = map[schemas.Body]statemachine.EventKind{
	schemas.BodyTrigger: statemachine.EventCreate,
	schemas.BodyStart:   statemachine.EventStart,
	schemas.BodyEnd:     statemachine.EventEnd,
}

// namedJob is the uuid a body names, when it is a JSON object with a "uuid" that is one:
// what a rejection of the body is listed under.
func namedJob(body []byte) *uuid.UUID {
	var named struct {
		UUID string `json:"uuid"`
	}
	if json.Unmarshal(body, &named) != nil || len(named.UUID) != 36 {
		return nil
	}
	id, err := uuid.Parse(named.UUID)
	if err != nil || id == uuid.Nil {
		return nil
	}
	return &id
}
