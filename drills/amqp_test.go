//go:build drills

package drills

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// dialRetry connects to the broker, retrying while it is away, until ctx ends.
func dialRetry(ctx context.Context, url, name string) (*amqp.Connection, error) {
	wait := 100 * time.Millisecond
	for {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		conn, err := rabbitmq.Dial(dctx, url, name)
		cancel()
		if err == nil {
			return conn, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, 2*time.Second)
	}
}

// publisher publishes messages in order with publisher confirms, as Trigger and Buildbot do
// through fedora-messaging: when the broker goes away it reconnects and publishes again, with
// the same message id, every message the broker had not confirmed.
type publisher struct {
	url      string
	exchange string
	rate     float64 // messages per second; 0: as fast as confirms allow
	window   int     // unconfirmed messages in flight

	published   atomic.Int64 // confirmed
	republished atomic.Int64 // published again after the broker did not confirm them
	reconnects  atomic.Int64
}

func newPublisher(url, exchange string) *publisher {
	return &publisher{url: url, exchange: exchange, rate: cfg.rate, window: 256}
}

// run publishes msgs and returns once the broker confirmed every one, or ctx ended.
func (p *publisher) run(ctx context.Context, msgs []rabbitmqtest.Raw) error {
	next := 0
	interval := time.Duration(0)
	if p.rate > 0 {
		interval = time.Duration(float64(time.Second) / p.rate)
	}
	due := time.Now()
	var retry []int // indices to publish again, in order, before going on
	for next < len(msgs) || len(retry) > 0 {
		conn, err := dialRetry(ctx, p.url, "execdb drill publisher")
		if err != nil {
			return err
		}
		ch, err := conn.Channel()
		if err == nil {
			err = ch.Confirm(false)
		}
		if err != nil {
			conn.Close()
			p.reconnects.Add(1)
			continue
		}
		for next < len(msgs) || len(retry) > 0 {
			// One window: what must go again first, then new messages.
			batch := retry
			retry = nil
			for len(batch) < p.window && next < len(msgs) {
				batch = append(batch, next)
				next++
			}
			confirms := make([]*amqp.DeferredConfirmation, len(batch))
			var pubErr error
			for i, idx := range batch {
				if interval > 0 {
					if d := time.Until(due); d > 0 {
						time.Sleep(d)
					}
					due = due.Add(interval)
					if late := time.Since(due); late > time.Second {
						due = time.Now() // after an outage, do not burst to catch up
					}
				}
				m := msgs[idx]
				confirms[i], pubErr = ch.PublishWithDeferredConfirmWithContext(ctx, p.exchange, m.Topic, false, false, m.Publishing)
				if pubErr != nil {
					break
				}
			}
			// Whatever was not confirmed goes again, in order, on a new connection.
			wctx, cancel := context.WithTimeout(ctx, time.Minute)
			for i, idx := range batch {
				ok := false
				if confirms[i] != nil {
					ok, _ = confirms[i].WaitContext(wctx)
				}
				if ok {
					p.published.Add(1)
				} else {
					retry = append(retry, idx)
				}
			}
			cancel()
			if err := ctx.Err(); err != nil {
				conn.Close()
				return err
			}
			if len(retry) > 0 {
				p.republished.Add(int64(len(retry)))
				break
			}
		}
		conn.Close()
		if len(retry) > 0 {
			p.reconnects.Add(1)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
	return nil
}

// announcement is one job-state message ExecDB published, as received.
type announcement struct {
	id    string // message id
	topic string // routing key
	job   string // the body's uuid
}

// collector keeps ExecDB's announcements from a durable queue of its own, reconnecting when
// the broker goes away; it acknowledges each delivery after recording it, so a delivery
// the broker did not see acknowledged comes again (counted as a duplicate).
type collector struct {
	url, queue string

	mu         sync.Mutex
	got        []announcement
	reconnects int
	lastErr    error
	stop       context.CancelFunc
	done       chan struct{}
}

// declareWatch declares the collector's queue (durable, quorum) bound to key on exchange.
func declareWatch(t *testing.T, url, exchange, queue, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, url, "execdb drill setup")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": "quorum"}); err != nil {
		t.Fatalf("declare %s: %v", queue, err)
	}
	if err := ch.QueueBind(queue, key, exchange, false, nil); err != nil {
		t.Fatalf("bind %s: %v", queue, err)
	}
}

func startCollector(url, queue string) *collector {
	ctx, cancel := context.WithCancel(context.Background())
	c := &collector{url: url, queue: queue, stop: cancel, done: make(chan struct{})}
	go c.run(ctx)
	return c
}

func (c *collector) run(ctx context.Context) {
	defer close(c.done)
	for ctx.Err() == nil {
		if err := c.session(ctx); err != nil && ctx.Err() == nil {
			c.mu.Lock()
			c.reconnects++
			c.lastErr = err
			c.mu.Unlock()
			select {
			case <-ctx.Done():
			case <-time.After(200 * time.Millisecond):
			}
		}
	}
}

func (c *collector) session(ctx context.Context) error {
	conn, err := dialRetry(ctx, c.url, "execdb drill collector")
	if err != nil {
		return err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return err
	}
	if err := ch.Qos(2000, 0, false); err != nil {
		return err
	}
	deliveries, err := ch.Consume(c.queue, "", false, false, false, false, nil)
	if err != nil {
		return err
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case d, ok := <-deliveries:
			if !ok {
				return errors.New("deliveries closed")
			}
			var body struct {
				UUID string `json:"uuid"`
			}
			json.Unmarshal(d.Body, &body)
			c.mu.Lock()
			c.got = append(c.got, announcement{id: d.MessageId, topic: d.RoutingKey, job: body.UUID})
			c.mu.Unlock()
			d.Ack(false)
		}
	}
}

// messages returns what arrived so far, in arrival order.
func (c *collector) messages() []announcement {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]announcement(nil), c.got...)
}

func (c *collector) close() {
	c.stop()
	<-c.done
}

// queueDepth returns how many messages wait in queue (ready, not delivered).
func queueDepth(url, queue string) (int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, url, "execdb drill inspect")
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		return 0, err
	}
	return q.Messages, nil
}

// deleteQueues deletes queues and exchanges a drill declared, best effort.
func deleteQueues(url string, queues, exchanges []string) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, url, "execdb drill cleanup")
	if err != nil {
		return
	}
	defer conn.Close()
	for _, q := range queues {
		if ch, err := conn.Channel(); err == nil {
			ch.QueueDelete(q, false, false, false)
			ch.Close()
		}
	}
	for _, e := range exchanges {
		if ch, err := conn.Channel(); err == nil {
			ch.ExchangeDelete(e, false, false)
			ch.Close()
		}
	}
}
