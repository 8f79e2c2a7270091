package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/bus"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
)

// DefaultPrefetch is how many unacknowledged deliveries the broker sends ahead by default.
const DefaultPrefetch = 1000

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// URL is the broker, amqp://user:password@host:port/vhost.
	URL string
	// Topology is declared on every (re)connection.
	Topology Topology
	// Prefetch is how many unacknowledged deliveries the broker sends ahead; 0 means
	// DefaultPrefetch.
	Prefetch int
	// Name is the connection name the broker shows; empty means "execdb consumer".
	Name string
	// Log receives connection events; nil means none.
	Log *zap.Logger
	// Backoff paces reconnection attempts.
	Backoff bus.Backoff
}

// Subscriber consumes a queue (bus.Subscriber). It connects in the background and reconnects
// with backoff whenever the connection drops, declaring the topology again each time.
// Deliveries not acknowledged when a connection drops or the Subscriber closes are requeued by
// the broker and delivered again with Redelivered set.
type Subscriber struct {
	cfg        SubscriberConfig
	log        *zap.Logger
	deliveries chan bus.Delivery
	closeOnce  sync.Once
	closed     chan struct{}
	cancel     context.CancelFunc
	done       chan struct{}

	mu    sync.Mutex
	state error            // nil while consuming
	conn  *amqp.Connection // the current connection, while consuming
}

var _ bus.Subscriber = (*Subscriber)(nil)

// NewSubscriber starts consuming in the background; Close stops it.
func NewSubscriber(cfg SubscriberConfig) *Subscriber {
	if cfg.Prefetch <= 0 {
		cfg.Prefetch = DefaultPrefetch
	}
	if cfg.Name == "" {
		cfg.Name = "execdb consumer"
	}
	s := &Subscriber{cfg: cfg, log: cfg.Log, deliveries: make(chan bus.Delivery), closed: make(chan struct{}),
		done: make(chan struct{}), state: errors.New("not connected yet")}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.run(ctx)
	return s
}

// Features: acks, dead-lettering, durable queues and headers.
func (s *Subscriber) Features() bus.Features {
	return bus.Features{Acks: true, DeadLetter: true, Durable: true, Headers: true}
}

// Receive returns the next delivery.
func (s *Subscriber) Receive(ctx context.Context) (bus.Delivery, error) {
	return bus.Receive(ctx, s.deliveries, s.closed)
}

// Ready returns nil while the subscriber consumes, else why it does not.
func (s *Subscriber) Ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.state
}

// Depth returns how many messages wait in the queue, not counting those delivered and not yet
// acknowledged: the consumer's lag in messages. It fails while the subscriber is not connected.
func (s *Subscriber) Depth(ctx context.Context) (int, error) {
	s.mu.Lock()
	conn := s.conn
	s.mu.Unlock()
	if conn == nil {
		return 0, errors.New("not connected")
	}
	ch, err := conn.Channel()
	if err != nil {
		return 0, fmt.Errorf("queue depth: %w", err)
	}
	defer ch.Close()
	q, err := ch.QueueDeclarePassive(s.cfg.Topology.Queue, true, false, false, false, nil)
	if err != nil {
		return 0, fmt.Errorf("queue depth: %w", err)
	}
	return q.Messages, nil
}

// Close stops consuming and closes the connection; the broker requeues what was not
// acknowledged. It waits for the background goroutine.
func (s *Subscriber) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.cancel()
	})
	<-s.done
	return nil
}

func (s *Subscriber) setState(err error) {
	s.mu.Lock()
	s.state = err
	s.mu.Unlock()
}

func (s *Subscriber) run(ctx context.Context) {
	defer close(s.done)
	backoff := s.cfg.Backoff
	for {
		err := s.session(ctx, &backoff)
		if ctx.Err() != nil {
			s.setState(bus.ErrClosed)
			return
		}
		s.setState(err)
		s.log.Warn("amqp consumer disconnected; reconnecting", zap.String("queue", s.cfg.Topology.Queue), zap.Error(err))
		if !backoff.Wait(ctx) {
			s.setState(bus.ErrClosed)
			return
		}
	}
}

// session connects, declares, consumes until the connection drops or ctx ends.
func (s *Subscriber) session(ctx context.Context, backoff *bus.Backoff) error {
	conn, err := Dial(ctx, s.cfg.URL, s.cfg.Name)
	if err != nil {
		return err
	}
	defer conn.Close()
	qt, err := Declare(conn, s.cfg.Topology)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err != nil {
		return fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(s.cfg.Prefetch, 0, false); err != nil {
		return fmt.Errorf("set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(s.cfg.Topology.Queue, "", false, false, false, false, nil)
	if err != nil {
		return fmt.Errorf("consume %s: %w", s.cfg.Topology.Queue, err)
	}
	connClosed := conn.NotifyClose(make(chan *amqp.Error, 1))
	s.setState(nil)
	s.mu.Lock()
	s.conn = conn
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.conn = nil
		s.mu.Unlock()
	}()
	backoff.Reset()
	s.log.Info("amqp consumer connected", zap.String("broker", Redact(s.cfg.URL)),
		zap.String("queue", s.cfg.Topology.Queue), zap.String("queue_type", string(qt)), zap.Int("prefetch", s.cfg.Prefetch))
	for {
		select {
		case <-ctx.Done():
			return nil
		case e := <-connClosed:
			return fmt.Errorf("connection closed: %v", e)
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("the broker cancelled the consumer")
			}
			bd := bus.Delivery{Message: Message(d), Redelivered: d.Redelivered, ReceivedAt: time.Now(), Acker: acker{d}}
			select {
			case s.deliveries <- bd:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

type acker struct{ d amqp.Delivery }

func (a acker) Ack() error { return a.d.Ack(false) }

func (a acker) Reject(requeue bool) error { return a.d.Reject(requeue) }
