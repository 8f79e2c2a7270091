// Package bus states what ExecDB needs from a message bus, whatever the transport: take
// messages off it (Subscriber) and put messages on it (Publisher). rabbitmq, fedmsg and
// bus/memory implement it; bus/bustest is the suite every implementation passes.
package bus

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"strings"
	"time"
	"unicode/utf8"
)

// ErrClosed is returned by a Subscriber or Publisher that was closed.
var ErrClosed = errors.New("bus: closed")

// ErrTopicMismatch is a Delivery's Malformed error when the topic the transport routed the
// message by disagrees with the topic inside it (a fedmsg frame and its envelope).
var ErrTopicMismatch = errors.New("topic disagrees with the envelope's topic")

// ErrTooLarge is a Delivery's Malformed error when the message is larger than the subscriber
// takes: it kept only the beginning of the body (Delivery.BodySize says how large it was).
var ErrTooLarge = errors.New("message too large")

// KeptOfTooLarge is how much of a body over a subscriber's limit it keeps, for people to see
// what the message was.
const KeptOfTooLarge = 4 << 10

// Truncate returns body as a delivery of it keeps it under a subscriber's limit of max bytes:
// body itself when it is not larger than max, and otherwise a copy of its first KeptOfTooLarge
// bytes, so that the large original can be freed at once.
func Truncate(body []byte, max int) []byte {
	if max <= 0 || len(body) <= max {
		return body
	}
	return append([]byte(nil), body[:min(len(body), KeptOfTooLarge)]...)
}

// Message is one message on a bus.
type Message struct {
	// ID is the message's id, its dedup key: the AMQP message_id, the fedmsg msg_id. A
	// publisher sends it unchanged; a subscriber reports it as the transport carried it.
	ID string
	// Topic is the full topic (AMQP routing key).
	Topic string
	// Body is the JSON body.
	Body []byte
	// Headers are string headers (AMQP; fedmsg has none). A publisher may add its own.
	Headers map[string]string
	// Time is when the message was created or sent: for a received message the sender's
	// sent-at (zero when unknown), for a published one its creation time, which transports
	// that put a time in the id (fedmsg's "<year>-<uuid>") use.
	Time time.Time
}

// Features declares what a transport guarantees, so that callers and the shared test suite
// know what to expect instead of the transport faking what it cannot do.
type Features struct {
	// Acks: a delivery that is not acknowledged is delivered again (after Close, or after the
	// connection dropped). Without acks Ack, Requeue and Reject do nothing and a message in
	// flight when the process stops is lost.
	Acks bool
	// DeadLetter: Reject keeps the message aside (a dead-letter queue), with the headers that
	// say why, rather than dropping it.
	DeadLetter bool
	// Durable: messages published while no subscriber is connected wait for it. ZeroMQ PUB/SUB
	// drops them.
	Durable bool
	// Headers: the transport carries Message.Headers.
	Headers bool
}

// Acknowledger settles a delivery. Its methods may be called from any goroutine; a delivery is
// settled once.
type Acknowledger interface {
	// Ack says the delivery was handled; it is not delivered again.
	Ack() error
	// Requeue hands the delivery back unhandled: it is delivered again.
	Requeue() error
	// Reject says the delivery cannot be handled: dead-lettered where the transport can, the
	// copy carrying the headers why (e.g. execdb_reject_reason) besides its own, and dropped
	// otherwise. It is not delivered again.
	Reject(why map[string]string) error
}

// Delivery is a received message and the means to settle it.
type Delivery struct {
	Message
	// Redelivered reports that the transport delivered the message before (as far as it
	// knows).
	Redelivered bool
	// ReceivedAt is when the subscriber took the message off the transport.
	ReceivedAt time.Time
	// Malformed is set when the transport received the message but could not read it (a
	// fedmsg envelope that is not JSON, ErrTopicMismatch, ErrTooLarge). Body then holds the
	// raw bytes (for ErrTooLarge their beginning) and ID one derived from them. The receiver
	// rejects such a delivery.
	Malformed error
	// BodySize is the size in bytes of the body as it was sent. A transport keeps only the
	// beginning of a body over its limit (ErrTooLarge): BodySize is then larger than len(Body).
	BodySize int
	// Acker settles the delivery; nil for a transport without acks.
	Acker Acknowledger
}

// Ack acknowledges the delivery (a no-op without acks).
func (d Delivery) Ack() error {
	if d.Acker == nil {
		return nil
	}
	return d.Acker.Ack()
}

// Requeue hands the delivery back (a no-op without acks).
func (d Delivery) Requeue() error {
	if d.Acker == nil {
		return nil
	}
	return d.Acker.Requeue()
}

// Reject rejects the delivery: dead-lettered with the headers why where the transport can (a
// no-op without acks).
func (d Delivery) Reject(why map[string]string) error {
	if d.Acker == nil {
		return nil
	}
	return d.Acker.Reject(why)
}

// Subscriber takes messages off a bus. Receive is called by one goroutine at a time; Close may
// be called from any goroutine, also while Receive blocks, and more than once.
type Subscriber interface {
	// Receive blocks until a message arrives, ctx is done (ctx.Err()) or the subscriber is
	// closed (ErrClosed). A subscriber reconnects by itself: a dropped connection does not
	// end Receive.
	Receive(ctx context.Context) (Delivery, error)
	// Features says what the transport guarantees.
	Features() Features
	// Close stops receiving; deliveries not acknowledged are handed back where the transport
	// can. Later calls return nil.
	Close() error
}

// Publisher puts messages on a bus. Publish is called by one goroutine at a time; Close may be
// called from any goroutine and more than once.
type Publisher interface {
	// Publish sends the messages in order and returns how many of them, from the first, the
	// transport accepted for good (confirmed by the broker, or handed to the socket for a
	// transport without confirms). An error says why it stopped there.
	Publish(ctx context.Context, msgs []Message) (int, error)
	// Features says what the transport guarantees.
	Features() Features
	// Close stops publishing. Later calls return nil.
	Close() error
}

// MaxMessageIDBytes bounds a message id that is stored as it came; see StorableID.
const MaxMessageIDBytes = 255

// StorableID is the form in which a message id is stored and deduplicated on (CONTRACT section
// 3, v1.1): the id itself when it is valid UTF-8 without NUL and at most MaxMessageIDBytes
// long, and otherwise "sha256:" and the hex SHA-256 of its bytes, which is as unique, bounded
// and valid. kept reports whether the id is stored as it came.
func StorableID(id string) (stored string, kept bool) {
	if len(id) <= MaxMessageIDBytes && utf8.ValidString(id) && strings.IndexByte(id, 0) < 0 {
		return id, true
	}
	sum := sha256.Sum256([]byte(id))
	return "sha256:" + hex.EncodeToString(sum[:]), false
}

// ContentID is the id given to a message that carries none: a hash of its topic and body, so
// that a redelivery gets the same id.
func ContentID(topic string, body []byte) string {
	h := sha256.New()
	h.Write([]byte(topic))
	h.Write([]byte{0})
	h.Write(body)
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// Receive is the Receive of a subscriber that hands its deliveries over a channel: the next
// delivery, or ctx.Err() when ctx ends, or ErrClosed once closed is closed (also when a
// delivery is waiting).
func Receive(ctx context.Context, deliveries <-chan Delivery, closed <-chan struct{}) (Delivery, error) {
	select {
	case <-closed:
		return Delivery{}, ErrClosed
	default:
	}
	select {
	case d := <-deliveries:
		return d, nil
	case <-ctx.Done():
		return Delivery{}, ctx.Err()
	case <-closed:
		return Delivery{}, ErrClosed
	}
}
