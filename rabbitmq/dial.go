// Package rabbitmq connects ExecDB to RabbitMQ the way fedora-messaging does: dialing and
// reconnecting, declaring the queue topology, reading and writing the fedora-messaging
// properties and headers. Subscriber and Publisher implement bus.Subscriber and bus.Publisher.
package rabbitmq

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// handshakeTimeout bounds the AMQP handshake after the TCP connection is made.
const handshakeTimeout = 15 * time.Second

// Dial connects to the broker at rawURL (amqp:// or amqps://); name is shown in the broker's
// connection list. It gives up when ctx ends.
func Dial(ctx context.Context, rawURL, name string) (*amqp.Connection, error) {
	props := amqp.NewConnectionProperties()
	props.SetClientConnectionName(name)
	conn, err := amqp.DialConfig(rawURL, amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Properties: props,
		Dial: func(network, addr string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			// Cleared by the library once the handshake is done.
			if err := c.SetDeadline(time.Now().Add(handshakeTimeout)); err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		},
	})
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", Redact(rawURL), err)
	}
	return conn, nil
}

// Redact hides the password of an AMQP URL, for logs and errors.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable AMQP URL)"
	}
	return u.Redacted()
}
