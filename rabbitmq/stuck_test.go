package rabbitmq_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/bus/bustest"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// stuckWait is how long these tests wait for a call that must return. It is generous: they do
// not measure how fast a call returns, only that it does at all.
const stuckWait = 2 * time.Minute

// returns runs f and waits for it at most until ctx ends, failing the test when it does not
// return by then.
func returns[T any](t *testing.T, ctx context.Context, what string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	began := time.Now()
	go func() { done <- f() }()
	select {
	case v := <-done:
		t.Logf("%s returned after %s", what, time.Since(began).Round(time.Millisecond))
		return v
	case <-ctx.Done():
		t.Fatalf("%s did not return within %s", what, stuckWait)
		panic("unreachable")
	}
}

type published struct {
	n   int
	err error
}

// declareQueue declares a durable queue of type qt (quorum or classic) bound to amq.topic with
// key, deleted when the test ends: another subscriber's queue for ExecDB's announcements.
func declareQueue(t *testing.T, url, queue, qt, key string) {
	t.Helper()
	rabbitmqtest.Cleanup(t, url, []string{queue}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Wait)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, url, "execdb test setup")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, amqp.Table{"x-queue-type": qt}); err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(queue, key, "amq.topic", false, nil); err != nil {
		t.Fatal(err)
	}
}

// TestPublishToAStuckQueue: a queue bound to the exchange stops answering (its process
// suspended, as a quorum queue whose leader did not come back after a broker crash), so the
// broker confirms nothing routed to it and does not finish closing a channel that published to
// it. Publish then returns an error when its context ends, or after ConfirmTimeout when the
// context has no deadline, so that the relay retries later (the messages stay in the outbox);
// Close returns, also while a Publish waits; and once the queue answers again, the publisher
// publishes again.
func TestPublishToAStuckQueue(t *testing.T) {
	for _, qt := range []string{"quorum", "classic"} {
		t.Run(qt, func(t *testing.T) {
			url := rabbitmqtest.URL(t)
			name := rabbitmqtest.Name("execdb-test-stuck")
			declareQueue(t, url, name, qt, name+".#")
			msgs := func(id string) []bus.Message {
				return []bus.Message{{ID: id + "-1", Topic: name + ".job", Body: []byte(`{}`)}, {ID: id + "-2", Topic: name + ".job", Body: []byte(`{}`)}}
			}
			ctx, cancel := context.WithTimeout(context.Background(), stuckWait)
			defer cancel()
			pub := rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: url, Exchange: "amq.topic", Name: name + " publisher",
				ConfirmTimeout: 3 * time.Second})
			defer pub.Close()
			if n, err := pub.Publish(ctx, msgs("before")); n != 2 || err != nil {
				t.Fatalf("before the queue is stuck: got %d, %v; want 2 confirmed", n, err)
			}
			resume := rabbitmqtest.SuspendQueue(t, url, name)

			// The caller's deadline comes first.
			pctx, pcancel := context.WithTimeout(ctx, time.Second)
			defer pcancel()
			r := returns(t, ctx, "Publish with a deadline", func() published {
				n, err := pub.Publish(pctx, msgs("deadline"))
				return published{n, err}
			})
			if r.n != 0 || !errors.Is(r.err, context.DeadlineExceeded) {
				t.Errorf("publish with a deadline of 1s: got %d, %v; want 0 and context.DeadlineExceeded", r.n, r.err)
			}
			t.Logf("with a deadline: %v", r.err)

			// No deadline: ConfirmTimeout.
			r = returns(t, ctx, "Publish without a deadline", func() published {
				n, err := pub.Publish(context.Background(), msgs("no-deadline"))
				return published{n, err}
			})
			if r.n != 0 || !errors.Is(r.err, rabbitmq.ErrNoConfirm) {
				t.Errorf("publish without a deadline: got %d, %v; want 0 and ErrNoConfirm", r.n, r.err)
			}
			t.Logf("without a deadline: %v", r.err)

			// Close while a Publish waits for confirms it would wait an hour for.
			waiting := rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: url, Exchange: "amq.topic", Name: name + " waiting",
				ConfirmTimeout: time.Hour})
			done := make(chan published, 1)
			go func() {
				n, err := waiting.Publish(context.Background(), msgs("closed"))
				done <- published{n, err}
			}()
			time.Sleep(time.Second) // let it publish and wait (not needed for correctness)
			returns(t, ctx, "Close while a Publish waits", func() error { return waiting.Close() })
			r = returns(t, ctx, "Publish interrupted by Close", func() published { return <-done })
			if r.n != 0 || !errors.Is(r.err, bus.ErrClosed) {
				t.Errorf("publish interrupted by Close: got %d, %v; want 0 and bus.ErrClosed", r.n, r.err)
			}
			returns(t, ctx, "Close after failed publishes", func() error { return pub.Close() })

			// The queue answers again: a new publisher gets its confirms.
			resume()
			again := rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: url, Exchange: "amq.topic", Name: name + " again"})
			defer again.Close()
			if n, err := again.Publish(ctx, msgs("after")); n != 2 || err != nil {
				t.Errorf("after the queue was resumed: got %d, %v; want 2 confirmed", n, err)
			}
		})
	}
}

// TestCloseWithAStuckQueue: Close returns while ExecDB's own queue does not answer, as it must
// for `execdb serve` to stop on SIGTERM. The subscriber had received a message and not
// acknowledged it; the broker delivers it again once the queue answers.
func TestCloseWithAStuckQueue(t *testing.T) {
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-stuck-sub")
	top := rabbitmq.Topology{Exchange: "amq.topic", Queue: name, Bindings: []string{name + ".in"}}
	rabbitmqtest.Topology(t, url, top)
	rabbitmqtest.Publish(t, url, "amq.topic", rabbitmqtest.JSON(name+".in", "one", `{}`))
	ctx, cancel := context.WithTimeout(context.Background(), stuckWait)
	defer cancel()
	sub := rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: url, Topology: top, Name: name + " consumer"})
	d, err := sub.Receive(ctx)
	if err != nil || d.ID != "one" {
		t.Fatalf("got %s, %v; want one", d.ID, err)
	}
	resume := rabbitmqtest.SuspendQueue(t, url, name)
	dctx, dcancel := context.WithTimeout(ctx, time.Second)
	defer dcancel()
	returns(t, ctx, "Depth with a deadline", func() error { _, err := sub.Depth(dctx); return err })
	returns(t, ctx, "Close", func() error { return sub.Close() })
	resume()
	again := rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: url, Topology: top, Name: name + " again"})
	defer again.Close()
	d, err = again.Receive(ctx)
	if err != nil || d.ID != "one" || !d.Redelivered {
		t.Fatalf("after the queue was resumed: got %s (redelivered %v), %v; want one again", d.ID, d.Redelivered, err)
	}
	d.Ack()
}
