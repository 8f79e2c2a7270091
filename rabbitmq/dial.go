// Package rabbitmq connects ExecDB to RabbitMQ the way fedora-messaging does: dialing and
// reconnecting, declaring the queue topology, reading and writing the fedora-messaging
// properties and headers. Subscriber and Publisher implement bus.Subscriber and bus.Publisher.
//
// No wait on the broker is unbounded: amqp091-go waits without a deadline for the answer to
// every synchronous method (opening a channel, confirm.select, a declaration, closing) and for
// publisher confirms, and a broker can withhold them for good (a queue whose process hangs, a
// quorum queue without a leader). Publisher and Subscriber therefore bound each such wait by a
// context and a timeout, and when it runs out they cut the connection's socket, which ends every
// call waiting on it with an error; the broker requeues what was delivered and not acknowledged,
// and what was published and not confirmed is published again.
package rabbitmq

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// handshakeTimeout bounds the AMQP handshake after the TCP connection is made.
const handshakeTimeout = 15 * time.Second

// closeTimeout bounds the wait for the broker's close-ok when a connection is closed; the
// socket is cut then.
const closeTimeout = 2 * time.Second

// Dial connects to the broker at rawURL (amqp:// or amqps://); name is shown in the broker's
// connection list. It gives up when ctx ends, also during the handshake.
func Dial(ctx context.Context, rawURL, name string) (*amqp.Connection, error) {
	l, err := dial(ctx, rawURL, name)
	if err != nil {
		return nil, err
	}
	return l.Connection, nil
}

// link is a connection and the socket under it, which can be cut.
type link struct {
	*amqp.Connection
	sock net.Conn
}

func dial(ctx context.Context, rawURL, name string) (*link, error) {
	var (
		mu   sync.Mutex
		sock net.Conn
		cut  bool
	)
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		cut = true
		if sock != nil {
			sock.Close()
		}
	})
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
			mu.Lock()
			defer mu.Unlock()
			if cut {
				c.Close()
				return nil, ctx.Err()
			}
			sock = c
			return c, nil
		},
	})
	if !stop() && err == nil { // ctx ended as the handshake finished: the socket is cut
		(&link{Connection: conn, sock: sock}).close()
		err = ctx.Err()
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, fmt.Errorf("connect to %s: %w", Redact(rawURL), err)
	}
	return &link{Connection: conn, sock: sock}, nil
}

// cut closes the socket: every call waiting on the broker returns with an error, the
// connection is closed, and the broker requeues what it delivered on it and was not
// acknowledged.
func (l *link) cut() { l.sock.Close() }

// guard cuts the connection if ctx ends before stop is called: whatever waits on the broker
// then returns. stop reports false when it came too late.
func (l *link) guard(ctx context.Context) (stop func() bool) {
	return context.AfterFunc(ctx, l.cut)
}

// close closes the connection, waiting at most closeTimeout for the broker's close-ok, after
// which it cuts the socket. (Connection.CloseDeadline alone is not enough: the heartbeats the
// broker sends keep pushing the socket's read deadline back.)
func (l *link) close() {
	t := time.AfterFunc(closeTimeout, l.cut)
	defer t.Stop()
	l.CloseDeadline(time.Now().Add(closeTimeout))
}

// Redact hides the password of an AMQP URL, for logs and errors.
func Redact(rawURL string) string {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "(unparsable AMQP URL)"
	}
	return u.Redacted()
}
