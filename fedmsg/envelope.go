// Package fedmsg speaks fedmsg, Fedora's ZeroMQ PUB/SUB bus: two-frame messages [topic,
// envelope] whose JSON envelope carries the body in "msg". Subscriber and Publisher implement
// bus.Subscriber and bus.Publisher. ZeroMQ PUB/SUB has no acknowledgements and drops what a
// subscriber misses while it is disconnected or slow; Features says so.
package fedmsg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/go-json-experiment/json/jsontext"
)

// Envelope is the JSON object in a fedmsg message's second frame. Signed messages also carry
// crypto, signature and certificate, which ExecDB neither checks nor writes.
type Envelope struct {
	Topic     string          `json:"topic"`
	Msg       json.RawMessage `json:"msg"`
	MsgID     string          `json:"msg_id"`
	Timestamp float64         `json:"timestamp"` // Unix seconds
	I         int64           `json:"i"`         // the sender's message counter
	Username  string          `json:"username"`
}

// MsgID is the fedmsg msg_id of an outgoing message: "<year>-<id>", the year of the message's
// creation, so that a message re-sent after a crash has the same msg_id.
func MsgID(m bus.Message) string {
	t := m.Time
	if t.IsZero() {
		t = time.Now()
	}
	return fmt.Sprintf("%d-%s", t.UTC().Year(), m.ID)
}

// Encode renders m as the two frames of a fedmsg message.
func Encode(m bus.Message, i int64, username string, now time.Time) ([][]byte, error) {
	if !json.Valid(m.Body) {
		return nil, fmt.Errorf("encode %s: body is not JSON", m.ID)
	}
	env, err := json.Marshal(Envelope{
		Topic: m.Topic, Msg: m.Body, MsgID: MsgID(m), I: i, Username: username,
		Timestamp: math.Round(float64(now.UnixMicro())/1e3) / 1e3,
	})
	if err != nil {
		return nil, fmt.Errorf("encode %s: %w", m.ID, err)
	}
	return [][]byte{[]byte(m.Topic), env}, nil
}

// Decode reads the frames of a fedmsg message. A message that cannot be read comes back with
// an error and what could be made of it: the frame's topic, the raw envelope as Body, an id
// derived from the bytes.
func Decode(frames [][]byte) (bus.Message, error) {
	var topic, raw []byte
	switch len(frames) {
	case 0:
	case 1:
		raw = frames[0]
	default:
		topic, raw = frames[0], bytes.Join(frames[1:], nil)
	}
	bad := bus.Message{Topic: string(topic), Body: raw, ID: bus.ContentID(string(topic), raw)}
	if len(frames) != 2 {
		return bad, fmt.Errorf("want 2 frames [topic, envelope], got %d", len(frames))
	}
	// The envelope must be JSON text as RFC 8259 has it: valid UTF-8, every member named once.
	// encoding/json would replace invalid bytes (two different msg_ids would become one) and
	// let a repeated member win silently.
	if err := validJSONText(raw); err != nil {
		return bad, fmt.Errorf("envelope: %w", err)
	}
	var env Envelope
	if err := json.Unmarshal(raw, &env); err != nil {
		return bad, fmt.Errorf("envelope: %w", err)
	}
	if env.Topic != string(topic) {
		return bad, fmt.Errorf("frame topic %q, envelope topic %q: %w", topic, env.Topic, bus.ErrTopicMismatch)
	}
	if len(env.Msg) == 0 || string(env.Msg) == "null" {
		return bad, errors.New("envelope: no msg")
	}
	m := bus.Message{ID: env.MsgID, Topic: env.Topic, Body: []byte(env.Msg)}
	if m.ID == "" {
		m.ID = bus.ContentID(env.Topic, m.Body)
	}
	if env.Timestamp > 0 {
		sec, frac := math.Modf(env.Timestamp)
		m.Time = time.Unix(int64(sec), int64(frac*1e9)).UTC()
	}
	return m, nil
}

// validJSONText checks that b is one JSON value in valid UTF-8 whose objects name each member
// once (RFC 7493, I-JSON).
func validJSONText(b []byte) error {
	d := jsontext.NewDecoder(bytes.NewReader(b))
	if err := d.SkipValue(); err != nil {
		return err
	}
	if _, err := d.ReadToken(); !errors.Is(err, io.EOF) {
		return errors.New("data after the envelope")
	}
	return nil
}
