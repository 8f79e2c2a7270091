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

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// URL is the broker.
	URL string
	// Exchange is where messages go, with their topic as routing key.
	Exchange string
	// Name is the connection name the broker shows; empty means "execdb publisher".
	Name string
	// Log receives connection events; nil means none.
	Log *zap.Logger
	// Now stamps sent-at; nil means time.Now.
	Now func() time.Time
	// ConfirmTimeout bounds one Publish, from its first message sent to its last confirm, when
	// its context ends later or never; 0 means DefaultConfirmTimeout.
	ConfirmTimeout time.Duration
}

// DefaultConfirmTimeout is how long a Publish waits for the broker's confirms by default: a
// broker confirms in milliseconds, or in seconds while a quorum queue elects a leader, and a
// queue that does not answer never confirms what is routed to it.
const DefaultConfirmTimeout = 15 * time.Second

// connectTimeout bounds connecting: TCP, the handshake, opening the confirm channel and
// checking the exchange.
const connectTimeout = 30 * time.Second

// ErrNoConfirm is in the error of a Publish that waited ConfirmTimeout for the broker's
// confirms. Whatever was not confirmed is for the caller to publish again.
var ErrNoConfirm = errors.New("no confirm from the broker")

// Publisher publishes with publisher confirms (bus.Publisher). It connects on first use and
// again after a failure; Publish reports how many messages the broker confirmed, and the
// caller retries the rest. Every wait on the broker is bounded: Publish returns when its
// context ends or after ConfirmTimeout, Close at once or within seconds; the connection is cut
// when the broker does not answer in time.
type Publisher struct {
	cfg       PublisherConfig
	log       *zap.Logger
	closeOnce sync.Once
	life      context.Context // ends when the publisher is closed
	end       context.CancelFunc

	mu   sync.Mutex // held by Publish and connect
	link *link
	ch   *amqp.Channel

	stateMu sync.Mutex
	state   error
}

var _ bus.Publisher = (*Publisher)(nil)

// NewPublisher returns a publisher; it connects when first used.
func NewPublisher(cfg PublisherConfig) *Publisher {
	if cfg.Name == "" {
		cfg.Name = "execdb publisher"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ConfirmTimeout <= 0 {
		cfg.ConfirmTimeout = DefaultConfirmTimeout
	}
	p := &Publisher{cfg: cfg, log: cfg.Log, state: errors.New("not connected yet")}
	p.life, p.end = context.WithCancel(context.Background())
	if p.log == nil {
		p.log = zap.NewNop()
	}
	return p
}

// Features: confirms (acks), durable delivery to bound queues, headers.
func (p *Publisher) Features() bus.Features {
	return bus.Features{Acks: true, DeadLetter: true, Durable: true, Headers: true}
}

// Publish sends msgs in order on one channel and waits for the broker's confirms, until ctx
// ends or for ConfirmTimeout at most. When it fails it drops the connection (cutting it when
// the broker does not answer), and the next call connects again.
func (p *Publisher) Publish(ctx context.Context, msgs []bus.Message) (int, error) {
	ctx, cancel := p.bind(ctx)
	defer cancel()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed() {
		return 0, bus.ErrClosed
	}
	n, err := 0, p.connect(ctx)
	if err == nil {
		n, err = p.publish(ctx, msgs)
	}
	if err != nil {
		if p.isClosed() {
			err = bus.ErrClosed
		}
		p.setState(err)
		p.disconnect()
		return n, err
	}
	p.setState(nil)
	return n, nil
}

// bind returns ctx ended also by Close.
func (p *Publisher) bind(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(p.life, cancel)
	return ctx, func() {
		stop()
		cancel()
	}
}

// publish publishes on the open channel; p.mu is held. The connection is cut when ctx ends or
// ConfirmTimeout passes first: a write the broker does not read and a confirm it withholds then
// end.
func (p *Publisher) publish(ctx context.Context, msgs []bus.Message) (int, error) {
	ctx, cancel := context.WithTimeoutCause(ctx, p.cfg.ConfirmTimeout, fmt.Errorf("%w within %s", ErrNoConfirm, p.cfg.ConfirmTimeout))
	defer cancel()
	stop := p.link.guard(ctx)
	defer stop() // before cancel
	now := p.cfg.Now()
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	var pubErr error
	for _, m := range msgs {
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, m.Topic, false, false, Publishing(m, now))
		if err != nil {
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (%v)", context.Cause(ctx), err)
			}
			pubErr = fmt.Errorf("publish %s: %w", m.ID, err)
			break
		}
		confirms = append(confirms, dc)
	}
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		switch {
		case ok && err == nil:
		case ctx.Err() != nil: // the connection is cut, or about to be
			return i, fmt.Errorf("wait for the confirm of %s (%d of %d): %w", msgs[i].ID, i+1, len(msgs), context.Cause(ctx))
		case err != nil:
			return i, fmt.Errorf("wait for the confirm of %s: %w", msgs[i].ID, err)
		default:
			return i, fmt.Errorf("the broker did not confirm %s (nack or channel closed)", msgs[i].ID)
		}
	}
	return len(confirms), pubErr
}

// Ready returns nil when the publisher is connected or can connect now.
func (p *Publisher) Ready(ctx context.Context) error {
	if !p.mu.TryLock() { // a publish is under way and will tell
		p.stateMu.Lock()
		defer p.stateMu.Unlock()
		return p.state
	}
	defer p.mu.Unlock()
	if p.isClosed() {
		return bus.ErrClosed
	}
	ctx, cancel := p.bind(ctx)
	defer cancel()
	err := p.connect(ctx)
	p.setState(err)
	return err
}

// connect opens the connection and a confirm-mode channel unless they are open, giving up when
// ctx ends or after connectTimeout; p.mu is held.
func (p *Publisher) connect(ctx context.Context) error {
	if p.ch != nil && !p.ch.IsClosed() && !p.link.IsClosed() {
		return nil
	}
	p.disconnect()
	ctx, cancel := context.WithTimeout(ctx, connectTimeout)
	defer cancel()
	l, err := dial(ctx, p.cfg.URL, p.cfg.Name)
	if err != nil {
		return err
	}
	stop := l.guard(ctx)
	ch, err := l.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err == nil && p.cfg.Exchange != "" {
		err = declareExchange(ch, p.cfg.Exchange, amqp.ExchangeTopic)
	}
	if !stop() && err == nil { // cut just as it was done
		err = amqp.ErrClosed
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		l.close()
		return fmt.Errorf("open confirm channel: %w", err)
	}
	p.link, p.ch = l, ch
	p.log.Info("amqp publisher connected", zap.String("broker", Redact(p.cfg.URL)), zap.String("exchange", p.cfg.Exchange))
	return nil
}

// disconnect drops the connection, waiting for the broker's close-ok a moment at most; p.mu is
// held.
func (p *Publisher) disconnect() {
	if p.link != nil {
		p.link.close()
	}
	p.link, p.ch = nil, nil
}

func (p *Publisher) isClosed() bool { return p.life.Err() != nil }

func (p *Publisher) setState(err error) {
	p.stateMu.Lock()
	p.state = err
	p.stateMu.Unlock()
}

// Close interrupts a waiting Publish (which returns bus.ErrClosed) and closes the connection.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		p.end()
		p.mu.Lock()
		p.disconnect()
		p.mu.Unlock()
	})
	return nil
}
