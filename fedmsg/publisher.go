package fedmsg

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/go-zeromq/zmq4"
)

// DefaultUsername is the envelope's username of what ExecDB publishes.
const DefaultUsername = "execdb"

// sendQueue bounds the messages a PUB socket queues for its subscribers; ZeroMQ drops beyond
// it.
const sendQueue = 100000

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Bind is the endpoint to listen on, e.g. tcp://*:9940.
	Bind string
	// Username goes into every envelope; empty means DefaultUsername.
	Username string
	// Now stamps the envelopes; nil means time.Now.
	Now func() time.Time
	// JoinDelay is how long after binding Publish waits before it sends anything, so that
	// subscribers that connect as the socket comes up (they redial within a second) get what
	// is sent at start, such as a backlog the relay catches up on: PUB/SUB drops what is sent
	// before a subscription arrives (ZeroMQ's "slow joiner"). 0 means DefaultJoinDelay; a
	// negative value means no wait.
	JoinDelay time.Duration
}

// DefaultJoinDelay is PublisherConfig.JoinDelay's default: a subscriber that lost its
// publisher redials within a second (libzmq's reconnect interval is 100 ms; ExecDB's fedmsg
// subscriber backs off to at most 1 s).
const DefaultJoinDelay = time.Second

// Publisher is a bound PUB socket (bus.Publisher). Subscribers connect to it; it sends every
// message to those connected and subscribed, and to nobody else. Publish returns once the
// messages are queued on the socket: there is no confirmation.
type Publisher struct {
	cfg       PublisherConfig
	sock      zmq4.Socket
	sendAfter time.Time // bound at, plus JoinDelay
	i         atomic.Int64
	mu        sync.Mutex
	closed    bool
	closeOnce sync.Once
}

var _ bus.Publisher = (*Publisher)(nil)

// NewPublisher binds the PUB socket.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Username == "" {
		cfg.Username = DefaultUsername
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.JoinDelay == 0 {
		cfg.JoinDelay = DefaultJoinDelay
	}
	sock := zmq4.NewPub(context.Background(), zmq4.WithLogger(log.New(io.Discard, "", 0)))
	if err := sock.SetOption(zmq4.OptionHWM, sendQueue); err != nil {
		sock.Close()
		return nil, fmt.Errorf("fedmsg publisher: %w", err)
	}
	if err := sock.Listen(cfg.Bind); err != nil {
		sock.Close()
		return nil, fmt.Errorf("fedmsg publisher: bind %s: %w", cfg.Bind, err)
	}
	return &Publisher{cfg: cfg, sock: sock, sendAfter: time.Now().Add(max(cfg.JoinDelay, 0))}, nil
}

// Addr is the address the socket listens on (useful after binding port 0).
func (p *Publisher) Addr() net.Addr { return p.sock.Addr() }

// Features: none of acks, dead-lettering, durability or headers.
func (p *Publisher) Features() bus.Features { return bus.Features{} }

// Publish queues the messages on the socket in order. In the first JoinDelay after the socket
// was bound it waits for that to pass first.
func (p *Publisher) Publish(ctx context.Context, msgs []bus.Message) (int, error) {
	if wait := time.Until(p.sendAfter); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return 0, ctx.Err()
		}
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return 0, bus.ErrClosed
	}
	for n, m := range msgs {
		if err := ctx.Err(); err != nil {
			return n, err
		}
		frames, err := Encode(m, p.i.Add(1), p.cfg.Username, p.cfg.Now())
		if err != nil {
			return n, err
		}
		if err := p.sock.SendMulti(zmq4.NewMsgFrom(frames...)); err != nil {
			return n, fmt.Errorf("send %s: %w", m.ID, err)
		}
	}
	return len(msgs), nil
}

// Ready is nil while the socket is bound.
func (p *Publisher) Ready(ctx context.Context) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return bus.ErrClosed
	}
	return nil
}

// Close closes the socket.
func (p *Publisher) Close() error {
	var err error
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()
		err = p.sock.Close()
	})
	return err
}

// Subscriptions lists the topic prefixes the connected subscribers asked for. ZeroMQ only sends
// to subscriptions that reached the publisher, so tests wait for them.
func (p *Publisher) Subscriptions() []string {
	if t, ok := p.sock.(zmq4.Topics); ok {
		return t.Topics()
	}
	return nil
}
