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
}

// Publisher publishes with publisher confirms (bus.Publisher). It connects on first use and
// again after a failure; Publish reports how many messages the broker confirmed, and the
// caller retries the rest.
type Publisher struct {
	cfg       PublisherConfig
	log       *zap.Logger
	closeOnce sync.Once
	closed    chan struct{}

	mu   sync.Mutex // held by Publish and connect
	conn *amqp.Connection
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
	p := &Publisher{cfg: cfg, log: cfg.Log, closed: make(chan struct{}), state: errors.New("not connected yet")}
	if p.log == nil {
		p.log = zap.NewNop()
	}
	return p
}

// Features: confirms (acks), durable delivery to bound queues, headers.
func (p *Publisher) Features() bus.Features {
	return bus.Features{Acks: true, DeadLetter: true, Durable: true, Headers: true}
}

// Publish sends msgs in order on one channel and waits for the broker's confirms.
func (p *Publisher) Publish(ctx context.Context, msgs []bus.Message) (int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { // Close interrupts a publish that waits
		select {
		case <-p.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.isClosed() {
		return 0, bus.ErrClosed
	}
	if err := p.connect(ctx); err != nil {
		return 0, err
	}
	n, err := p.publish(ctx, msgs)
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

func (p *Publisher) publish(ctx context.Context, msgs []bus.Message) (int, error) {
	now := p.cfg.Now()
	confirms := make([]*amqp.DeferredConfirmation, 0, len(msgs))
	var pubErr error
	for _, m := range msgs {
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, m.Topic, false, false, Publishing(m, now))
		if err != nil {
			pubErr = fmt.Errorf("publish %s: %w", m.ID, err)
			break
		}
		confirms = append(confirms, dc)
	}
	for i, dc := range confirms {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return i, fmt.Errorf("wait for the confirm of %s: %w", msgs[i].ID, err)
		}
		if !ok {
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
	err := p.connect(ctx)
	p.setState(err)
	return err
}

// connect opens the connection and a confirm-mode channel unless they are open; p.mu is held.
func (p *Publisher) connect(ctx context.Context) error {
	if p.ch != nil && !p.ch.IsClosed() && !p.conn.IsClosed() {
		return nil
	}
	p.disconnect()
	conn, err := Dial(ctx, p.cfg.URL, p.cfg.Name)
	if err != nil {
		return err
	}
	ch, err := conn.Channel()
	if err == nil {
		err = ch.Confirm(false)
	}
	if err == nil && p.cfg.Exchange != "" {
		err = declareExchange(ch, p.cfg.Exchange, amqp.ExchangeTopic)
	}
	if err != nil {
		conn.Close()
		return fmt.Errorf("open confirm channel: %w", err)
	}
	p.conn, p.ch = conn, ch
	p.log.Info("amqp publisher connected", zap.String("broker", Redact(p.cfg.URL)), zap.String("exchange", p.cfg.Exchange))
	return nil
}

// disconnect drops the connection; p.mu is held.
func (p *Publisher) disconnect() {
	if p.conn != nil {
		p.conn.Close()
	}
	p.conn, p.ch = nil, nil
}

func (p *Publisher) isClosed() bool {
	select {
	case <-p.closed:
		return true
	default:
		return false
	}
}

func (p *Publisher) setState(err error) {
	p.stateMu.Lock()
	p.state = err
	p.stateMu.Unlock()
}

// Close interrupts a waiting Publish and closes the connection.
func (p *Publisher) Close() error {
	p.closeOnce.Do(func() {
		close(p.closed)
		p.mu.Lock()
		p.disconnect()
		p.mu.Unlock()
	})
	return nil
}
