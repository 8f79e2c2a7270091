// Package bustest is the suite every bus transport passes (bus/memory, rabbitmq, fedmsg). What
// a transport does not guarantee it declares in its Features, and the suite checks what it
// declares.
package bustest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
)

// Setup prepares an isolated corner of a transport for one test: a publisher, and a function
// that connects a new subscriber receiving the given topics (each matched exactly or as a
// prefix; the suite uses topics that are not prefixes of each other). Subscribers made by one
// Setup share a queue where the transport has queues. Setup arranges for everything to be
// closed and deleted when the test ends.
type Setup func(t *testing.T, topics []string) (pub bus.Publisher, subscribe func(t *testing.T) bus.Subscriber)

// Wait bounds how long the suite waits for something that should happen; it is generous, the
// suite does not measure speed.
const Wait = 30 * time.Second

// Run runs the suite.
func Run(t *testing.T, setup Setup) {
	tests := []struct {
		name string
		fn   func(*testing.T, Setup)
	}{
		{"RoundTrip", testRoundTrip},
		{"Order", testOrder},
		{"OnlySubscribedTopics", testFilter},
		{"CloseUnblocksReceive", testCloseUnblocks},
		{"ReceiveHonoursContext", testContext},
		{"PublisherClose", testPublisherClose},
		{"UnackedAreRedelivered", testRedelivery},
		{"RejectDeadLetters", testReject},
		{"DurableWithoutSubscriber", testDurable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, setup) })
	}
}

func topics(t *testing.T) []string {
	base := "org.example.bustest." + strings.ReplaceAll(strings.ToLower(t.Name()), "/", ".")
	return []string{base + ".alpha", base + ".beta", base + ".gamma"}
}

// ready makes sure sub receives what pub publishes on topic: transports without durable
// queues (ZeroMQ) only deliver once the subscription reached the publisher. It publishes probes
// until one arrives; receive skips the probes that come later.
func ready(t *testing.T, pub bus.Publisher, sub bus.Subscriber, topic string) {
	t.Helper()
	if pub.Features().Durable {
		return
	}
	deadline := time.Now().Add(Wait)
	for i := 0; time.Now().Before(deadline); i++ {
		probe := bus.Message{ID: fmt.Sprintf("probe-%d", i), Topic: topic, Body: []byte(`{}`), Time: time.Now()}
		if _, err := pub.Publish(context.Background(), []bus.Message{probe}); err != nil {
			t.Fatalf("publish probe: %v", err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		d, err := sub.Receive(ctx)
		cancel()
		if err == nil && strings.Contains(d.ID, "probe-") {
			return
		}
		if err == nil {
			t.Fatalf("got %q while waiting for a probe", d.ID)
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("receive probe: %v", err)
		}
	}
	t.Fatal("the subscriber never received a probe")
}

// receive returns the next delivery that is not a probe.
func receive(t *testing.T, sub bus.Subscriber) bus.Delivery {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), Wait)
	defer cancel()
	for {
		d, err := sub.Receive(ctx)
		if err != nil {
			t.Fatalf("receive: %v", err)
		}
		if strings.Contains(d.ID, "probe-") {
			if err := d.Ack(); err != nil {
				t.Fatalf("ack probe: %v", err)
			}
			continue
		}
		return d
	}
}

func publish(t *testing.T, pub bus.Publisher, msgs ...bus.Message) {
	t.Helper()
	n, err := pub.Publish(context.Background(), msgs)
	if err != nil || n != len(msgs) {
		t.Fatalf("publish: got %d, %v; want %d, nil", n, err, len(msgs))
	}
}

func msg(id, topic string) bus.Message {
	return bus.Message{ID: id, Topic: topic, Body: []byte(`{"id":"` + id + `"}`),
		Headers: map[string]string{"fedora_messaging_schema": "bustest.v1", "x_test": id}, Time: time.Now()}
}

func testRoundTrip(t *testing.T, setup Setup) {
	tp := topics(t)
	pub, subscribe := setup(t, tp[:2])
	sub := subscribe(t)
	ready(t, pub, sub, tp[0])
	sent := msg("7f1c0e62-53a4-4a55-9f3e-1d2b6f0a9c11", tp[1])
	publish(t, pub, sent)
	d := receive(t, sub)
	if d.Topic != sent.Topic || string(d.Body) != string(sent.Body) {
		t.Errorf("got topic %q body %s, want %q %s", d.Topic, d.Body, sent.Topic, sent.Body)
	}
	if !strings.Contains(d.ID, sent.ID) {
		t.Errorf("got id %q, want one that carries %q", d.ID, sent.ID)
	}
	if pub.Features().Headers && d.Headers["x_test"] != sent.ID {
		t.Errorf("got headers %v, want x_test=%s", d.Headers, sent.ID)
	}
	if d.ReceivedAt.IsZero() {
		t.Error("got no ReceivedAt")
	}
	if err := d.Ack(); err != nil {
		t.Errorf("ack: %v", err)
	}
}

func testOrder(t *testing.T, setup Setup) {
	tp := topics(t)
	pub, subscribe := setup(t, tp[:1])
	sub := subscribe(t)
	ready(t, pub, sub, tp[0])
	var msgs []bus.Message
	for i := range 50 {
		msgs = append(msgs, msg(fmt.Sprintf("order-%02d", i), tp[0]))
	}
	publish(t, pub, msgs...)
	for i := range msgs {
		d := receive(t, sub)
		if !strings.HasSuffix(d.ID, msgs[i].ID) {
			t.Fatalf("message %d: got %s, want %s", i, d.ID, msgs[i].ID)
		}
		d.Ack()
	}
}

func testFilter(t *testing.T, setup Setup) {
	tp := topics(t)
	pub, subscribe := setup(t, tp[:1])
	sub := subscribe(t)
	ready(t, pub, sub, tp[0])
	publish(t, pub, msg("other", tp[2]), msg("mine", tp[0]))
	if d := receive(t, sub); !strings.HasSuffix(d.ID, "mine") {
		t.Errorf("got %s on %s, want only the subscribed topic", d.ID, d.Topic)
	}
}

func testCloseUnblocks(t *testing.T, setup Setup) {
	tp := topics(t)
	_, subscribe := setup(t, tp[:1])
	sub := subscribe(t)
	done := make(chan error, 1)
	go func() {
		_, err := sub.Receive(context.Background())
		done <- err
	}()
	time.Sleep(50 * time.Millisecond) // let Receive block (not needed for correctness)
	if err := sub.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	select {
	case err := <-done:
		if !errors.Is(err, bus.ErrClosed) {
			t.Errorf("blocked receive: got %v, want ErrClosed", err)
		}
	case <-time.After(Wait):
		t.Fatal("Close did not unblock Receive")
	}
	if err := sub.Close(); err != nil {
		t.Errorf("second close: got %v, want nil", err)
	}
	if _, err := sub.Receive(context.Background()); !errors.Is(err, bus.ErrClosed) {
		t.Errorf("receive after close: got %v, want ErrClosed", err)
	}
}

func testContext(t *testing.T, setup Setup) {
	tp := topics(t)
	_, subscribe := setup(t, tp[:1])
	sub := subscribe(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := sub.Receive(ctx)
		done <- err
	}()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got %v, want context.Canceled", err)
		}
	case <-time.After(Wait):
		t.Fatal("cancelling the context did not unblock Receive")
	}
}

func testPublisherClose(t *testing.T, setup Setup) {
	tp := topics(t)
	pub, _ := setup(t, tp[:1])
	if err := pub.Close(); err != nil {
		t.Errorf("close: %v", err)
	}
	if err := pub.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
	n, err := pub.Publish(context.Background(), []bus.Message{msg("after-close", tp[0])})
	if n != 0 || err == nil {
		t.Errorf("publish after close: got %d, %v; want 0 and an error", n, err)
	}
}

func testRedelivery(t *testing.T, setup Setup) {
	tp := topics(t)
	pub, subscribe := setup(t, tp[:1])
	if !pub.Features().Acks {
		t.Skip("the transport has no acks")
	}
	sub := subscribe(t)
	ready(t, pub, sub, tp[0])
	publish(t, pub, msg("acked", tp[0]), msg("unacked", tp[0]))
	if d := receive(t, sub); !strings.HasSuffix(d.ID, "acked") {
		t.Fatalf("got %s, want acked", d.ID)
	} else if err := d.Ack(); err != nil {
		t.Fatalf("ack: %v", err)
	}
	if d := receive(t, sub); !strings.HasSuffix(d.ID, "unacked") || d.Redelivered {
		t.Fatalf("got %s redelivered=%v, want unacked for the first time", d.ID, d.Redelivered)
	}
	sub.Close()
	again := subscribe(t)
	d := receive(t, again)
	if !strings.HasSuffix(d.ID, "unacked") || !d.Redelivered {
		t.Fatalf("after close: got %s redelivered=%v, want unacked redelivered", d.ID, d.Redelivered)
	}
	if err := d.Requeue(); err != nil {
		t.Fatalf("requeue: %v", err)
	}
	d = receive(t, again)
	if !strings.HasSuffix(d.ID, "unacked") || !d.Redelivered {
		t.Fatalf("after requeue: got %s redelivered=%v, want unacked redelivered", d.ID, d.Redelivered)
	}
	d.Ack()
}

func testReject(t *testing.T, setup Setup) {
	tp := topics(t)
	pub, subscribe := setup(t, tp[:1])
	if !pub.Features().Acks {
		t.Skip("the transport has no acks")
	}
	sub := subscribe(t)
	ready(t, pub, sub, tp[0])
	publish(t, pub, msg("poison", tp[0]))
	d := receive(t, sub)
	if err := d.Reject(map[string]string{"execdb_reject_reason": "schema"}); err != nil {
		t.Fatalf("reject: %v", err)
	}
	sub.Close()
	again := subscribe(t)
	publish(t, pub, msg("next", tp[0]))
	if d := receive(t, again); !strings.HasSuffix(d.ID, "next") {
		t.Errorf("got %s, want the rejected message gone", d.ID)
	}
}

func testDurable(t *testing.T, setup Setup) {
	tp := topics(t)
	pub, subscribe := setup(t, tp[:1])
	if !pub.Features().Durable {
		t.Skip("the transport drops messages nobody is subscribed to")
	}
	publish(t, pub, msg("early", tp[0]))
	sub := subscribe(t)
	if d := receive(t, sub); !strings.HasSuffix(d.ID, "early") {
		t.Errorf("got %s, want early", d.ID)
	}
}
