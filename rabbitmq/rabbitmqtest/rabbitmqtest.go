// Package rabbitmqtest helps tests that need a real RabbitMQ: it finds the broker, makes
// names no other test uses, deletes what a test declared and drops a test's connections the
// way a broker restart would.
package rabbitmqtest

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// URL returns EXECDB_TEST_AMQP_URL, skipping the test when it is unset and failing it when the
// broker does not answer.
func URL(t testing.TB) string {
	t.Helper()
	u := testenv.AMQPURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, u, "execdb test probe")
	if err != nil {
		t.Fatalf("EXECDB_TEST_AMQP_URL is set but RabbitMQ does not answer: %v", err)
	}
	conn.Close()
	return u
}

// Name returns a name no other test uses, for queues, exchanges, topic prefixes and
// connection names.
func Name(prefix string) string {
	return prefix + "-" + strings.ReplaceAll(uuid.NewString(), "-", "")[:12]
}

// Cleanup deletes the queues and exchanges when the test ends.
func Cleanup(t testing.TB, url string, queues, exchanges []string) {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := rabbitmq.Dial(ctx, url, "execdb test cleanup")
		if err != nil {
			t.Errorf("cleanup: %v", err)
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
	})
}

// Topology declares the topology now (so that messages published before a subscriber
// connects wait) and deletes it when the test ends.
func Topology(t testing.TB, url string, top rabbitmq.Topology) {
	t.Helper()
	conn := dial(t, url, "execdb test setup")
	defer conn.Close()
	if _, err := rabbitmq.Declare(conn, top); err != nil {
		t.Fatal(err)
	}
	exchanges := []string{top.Queue + ".dlx"}
	if !strings.HasPrefix(top.Exchange, "amq.") {
		exchanges = append(exchanges, top.Exchange)
	}
	Cleanup(t, url, []string{top.Queue, top.Queue + ".rejected"}, exchanges)
}

// Watch declares a queue of a subscriber other than ExecDB (a notification bot, say): a plain
// durable queue bound to the topic exchange (declared unless it is one of the broker's amq.*)
// with the routing keys, which Get can read. Both are deleted when the test ends.
func Watch(t testing.TB, url, exchange, queue string, keys ...string) {
	t.Helper()
	conn := dial(t, url, "execdb test setup")
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	var exchanges []string
	if !strings.HasPrefix(exchange, "amq.") {
		if err := ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, true, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		exchanges = append(exchanges, exchange)
	}
	if _, err := ch.QueueDeclare(queue, true, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		if err := ch.QueueBind(queue, k, exchange, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	Cleanup(t, url, []string{queue}, exchanges)
}

// Collector consumes a queue (one Watch declared) in the background and keeps what arrives.
type Collector struct {
	mu   sync.Mutex
	msgs []amqp.Delivery
}

// Collect starts consuming queue, with automatic acks, until the test ends.
func Collect(t testing.TB, url, queue string) *Collector {
	t.Helper()
	conn := dial(t, url, "execdb test collector")
	t.Cleanup(func() { conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	deliveries, err := ch.Consume(queue, "", true, false, false, false, nil)
	if err != nil {
		t.Fatalf("consume %s: %v", queue, err)
	}
	c := &Collector{}
	go func() {
		for d := range deliveries {
			c.mu.Lock()
			c.msgs = append(c.msgs, d)
			c.mu.Unlock()
		}
	}()
	return c
}

// Messages returns what arrived so far, in arrival order.
func (c *Collector) Messages() []amqp.Delivery {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.msgs)
}

// Get takes one message off a queue without waiting; ok is false when the queue is empty. (A
// queue with a single active consumer, as ExecDB's own, cannot be read so: use Watch's.)
func Get(t testing.TB, url, queue string) (d amqp.Delivery, ok bool) {
	t.Helper()
	conn := dial(t, url, "execdb test get")
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	d, ok, err = ch.Get(queue, true)
	if err != nil {
		t.Fatalf("get from %s: %v", queue, err)
	}
	return d, ok
}

// CloseConnections closes, on the broker's side, every connection whose name contains name, as
// a broker restart or `rabbitmqctl close_all_connections` would, and returns how many. It
// skips the test when rabbitmqctl is not available.
func CloseConnections(t testing.TB, name string) int {
	t.Helper()
	pids := Connections(t, name)
	for _, pid := range pids {
		if out, err := exec.Command("rabbitmqctl", "-q", "close_connection", pid, "execdb test: simulated broker restart").CombinedOutput(); err != nil {
			t.Fatalf("rabbitmqctl close_connection %s: %v: %s", pid, err, out)
		}
	}
	return len(pids)
}

// Connections returns the broker's ids of the open connections whose name contains name. It
// skips the test when rabbitmqctl is not available.
func Connections(t testing.TB, name string) []string {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl is not installed")
	}
	out, err := exec.Command("rabbitmqctl", "-q", "list_connections", "pid", "client_properties").CombinedOutput()
	if err != nil {
		t.Skipf("rabbitmqctl list_connections: %v: %s", err, out)
	}
	var pids []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(line, name) {
			continue
		}
		pid, _, _ := strings.Cut(strings.TrimSpace(line), "\t")
		pids = append(pids, pid)
	}
	return pids
}

// SuspendQueue suspends the Erlang process of the queue on the broker (sys:suspend, the Ra
// server of a quorum queue), as a quorum queue whose leader did not come back after a broker
// crash: the queue takes nothing in, so the broker confirms nothing routed to it, until it is
// resumed. It returns the function that resumes it, which also runs when the test ends. It
// skips the test when rabbitmqctl is not usable (not installed, or not allowed to talk to the
// node: it needs to run as root or as the broker's user).
func SuspendQueue(t testing.TB, url, queue string) (resume func()) {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl is not installed: cannot suspend a queue on the broker")
	}
	if out, err := exec.Command("rabbitmqctl", "-q", "eval", "ok.").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Skipf("rabbitmqctl cannot talk to the broker (run the tests as root or as the broker's user): %v: %s", err, out)
	}
	uri, err := amqp.ParseURI(url)
	if err != nil {
		t.Fatal(err)
	}
	sys := func(call string) error {
		// The queue's process: a pid for a classic queue, {RaServerName, Node} for a quorum
		// queue (a single node here).
		expr := fmt.Sprintf(`case rabbit_amqqueue:lookup(rabbit_misc:r(<<%q/utf8>>, queue, <<%q/utf8>>)) of
			{ok, Q} -> case amqqueue:get_pid(Q) of {Name, _} -> sys:%[3]s(whereis(Name)); Pid -> sys:%[3]s(Pid) end;
			Error -> Error end.`, uri.Vhost, queue, call)
		out, err := exec.Command("rabbitmqctl", "-q", "eval", expr).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "ok" {
			return fmt.Errorf("rabbitmqctl eval sys:%s of queue %s: %v: %s", call, queue, err, out)
		}
		return nil
	}
	var once sync.Once
	resume = func() {
		once.Do(func() {
			if err := sys("resume"); err != nil {
				t.Errorf("%v (resume it by hand, or restart the broker)", err)
			}
		})
	}
	if err := sys("suspend"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(resume)
	return resume
}

// Publish publishes raw messages with confirms, as another application would.
func Publish(t testing.TB, url, exchange string, msgs ...Raw) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn := dial(t, url, "execdb test publisher")
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	// Publish everything, then wait for the confirms: a burst of thousands takes one round trip,
	// not one each. The order on the channel is the order of msgs.
	confirms := make([]*amqp.DeferredConfirmation, len(msgs))
	for i, m := range msgs {
		dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchange, m.Topic, false, false, m.Publishing)
		if err != nil {
			t.Fatalf("publish %s: %v", m.Topic, err)
		}
		confirms[i] = dc
	}
	for i, dc := range confirms {
		if ok, err := dc.WaitContext(ctx); err != nil || !ok {
			t.Fatalf("publish %s: confirmed=%v err=%v", msgs[i].Topic, ok, err)
		}
	}
}

// Raw is a message as another application publishes it.
type Raw struct {
	Topic string
	amqp.Publishing
}

// JSON is a fedora-messaging style message with the given id and body.
func JSON(topic, id, body string) Raw {
	return Raw{Topic: topic, Publishing: amqp.Publishing{
		ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent,
		MessageId: id, Body: []byte(body),
		Headers: amqp.Table{"fedora_messaging_schema": "base.message", "fedora_messaging_severity": int32(20),
			"sent-at": time.Now().UTC().Format(rabbitmq.SentAtLayout)},
	}}
}

// String describes a delivery for failure messages.
func String(d amqp.Delivery) string {
	return fmt.Sprintf("%s id=%s headers=%v body=%s", d.RoutingKey, d.MessageId, d.Headers, d.Body)
}

// QueueLen returns how many messages are ready in the queue (not counting those delivered and
// not yet acknowledged).
func QueueLen(t testing.TB, url, queue string) int {
	t.Helper()
	conn := dial(t, url, "execdb test inspect")
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q, err := ch.QueueDeclarePassive(queue, true, false, false, false, nil)
	if err != nil {
		t.Fatalf("inspect %s: %v", queue, err)
	}
	return q.Messages
}

// Unacked returns how many of the queue's messages are delivered to a consumer and not yet
// acknowledged, as the broker counts them (rabbitmqctl list_queues). It skips the test when
// rabbitmqctl is not available.
func Unacked(t testing.TB, url, queue string) int {
	t.Helper()
	if _, err := exec.LookPath("rabbitmqctl"); err != nil {
		t.Skip("rabbitmqctl is not installed")
	}
	uri, err := amqp.ParseURI(url)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("rabbitmqctl", "-q", "list_queues", "-p", uri.Vhost, "name", "messages_unacknowledged").CombinedOutput()
	if err != nil {
		t.Fatalf("rabbitmqctl list_queues: %v: %s", err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, n, ok := strings.Cut(strings.TrimSpace(line), "\t")
		if !ok || name != queue {
			continue
		}
		v, err := strconv.Atoi(strings.TrimSpace(n))
		if err != nil {
			t.Fatalf("rabbitmqctl list_queues: queue %s: %q", queue, n)
		}
		return v
	}
	t.Fatalf("rabbitmqctl list_queues: no queue %s", queue)
	return 0
}

// dial connects to url as name (the connection name rabbitmqctl shows) or fails the test; the
// caller closes the connection.
func dial(t testing.TB, url, name string) *amqp.Connection {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, url, name)
	if err != nil {
		t.Fatal(err)
	}
	return conn
}
