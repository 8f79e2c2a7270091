package rabbitmq

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/bus"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The fedora-messaging headers.
const (
	HeaderSchema   = "fedora_messaging_schema"
	HeaderSeverity = "fedora_messaging_severity"
	HeaderSentAt   = "sent-at"
	// HeaderRPMPrefix starts the headers that name a package a message is about, each with
	// the value true: fedora_messaging_rpm_<name>.
	HeaderRPMPrefix = "fedora_messaging_rpm_"
)

// SentAtLayout is how sent-at is written: ISO 8601 with the UTC offset and no fractional
// seconds, as fedora-messaging does.
const SentAtLayout = "2006-01-02T15:04:05+00:00"

func intHeader(s string) (any, bool) {
	n, err := strconv.ParseInt(s, 10, 32)
	return int32(n), err == nil
}

func boolHeader(s string) (any, bool) {
	b, err := strconv.ParseBool(s)
	return b, err == nil
}

// headerType is how a header whose stored form is a string is sent, when fedora-messaging and
// header-exchange bindings expect another AMQP type: the severity as an integer, the booleans
// (execdb_fatal, fedora_messaging_rpm_<name>) as booleans.
func headerType(name string) func(string) (any, bool) {
	switch {
	case name == HeaderSeverity:
		return intHeader
	case name == "execdb_fatal", strings.HasPrefix(name, HeaderRPMPrefix):
		return boolHeader
	}
	return nil
}

// Publishing renders m in the fedora-messaging wire format: JSON body, utf-8, persistent, its id
// as message_id, its headers plus sent-at.
func Publishing(m bus.Message, sentAt time.Time) amqp.Publishing {
	headers := amqp.Table{}
	for k, v := range m.Headers {
		if conv := headerType(k); conv != nil {
			if typed, ok := conv(v); ok {
				headers[k] = typed
				continue
			}
		}
		headers[k] = v
	}
	headers[HeaderSentAt] = sentAt.UTC().Format(SentAtLayout)
	return amqp.Publishing{
		ContentType:     "application/json",
		ContentEncoding: "utf-8",
		DeliveryMode:    amqp.Persistent,
		MessageId:       m.ID,
		Headers:         headers,
		Body:            m.Body,
	}
}

// Message reads a delivery in the fedora-messaging wire format. Missing properties and headers
// are tolerated: a message without message_id gets an id derived from its routing key and body
// ("sha256:…"), so that a redelivery has the same one; Time is sent-at, else the timestamp
// property, else zero. Headers are kept in their string form.
func Message(d amqp.Delivery) bus.Message {
	m := bus.Message{ID: d.MessageId, Topic: d.RoutingKey, Body: d.Body, Headers: map[string]string{}}
	if m.ID == "" {
		m.ID = bus.ContentID(d.RoutingKey, d.Body)
	}
	for k, v := range d.Headers {
		m.Headers[k] = headerString(v)
	}
	if s, ok := d.Headers[HeaderSentAt].(string); ok {
		if t, err := time.Parse(time.RFC3339, s); err == nil {
			m.Time = t.UTC()
		}
	}
	if m.Time.IsZero() && !d.Timestamp.IsZero() {
		m.Time = d.Timestamp.UTC()
	}
	return m
}

func headerString(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case time.Time:
		return x.UTC().Format(time.RFC3339)
	case nil:
		return ""
	default:
		return fmt.Sprint(x)
	}
}
