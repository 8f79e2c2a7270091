package rabbitmq_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/bus/bustest"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	amqp "github.com/rabbitmq/amqp091-go"
)

func TestTransport(t *testing.T) {
	url := rabbitmqtest.URL(t)
	bustest.Run(t, func(t *testing.T, topics []string) (bus.Publisher, func(t *testing.T) bus.Subscriber) {
		top := rabbitmq.Topology{Exchange: rabbitmqtest.Name("execdb-test-x"), Queue: rabbitmqtest.Name("execdb-test-q"), Bindings: topics}
		rabbitmqtest.Topology(t, url, top)
		pub := rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: url, Exchange: top.Exchange})
		t.Cleanup(func() { pub.Close() })
		return pub, func(t *testing.T) bus.Subscriber {
			s := rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: url, Topology: top, Backoff: bus.Backoff{Min: 50 * time.Millisecond, Max: time.Second}})
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}

func TestWireFormat(t *testing.T) {
	at := time.Date(2026, 11, 2, 10, 0, 0, 999_000_000, time.UTC)
	p := rabbitmq.Publishing(bus.Message{ID: "6f0e", Topic: "t", Body: []byte(`{}`), Headers: map[string]string{
		"fedora_messaging_schema": "execdb.job.v1", "fedora_messaging_severity": "30", "execdb_fatal": "true", "execdb_state": "CRASHED"}}, at)
	if p.ContentType != "application/json" || p.ContentEncoding != "utf-8" || p.DeliveryMode != amqp.Persistent || p.MessageId != "6f0e" {
		t.Errorf("got properties %+v", p)
	}
	want := amqp.Table{"fedora_messaging_schema": "execdb.job.v1", "fedora_messaging_severity": int32(30),
		"execdb_fatal": true, "execdb_state": "CRASHED", "sent-at": "2026-11-02T10:00:00+00:00"}
	for k, v := range want {
		if p.Headers[k] != v {
			t.Errorf("header %s: got %#v, want %#v", k, p.Headers[k], v)
		}
	}
	m := rabbitmq.Message(amqp.Delivery{RoutingKey: "t", Body: []byte(`{"a":1}`), Headers: amqp.Table{
		"sent-at": "2026-11-02T10:00:00+00:00", "fedora_messaging_severity": int64(20)}})
	if m.ID != bus.ContentID("t", []byte(`{"a":1}`)) || m.Headers["fedora_messaging_severity"] != "20" || !m.Time.Equal(at.Truncate(time.Second)) {
		t.Errorf("got %+v", m)
	}
}

// TestReconnect drops the connections on the broker's side in the middle of a stream: the
// subscriber and the publisher come back, and every message arrives.
func TestReconnect(t *testing.T) {
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-reconnect")
	top := rabbitmq.Topology{Exchange: name + "-x", Queue: name + "-q", Bindings: []string{"org.example.reconnect"}}
	rabbitmqtest.Topology(t, url, top)
	pub := rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: url, Exchange: top.Exchange, Name: name + " publisher"})
	defer pub.Close()
	sub := rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: url, Topology: top, Name: name + " consumer",
		Backoff: bus.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}})
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Wait)
	defer cancel()
	send := func(id string) {
		t.Helper()
		for {
			n, err := pub.Publish(ctx, []bus.Message{{ID: id, Topic: "org.example.reconnect", Body: []byte(`{}`)}})
			if n == 1 {
				return
			}
			if ctx.Err() != nil {
				t.Fatalf("publish %s: %v", id, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	send("before")
	d, err := sub.Receive(ctx)
	if err != nil || d.ID != "before" {
		t.Fatalf("got %s, %v; want before", d.ID, err)
	}
	if err := d.Ack(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Ready(ctx); err != nil {
		t.Fatalf("publisher ready: %v", err)
	}
	if n := rabbitmqtest.CloseConnections(t, name); n != 2 {
		t.Fatalf("closed %d connections, want 2", n)
	}
	send("after")
	d, err = sub.Receive(ctx)
	if err != nil || d.ID != "after" {
		t.Fatalf("got %s, %v; want after", d.ID, err)
	}
	d.Ack()
	if err := sub.Ready(ctx); err != nil {
		t.Errorf("subscriber ready: %v", err)
	}
}

// TestTopology checks the queue is a quorum queue with a single active consumer, and rejected
// messages are dead-lettered with the headers that say why.
func TestTopology(t *testing.T) {
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-topology")
	top := rabbitmq.Topology{Exchange: "amq.topic", Queue: name, Bindings: []string{name + ".in"}}
	rabbitmqtest.Topology(t, url, top)
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Wait)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, url, "execdb test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	qt, err := rabbitmq.Declare(conn, top) // again: no change
	if err != nil || qt != rabbitmq.Quorum {
		t.Fatalf("got %s, %v; want a quorum queue", qt, err)
	}
	rabbitmqtest.Publish(t, url, "amq.topic", rabbitmqtest.JSON(name+".in", "poison", `garbage`))
	sub := rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: url, Topology: top})
	defer sub.Close()
	d, err := sub.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Headers["fedora_messaging_schema"] != "base.message" || d.Time.IsZero() {
		t.Errorf("got headers %v time %v", d.Headers, d.Time)
	}
	why := map[string]string{"execdb_reject_reason": "undecodable", "execdb_reject_field": "", "execdb_reject_detail": "body is not JSON"}
	if err := d.Reject(why); err != nil {
		t.Fatal(err)
	}
	for {
		if dl, ok := rabbitmqtest.Get(t, url, name+".rejected"); ok {
			if dl.MessageId != "poison" || string(dl.Body) != "garbage" || dl.Headers["execdb_reject_reason"] != "undecodable" ||
				dl.Headers["execdb_reject_detail"] != "body is not JSON" || dl.Headers["fedora_messaging_schema"] != "base.message" ||
				dl.Headers["x-original-routing-key"] != name+".in" {
				t.Errorf("dead letter: got %s", rabbitmqtest.String(dl))
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the rejected message never reached the dead-letter queue")
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The queue has a single active consumer: declaring it without is refused as inequivalent.
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	_, err = ch.QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-dead-letter-exchange": name + ".dlx"})
	if err == nil || !strings.Contains(err.Error(), "x-single-active-consumer") {
		t.Errorf("declaring the queue without a single active consumer: got %v, want it refused as inequivalent", err)
	}
}

// TestQueueOfAnOlderExecDB: a queue declared by an ExecDB before 1.1 (no single active
// consumer) is not used; the error says what to do.
func TestQueueOfAnOlderExecDB(t *testing.T) {
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-old")
	rabbitmqtest.Cleanup(t, url, []string{name, name + ".rejected"}, []string{name + ".dlx"})
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Wait)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, url, "execdb test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "quorum", "x-dead-letter-exchange": name + ".dlx"}); err != nil {
		t.Fatal(err)
	}
	ch.Close()
	_, err = rabbitmq.Declare(conn, rabbitmq.Topology{Exchange: "amq.topic", Queue: name, Bindings: []string{name + ".in"}})
	if err == nil || !strings.Contains(err.Error(), "delete it") || !strings.Contains(err.Error(), "EXECDB_AMQP_QUEUE") {
		t.Errorf("got %v, want an error that says how to replace the queue", err)
	}
}

// TestClassicQueueFallback: a queue that exists as a classic queue is used as one, and only
// that refusal makes a classic queue; the dead-letter queue is bounded.
func TestClassicQueueFallback(t *testing.T) {
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-classic")
	rabbitmqtest.Cleanup(t, url, []string{name, name + ".rejected"}, []string{name + ".dlx"})
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Wait)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, url, "execdb test")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ch.QueueDeclare(name, true, false, false, false, amqp.Table{"x-queue-type": "classic",
		"x-dead-letter-exchange": name + ".dlx", "x-single-active-consumer": true}); err != nil {
		t.Fatal(err)
	}
	ch.Close()
	qt, err := rabbitmq.Declare(conn, rabbitmq.Topology{Exchange: "amq.topic", Queue: name, Bindings: []string{name + ".in"}})
	if err != nil || qt != rabbitmq.Classic {
		t.Fatalf("got %s, %v; want the existing classic queue used", qt, err)
	}
	// The dead-letter queue was declared with its bound: declaring it again with the same
	// arguments is accepted, which an unbounded queue would refuse as inequivalent.
	ch, err = conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	bound := amqp.Table{"x-queue-type": "quorum", "x-max-length": int64(rabbitmq.DeadLetterMaxLength), "x-overflow": "drop-head"}
	if _, err := ch.QueueDeclare(name+".rejected", true, false, false, false, bound); err != nil {
		t.Errorf("the dead-letter queue is not bounded as declared: %v", err)
	}
}

// TestTooLargeIsCutAtReceive: a body over the subscriber's limit is delivered at once as
// bus.ErrTooLarge with only its beginning kept, so that a burst of large messages does not
// pile up in memory; rejecting it dead-letters that beginning with why.
func TestTooLargeIsCutAtReceive(t *testing.T) {
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-large")
	top := rabbitmq.Topology{Exchange: "amq.topic", Queue: name, Bindings: []string{name + ".in"}}
	rabbitmqtest.Topology(t, url, top)
	big := `{"uuid":"` + strings.Repeat("x", 1<<20) + `"}`
	rabbitmqtest.Publish(t, url, "amq.topic", rabbitmqtest.JSON(name+".in", "big", big), rabbitmqtest.JSON(name+".in", "small", `{}`))
	sub := rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: url, Topology: top, MaxBodyBytes: 64 << 10})
	defer sub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Wait)
	defer cancel()
	d, err := sub.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !errors.Is(d.Malformed, bus.ErrTooLarge) || len(d.Body) != bus.KeptOfTooLarge || d.BodySize != len(big) || d.ID != "big" ||
		string(d.Body) != big[:bus.KeptOfTooLarge] {
		t.Fatalf("got malformed %v, %d of %d bytes, id %s; want ErrTooLarge, %d of %d", d.Malformed, len(d.Body), d.BodySize, d.ID, bus.KeptOfTooLarge, len(big))
	}
	if err := d.Reject(map[string]string{"execdb_reject_reason": "schema"}); err != nil {
		t.Fatal(err)
	}
	if d, err := sub.Receive(ctx); err != nil || d.Malformed != nil || string(d.Body) != `{}` || d.BodySize != 2 {
		t.Fatalf("small: got %+v, %v", d, err)
	} else {
		d.Ack()
	}
	for {
		if dl, ok := rabbitmqtest.Get(t, url, name+".rejected"); ok {
			if len(dl.Body) != bus.KeptOfTooLarge || dl.Headers["execdb_reject_reason"] != "schema" {
				t.Errorf("dead letter: got %d bytes, headers %v", len(dl.Body), dl.Headers)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no dead letter")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
