// Package memory is an in-process bus with the guarantees of a broker (acks, dead-lettering,
// durable queues): it passes bus/bustest like the real transports and keeps the tests of
// consumers and the relay fast.
package memory

import (
	"context"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/bus"
)

var features = bus.Features{Acks: true, DeadLetter: true, Durable: true, Headers: true}

// Broker routes published messages to queues by topic prefix. It is safe for concurrent use.
type Broker struct {
	mu     sync.Mutex
	queues map[string]*queue
}

// NewBroker returns an empty broker.
func NewBroker() *Broker { return &Broker{queues: map[string]*queue{}} }

type entry struct {
	msg         bus.Message
	redelivered bool
	seq         uint64 // arrival order, to put handed-back messages back in place
}

type queue struct {
	prefixes []string
	mu       sync.Mutex
	ready    []entry
	dead     []bus.Message
	wake     chan struct{} // closed and replaced when a message arrives
	seq      uint64
}

// Declare makes the named queue, which keeps every message whose topic starts with one of the
// prefixes, whether a subscriber is there or not. Declaring it again adds prefixes.
func (b *Broker) Declare(name string, prefixes ...string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	q := b.queues[name]
	if q == nil {
		q = &queue{wake: make(chan struct{})}
		b.queues[name] = q
	}
	q.mu.Lock()
	q.prefixes = append(q.prefixes, prefixes...)
	q.mu.Unlock()
}

// Len returns how many messages wait in the queue, not counting those delivered and not yet
// settled.
func (b *Broker) Len(name string) int {
	q := b.queue(name)
	if q == nil {
		return 0
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.ready)
}

// DeadLetters returns the messages rejected from the queue, oldest first.
func (b *Broker) DeadLetters(name string) []bus.Message {
	q := b.queue(name)
	if q == nil {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	return slices.Clone(q.dead)
}

func (b *Broker) queue(name string) *queue {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.queues[name]
}

func (b *Broker) route(m bus.Message) {
	b.mu.Lock()
	var qs []*queue
	for _, q := range b.queues {
		qs = append(qs, q)
	}
	b.mu.Unlock()
	for _, q := range qs {
		q.mu.Lock()
		for _, p := range q.prefixes {
			if strings.HasPrefix(m.Topic, p) {
				q.seq++
				q.ready = append(q.ready, entry{msg: clone(m), seq: q.seq})
				q.signal()
				break
			}
		}
		q.mu.Unlock()
	}
}

// signal wakes the receivers; q.mu is held.
func (q *queue) signal() {
	close(q.wake)
	q.wake = make(chan struct{})
}

func clone(m bus.Message) bus.Message {
	m.Body = slices.Clone(m.Body)
	if m.Headers != nil {
		h := make(map[string]string, len(m.Headers))
		for k, v := range m.Headers {
			h[k] = v
		}
		m.Headers = h
	}
	return m
}

// Publisher returns a publisher into the broker.
func (b *Broker) Publisher() bus.Publisher { return &publisher{broker: b, closed: make(chan struct{})} }

type publisher struct {
	broker    *Broker
	closeOnce sync.Once
	closed    chan struct{}
}

func (p *publisher) Publish(ctx context.Context, msgs []bus.Message) (int, error) {
	for i, m := range msgs {
		select {
		case <-p.closed:
			return i, bus.ErrClosed
		default:
		}
		if err := ctx.Err(); err != nil {
			return i, err
		}
		if m.Time.IsZero() {
			m.Time = time.Now()
		}
		p.broker.route(m)
	}
	return len(msgs), nil
}

func (p *publisher) Features() bus.Features { return features }

func (p *publisher) Close() error {
	p.closeOnce.Do(func() { close(p.closed) })
	return nil
}

// Subscribe returns a subscriber on the named queue, which must have been declared.
func (b *Broker) Subscribe(name string) bus.Subscriber {
	q := b.queue(name)
	if q == nil {
		panic("memory: subscribe to undeclared queue " + name)
	}
	return &subscriber{q: q, closed: make(chan struct{}), inflight: map[uint64]entry{}}
}

type subscriber struct {
	q         *queue
	closeOnce sync.Once
	closed    chan struct{}
	mu        sync.Mutex // guards inflight and done
	inflight  map[uint64]entry
	done      bool
}

func (s *subscriber) Receive(ctx context.Context) (bus.Delivery, error) {
	for {
		select {
		case <-s.closed:
			return bus.Delivery{}, bus.ErrClosed
		default:
		}
		if err := ctx.Err(); err != nil {
			return bus.Delivery{}, err
		}
		s.q.mu.Lock()
		if len(s.q.ready) > 0 {
			e := s.q.ready[0]
			s.q.ready = s.q.ready[1:]
			s.q.mu.Unlock()
			s.mu.Lock()
			if s.done { // closed meanwhile: put it back
				s.mu.Unlock()
				s.q.putBack([]entry{e})
				return bus.Delivery{}, bus.ErrClosed
			}
			s.inflight[e.seq] = e
			s.mu.Unlock()
			return bus.Delivery{Message: clone(e.msg), Redelivered: e.redelivered, ReceivedAt: time.Now(),
				Acker: &acker{s: s, seq: e.seq}}, nil
		}
		wake := s.q.wake
		s.q.mu.Unlock()
		select {
		case <-wake:
		case <-s.closed:
		case <-ctx.Done():
		}
	}
}

// putBack returns handed-back entries to the queue, in their arrival order.
func (q *queue) putBack(es []entry) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for i := range es {
		es[i].redelivered = true
	}
	q.ready = append(es, q.ready...)
	slices.SortStableFunc(q.ready, func(a, b entry) int {
		switch {
		case a.seq < b.seq:
			return -1
		case a.seq > b.seq:
			return 1
		}
		return 0
	})
	q.signal()
}

func (s *subscriber) Features() bus.Features { return features }

func (s *subscriber) Close() error {
	s.closeOnce.Do(func() {
		close(s.closed)
		s.mu.Lock()
		s.done = true
		back := make([]entry, 0, len(s.inflight))
		for _, e := range s.inflight {
			back = append(back, e)
		}
		s.inflight = nil
		s.mu.Unlock()
		if len(back) > 0 {
			s.q.putBack(back)
		}
	})
	return nil
}

type acker struct {
	s   *subscriber
	seq uint64
}

func (a *acker) take() (entry, bool) {
	a.s.mu.Lock()
	defer a.s.mu.Unlock()
	e, ok := a.s.inflight[a.seq]
	if ok {
		delete(a.s.inflight, a.seq)
	}
	return e, ok
}

func (a *acker) Ack() error {
	if _, ok := a.take(); !ok {
		return bus.ErrClosed
	}
	return nil
}

func (a *acker) Requeue() error {
	e, ok := a.take()
	if !ok {
		return bus.ErrClosed
	}
	a.s.q.putBack([]entry{e})
	return nil
}

// Reject keeps the message among the queue's dead letters, with the headers why added.
func (a *acker) Reject(why map[string]string) error {
	e, ok := a.take()
	if !ok {
		return bus.ErrClosed
	}
	dead := clone(e.msg)
	if len(why) > 0 {
		if dead.Headers == nil {
			dead.Headers = map[string]string{}
		}
		for k, v := range why {
			dead.Headers[k] = v
		}
	}
	a.s.q.mu.Lock()
	a.s.q.dead = append(a.s.q.dead, dead)
	a.s.q.mu.Unlock()
	return nil
}
