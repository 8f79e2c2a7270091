package consumer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
)

// The topic suffixes ExecDB consumes (CONTRACT section 3, In).
const (
	SuffixTrigger = "taskotron.job.trigger"
	SuffixStart   = "taskotron.runtask.start"
	SuffixEnd     = "taskotron.runtask.end"
)

// Topics are the full topics ExecDB consumes under prefix.

// MaxBodyBytes bounds a message body: a job request or runtask report is a few kilobytes, and
// a body beyond this is rejected before it is parsed.
const MaxBodyBytes = 256 << 10

func Topics(prefix string) []string {
	return []string{prefix + "." + SuffixTrigger, prefix + "." + SuffixStart, prefix + "." + SuffixEnd}
}

// Decode turns a delivery into what it asks the store to do. Whatever is wrong with it becomes
// a rejection with its reason; Decode never fails. Unknown fields are ignored, as producers may
// be newer than ExecDB.
func Decode(d bus.Delivery, origin statemachine.Origin, prefix string) storage.BusMessage {
	id := d.ID
	if id == "" {
		id = bus.ContentID(d.Topic, d.Body)
	}
	m := storage.BusMessage{
		Meta:  statemachine.Meta{Origin: origin, MessageID: id, ReceivedAt: d.ReceivedAt},
		Topic: d.Topic, Body: d.Body,
	}
	reject := func(reason storage.RejectReason, field, detail string) storage.BusMessage {
		m.Reject = &storage.Rejection{Reason: reason, Field: field, Detail: detail}
		return m
	}
	if d.Malformed != nil {
		if errors.Is(d.Malformed, bus.ErrTopicMismatch) {
			return reject(storage.RejectTopicMismatch, "topic", d.Malformed.Error())
		}
		return reject(storage.RejectUndecodable, "", d.Malformed.Error())
	}
	suffix, ok := strings.CutPrefix(d.Topic, prefix+".")
	var kind schemas.Body
	switch {
	case ok && suffix == SuffixTrigger:
		kind = schemas.BodyTrigger
	case ok && suffix == SuffixStart:
		kind = schemas.BodyStart
	case ok && suffix == SuffixEnd:
		kind = schemas.BodyEnd
	default:
		return reject(storage.RejectUnknownTopic, "", "ExecDB consumes "+strings.Join(Topics(prefix), ", "))
	}
	if len(d.Body) > MaxBodyBytes {
		return reject(storage.RejectSchema, "", fmt.Sprintf("body of %d bytes, more than %d", len(d.Body), MaxBodyBytes))
	}
	body := bytes.TrimSpace(d.Body)
	if !json.Valid(body) {
		return reject(storage.RejectUndecodable, "", "body is not JSON")
	}
	if len(body) == 0 || body[0] != '{' {
		return reject(storage.RejectUndecodable, "", "body is not a JSON object")
	}
	var fe *schemas.FieldError
	if err := schemas.Validate(kind, body); err != nil {
		if errors.As(err, &fe) {
			return reject(storage.RejectSchema, fe.Field, fe.Message)
		}
		return reject(storage.RejectSchema, "", err.Error())
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
	if err != nil {
		if errors.As(err, &fe) {
			return reject(storage.RejectSchema, fe.Field, fe.Message)
		}
		return reject(storage.RejectSchema, "", err.Error())
	}
	return m
}
