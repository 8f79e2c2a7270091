package rabbitmq

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
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
	// MaxBodyBytes bounds the bodies it hands over: of a larger one it keeps only the
	// beginning (bus.Truncate), the moment the delivery arrives, and delivers it as
	// bus.ErrTooLarge, so that a burst of large messages does not pile up in memory. 0 means no
	// limit.
	MaxBodyBytes int
}

// setupTimeout bounds a (re)connection: dialing, declaring the topology, starting to consume.
const setupTimeout = time.Minute

// Subscriber consumes a queue (bus.Subscriber). It connects in the background and reconnects
// with backoff whenever the connection drops, declaring the topology again each time.
// Deliveries not acknowledged when a connection drops or the Subscriber closes are requeued by
// the broker and delivered again with Redelivered set. A rejected delivery is dead-lettered by
// publishing a copy with the headers that say why to the dead-letter exchange, with publisher
// confirms, and acknowledging the original; when that publish fails, the broker dead-letters
// the original (without those headers) instead.
//
// Deliveries are taken from the client library as they arrive, whatever the receiver does:
// amqp091-go queues what its consumer does not take in an unbounded buffer, whole bodies
// included, so a receiver busy with a batch would otherwise let up to the prefetch of large
// bodies pile up there. Taken at once, a body over MaxBodyBytes is cut before it waits, and the
// deliveries wait in a buffer of the prefetch, which the broker never exceeds.
//
// No wait on the broker is unbounded: a (re)connection gives up after setupTimeout, Depth when
// its context ends, and Close cuts the connection when the broker does not answer its close
// within seconds.
type Subscriber struct {
	cfg        SubscriberConfig
	log        *zap.Logger
	deliveries chan bus.Delivery
	closeOnce  sync.Once
	closed     chan struct{}
	cancel     context.CancelFunc
	done       chan struct{}

	mu    sync.Mutex
	state error // nil while consuming
	link  *link // the current connection, while consuming

	depthBusy atomic.Bool // a Depth query waits for the broker
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
// acknowledged: the consumer's lag in messages. It fails while the subscriber is not connected,
// and when ctx ends before the broker answers. The query goes on in the background until the
// broker answers or the connection closes; meanwhile Depth fails at once rather than pile up
// queries.
func (s *Subscriber) Depth(ctx context.Context) (int, error) {
	s.mu.Lock()
	l := s.link
	s.mu.Unlock()
	if l == nil {
		return 0, errors.New("not connected")
	}
	if !s.depthBusy.CompareAndSwap(false, true) {
		return 0, errors.New("queue depth: the broker has not answered the previous query yet")
	}
	type result struct {
		n   int
		err error
	}
	res := make(chan result, 1)
	go func() {
		defer s.depthBusy.Store(false)
		ch, err := l.Channel()
		if err != nil {
			res <- result{0, err}
			return
		}
		defer ch.Close()
		q, err := ch.QueueDeclarePassive(s.cfg.Topology.Queue, true, false, false, false, nil)
		res <- result{q.Messages, err}
	}()
	select {
	case r := <-res:
		if r.err != nil {
			return 0, fmt.Errorf("queue depth: %w", r.err)
		}
		return r.n, nil
	case <-ctx.Done():
		return 0, fmt.Errorf("queue depth: %w", ctx.Err())
	}
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
	sctx, cancel := context.WithTimeout(ctx, setupTimeout)
	defer cancel()
	l, err := dial(sctx, s.cfg.URL, s.cfg.Name)
	if err != nil {
		return err
	}
	defer l.close()
	stop := l.guard(sctx) // every answer of the broker below is awaited until sctx ends
	qt, deliveries, dl, err := s.setup(l)
	if !stop() && err == nil {
		err = amqp.ErrClosed
	}
	if err != nil {
		if sctx.Err() != nil && ctx.Err() == nil {
			err = fmt.Errorf("the broker did not answer within %s: %w", setupTimeout, err)
		}
		return err
	}
	connClosed := l.NotifyClose(make(chan *amqp.Error, 1))
	// Take the deliveries as they come (see Subscriber): buffered is never full, as the broker
	// sends at most the prefetch unacknowledged.
	buffered := make(chan bus.Delivery, s.cfg.Prefetch)
	quit, taken := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(taken)
		s.take(deliveries, buffered, dl, quit)
	}()
	defer func() {
		l.close() // ends deliveries (the close deferred above then returns at once)
		close(quit)
		<-taken
	}()
	s.setState(nil)
	s.mu.Lock()
	s.link = l
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.link = nil
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
		case bd, ok := <-buffered:
			if !ok {
				select {
				case e := <-connClosed:
					return fmt.Errorf("connection closed: %v", e)
				default:
					return errors.New("the broker cancelled the consumer")
				}
			}
			select {
			case s.deliveries <- bd:
			case <-ctx.Done():
				return nil
			}
		}
	}
}

// setup declares the topology and starts consuming on l, with a confirm-mode channel for the
// dead letters.
func (s *Subscriber) setup(l *link) (QueueType, <-chan amqp.Delivery, *deadLetterer, error) {
	qt, err := Declare(l.Connection, s.cfg.Topology)
	if err != nil {
		return "", nil, nil, err
	}
	dl, err := newDeadLetterer(l.Connection, s.cfg.Topology.dlx())
	if err != nil {
		return "", nil, nil, err
	}
	ch, err := l.Channel()
	if err != nil {
		return "", nil, nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Qos(s.cfg.Prefetch, 0, false); err != nil {
		return "", nil, nil, fmt.Errorf("set prefetch: %w", err)
	}
	deliveries, err := ch.Consume(s.cfg.Topology.Queue, "", false, false, false, false, nil)
	if err != nil {
		return "", nil, nil, fmt.Errorf("consume %s: %w", s.cfg.Topology.Queue, err)
	}
	return qt, deliveries, dl, nil
}

// take hands the deliveries on to out as they arrive, each body over MaxBodyBytes cut to its
// beginning at once, until in is closed (the channel or connection closed, or the broker
// cancelled the consumer) or quit; then it closes out.
func (s *Subscriber) take(in <-chan amqp.Delivery, out chan<- bus.Delivery, dl *deadLetterer, quit <-chan struct{}) {
	defer close(out)
	for d := range in {
		bd := bus.Delivery{Message: Message(d), Redelivered: d.Redelivered, ReceivedAt: time.Now(), BodySize: len(d.Body)}
		if s.cfg.MaxBodyBytes > 0 && len(d.Body) > s.cfg.MaxBodyBytes {
			// Keep the beginning only, so that the body is freed now rather than when the
			// delivery is received and its rejection settled.
			d.Body = bus.Truncate(d.Body, s.cfg.MaxBodyBytes)
			bd.Body, bd.Malformed = d.Body, bus.ErrTooLarge
		}
		bd.Acker = &acker{d: d, dl: dl}
		select {
		case out <- bd:
		case <-quit:
			return
		}
	}
}

type acker struct {
	d  amqp.Delivery
	dl *deadLetterer
}

func (a *acker) Ack() error { return a.d.Ack(false) }

func (a *acker) Requeue() error { return a.d.Reject(true) }

// Reject publishes a copy of the delivery with the headers why to the dead-letter exchange and
// acknowledges the original once the broker confirmed the copy. When the copy cannot be
// published, the original is rejected without requeue: the queue's dead-letter exchange then
// takes it, without why.
func (a *acker) Reject(why map[string]string) error {
	if err := a.dl.publish(a.d, why); err != nil {
		if rerr := a.d.Reject(false); rerr != nil {
			return fmt.Errorf("dead-letter: %w; reject: %w", err, rerr)
		}
		return nil
	}
	return a.d.Ack(false)
}

// deadLetterer publishes dead letters on a confirm-mode channel of a subscriber's connection.
type deadLetterer struct {
	exchange string
	mu       sync.Mutex
	ch       *amqp.Channel
}

func newDeadLetterer(conn *amqp.Connection, exchange string) (*deadLetterer, error) {
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err != nil {
		return nil, fmt.Errorf("open the dead-letter channel: %w", err)
	}
	return &deadLetterer{exchange: exchange, ch: ch}, nil
}

// deadLetterTimeout bounds the wait for the broker's confirm of a dead letter.
const deadLetterTimeout = 10 * time.Second

// publish sends the dead-letter copy of d: its body and properties, its headers plus why and
// x-original-routing-key, under its own routing key.
func (dl *deadLetterer) publish(d amqp.Delivery, why map[string]string) error {
	headers := amqp.Table{}
	for k, v := range d.Headers {
		headers[k] = v
	}
	for k, v := range why {
		headers[k] = v
	}
	headers["x-original-routing-key"] = d.RoutingKey
	pub := amqp.Publishing{
		Headers: headers, ContentType: d.ContentType, ContentEncoding: d.ContentEncoding,
		DeliveryMode: amqp.Persistent, Priority: d.Priority, CorrelationId: d.CorrelationId,
		ReplyTo: d.ReplyTo, Expiration: "", MessageId: d.MessageId, Timestamp: d.Timestamp,
		Type: d.Type, UserId: "", AppId: d.AppId, Body: d.Body,
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadLetterTimeout)
	defer cancel()
	dl.mu.Lock()
	defer dl.mu.Unlock()
	dc, err := dl.ch.PublishWithDeferredConfirmWithContext(ctx, dl.exchange, d.RoutingKey, false, false, pub)
	if err != nil {
		return fmt.Errorf("publish the dead letter of %s: %w", d.MessageId, err)
	}
	ok, err := dc.WaitContext(ctx)
	if err != nil {
		return fmt.Errorf("wait for the confirm of the dead letter of %s: %w", d.MessageId, err)
	}
	if !ok {
		return fmt.Errorf("the broker refused the dead letter of %s", d.MessageId)
	}
	return nil
}
