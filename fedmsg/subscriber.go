package fedmsg

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/go-zeromq/zmq4"
	"go.uber.org/zap"
)

// SubscriberConfig configures a Subscriber.
type SubscriberConfig struct {
	// Endpoints are the ZeroMQ endpoints to connect to, e.g. tcp://hub.example.org:9940.
	Endpoints []string
	// Topics are the topic prefixes to subscribe to (ZeroMQ matches by byte prefix).
	Topics []string
	// Log receives connection events; nil means none.
	Log *zap.Logger
	// Backoff paces reconnection attempts; zero means 100 ms up to 1 s. PUB/SUB keeps nothing
	// for a subscriber that is away, so every second spent waiting to redial is a second of
	// messages lost: the cap is low, as libzmq's own 100 ms reconnect interval is.
	Backoff bus.Backoff
	// MaxBodyBytes bounds the envelopes it decodes: a larger one is delivered as
	// bus.ErrTooLarge with only its beginning kept. 0 means no limit.
	MaxBodyBytes int
}

// Subscriber holds a SUB socket connected to every endpoint (bus.Subscriber). When a
// publisher goes away (its process restarts, the network drops) the socket to it is closed
// and dialled again with backoff. What the publisher sends meanwhile is lost: ZeroMQ PUB/SUB
// keeps nothing for absent subscribers.
type Subscriber struct {
	cfg        SubscriberConfig
	log        *zap.Logger
	deliveries chan bus.Delivery
	closeOnce  sync.Once
	closed     chan struct{}
	cancel     context.CancelFunc
	wg         sync.WaitGroup

	mu   sync.Mutex
	down map[string]error // endpoints not connected, with why
}

var _ bus.Subscriber = (*Subscriber)(nil)

// NewSubscriber connects to the endpoints in the background; Close stops it.
func NewSubscriber(cfg SubscriberConfig) (*Subscriber, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("fedmsg subscriber: no endpoints")
	}
	if cfg.Backoff.Min == 0 && cfg.Backoff.Max == 0 {
		cfg.Backoff = bus.Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	}
	s := &Subscriber{cfg: cfg, log: cfg.Log, deliveries: make(chan bus.Delivery), closed: make(chan struct{}), down: map[string]error{}}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for _, ep := range cfg.Endpoints {
		s.down[ep] = errors.New("not connected yet")
		s.wg.Add(1)
		go s.run(ctx, ep)
	}
	return s, nil
}

// Features: none of acks, dead-lettering, durability or headers.
func (s *Subscriber) Features() bus.Features { return bus.Features{} }

// Receive returns the next message from any endpoint.
func (s *Subscriber) Receive(ctx context.Context) (bus.Delivery, error) {
	return bus.Receive(ctx, s.deliveries, s.closed)
}

// Ready returns nil when every endpoint is connected, else which are not and why.
func (s *Subscriber) Ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.down) == 0 {
		return nil
	}
	var parts []string
	for ep, err := range s.down {
		parts = append(parts, ep+": "+err.Error())
	}
	sort.Strings(parts)
	return errors.New("not connected to " + strings.Join(parts, "; "))
}

// Close closes the sockets and waits for their goroutines.
func (s *Subscriber) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.cancel()
	})
	s.wg.Wait()
	return nil
}

func (s *Subscriber) setDown(ep string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err == nil {
		delete(s.down, ep)
	} else {
		s.down[ep] = err
	}
}

// run keeps one endpoint connected until ctx ends.
func (s *Subscriber) run(ctx context.Context, ep string) {
	defer s.wg.Done()
	backoff := s.cfg.Backoff
	for {
		err := s.session(ctx, ep, &backoff)
		if ctx.Err() != nil {
			return
		}
		s.setDown(ep, err)
		s.log.Warn("fedmsg subscriber disconnected; reconnecting", zap.String("endpoint", ep), zap.Error(err))
		if !backoff.Wait(ctx) {
			return
		}
	}
}

// session dials ep with a new SUB socket and forwards what it receives until the connection
// breaks or ctx ends. A new socket each time: a zmq4 socket does not redial by itself.
func (s *Subscriber) session(ctx context.Context, ep string, backoff *bus.Backoff) error {
	sock := zmq4.NewSub(ctx, zmq4.WithDialerMaxRetries(0), zmq4.WithDialerTimeout(10*time.Second),
		zmq4.WithLogger(log.New(io.Discard, "", 0)))
	defer sock.Close()
	for _, topic := range s.cfg.Topics {
		if err := sock.SetOption(zmq4.OptionSubscribe, topic); err != nil {
			return fmt.Errorf("subscribe to %q: %w", topic, err)
		}
	}
	if err := sock.Dial(ep); err != nil {
		return fmt.Errorf("dial: %w", err)
	}
	s.setDown(ep, nil)
	backoff.Reset()
	s.log.Info("fedmsg subscriber connected", zap.String("endpoint", ep), zap.Strings("topics", s.cfg.Topics))
	for {
		msg, err := sock.Recv()
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("receive: %w", err)
		}
		d := decodeLimited(msg.Frames, s.cfg.MaxBodyBytes)
		select {
		case s.deliveries <- d:
		case <-ctx.Done():
			return nil
		}
	}
}

// decodeLimited decodes the frames of a message, one whose envelope is larger than max bytes
// as bus.ErrTooLarge with only the envelope's beginning kept.
func decodeLimited(frames [][]byte, max int) bus.Delivery {
	now := time.Now()
	if max > 0 && len(frames) == 2 && len(frames[1]) > max {
		env := frames[1]
		return bus.Delivery{
			Message:    bus.Message{ID: bus.ContentID(string(frames[0]), env), Topic: string(frames[0]), Body: bus.Truncate(env, max)},
			ReceivedAt: now, BodySize: len(env),
			Malformed: fmt.Errorf("envelope of %d bytes, more than %d: %w", len(env), max, bus.ErrTooLarge),
		}
	}
	m, err := Decode(frames)
	return bus.Delivery{Message: m, ReceivedAt: now, Malformed: err, BodySize: len(m.Body)}
}
