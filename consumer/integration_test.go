package consumer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/consumer"
	"github.com/fedora-qa/execdb/fedmsg"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

type amqpBus struct {
	url, exchange, queue, name string
}

// newAMQP declares a private exchange and queue, and starts a consumer on them.
func newAMQP(t *testing.T, store *storage.Store) *amqpBus {
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-consumer")
	top := rabbitmq.Topology{Exchange: name + "-x", Queue: name, Bindings: consumer.Topics(prefix)}
	rabbitmqtest.Topology(t, url, top)
	sub := rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: url, Topology: top, Name: name,
		Backoff: bus.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}})
	run(t, store, statemachine.OriginAMQP, sub, nil)
	return &amqpBus{url: url, exchange: top.Exchange, queue: name, name: name}
}

func (a *amqpBus) send(t *testing.T, msgs ...rabbitmqtest.Raw) {
	t.Helper()
	rabbitmqtest.Publish(t, a.url, a.exchange, msgs...)
}

func raw(id, suffix, body string) rabbitmqtest.Raw {
	return rabbitmqtest.JSON(prefix+"."+suffix, id, body)
}

func (a *amqpBus) drained(t *testing.T) {
	t.Helper()
	eventually(t, "the queue to drain", func() bool { return rabbitmqtest.QueueLen(t, a.url, a.queue) == 0 })
}

// TestAMQPBrokerRestart streams job lives, with duplicates, while the broker drops the
// consumer's connection twice: every job ends FINISHED, every event applied exactly once.
func TestAMQPBrokerRestart(t *testing.T) {
	store := postgresStore(t)
	a := newAMQP(t, store)
	const jobs = 150
	ids := make([]uuid.UUID, jobs)
	for i := range ids {
		ids[i] = uuid.New()
	}
	life := func(i int) []rabbitmqtest.Raw {
		id := ids[i]
		return []rabbitmqtest.Raw{raw(fmt.Sprint("t-", i), consumer.SuffixTrigger, trigger(id)),
			raw(fmt.Sprint("s-", i), consumer.SuffixStart, start(id)), raw(fmt.Sprint("e-", i), consumer.SuffixEnd, end(id, "FINISHED"))}
	}
	for i := range jobs {
		a.send(t, life(i)...)
		if i%10 == 0 {
			a.send(t, life(i)...) // duplicates under the same message ids
		}
		if i == jobs/3 || i == 2*jobs/3 {
			if n := rabbitmqtest.CloseConnections(t, a.name); n == 0 {
				t.Log("no connection to close: the consumer was reconnecting")
			}
		}
	}
	for _, id := range ids {
		waitState(t, store, id, statemachine.Finished)
	}
	a.drained(t)
	for _, id := range ids {
		if h := history(t, store, id); len(h) != 3 {
			t.Errorf("job %s: got %d history entries, want 3", id, len(h))
		}
	}
	if r := rejected(t, store); len(r) != 0 {
		t.Errorf("got %d rejected, want none", len(r))
	}
}

// TestAMQPPoison sends garbage the way other applications might: a bad body, no message id,
// missing headers. It is rejected, listed and dead-lettered; the valid message after it applies.
func TestAMQPPoison(t *testing.T) {
	store := postgresStore(t)
	a := newAMQP(t, store)
	id := uuid.New()
	bare := rabbitmqtest.Raw{Topic: prefix + "." + consumer.SuffixStart, Publishing: amqp.Publishing{Body: []byte("\x00\xffnot json")}}
	a.send(t, bare, raw("bad-schema", consumer.SuffixEnd, `{"uuid":"`+id.String()+`","state":"DONE"}`),
		raw("ok", consumer.SuffixTrigger, trigger(id)))
	waitState(t, store, id, statemachine.Scheduled)
	eventually(t, "two rejected", func() bool { return len(rejected(t, store)) == 2 })
	byReason := map[storage.RejectReason]storage.RejectedMessage{}
	for _, r := range rejected(t, store) {
		byReason[r.Reason] = r
	}
	if r := byReason[storage.RejectSchema]; r.Field != "state" || r.MessageID != "bad-schema" {
		t.Errorf("schema: got %+v", r)
	}
	if r := byReason[storage.RejectUndecodable]; !strings.HasPrefix(r.MessageID, "sha256:") || string(r.Body) != "\x00\xffnot json" {
		t.Errorf("undecodable: got %+v", r)
	}
	a.drained(t)
	var dead []string
	eventually(t, "two dead letters", func() bool {
		if d, ok := rabbitmqtest.Get(t, a.url, a.queue+".rejected"); ok {
			dead = append(dead, d.MessageId)
		}
		return len(dead) == 2
	})
	if !slices.Contains(dead, "bad-schema") {
		t.Errorf("got dead letters %q", dead)
	}
}

type fedmsgBus struct {
	pub *fedmsg.Publisher
}

// newFedmsg binds a producer's PUB socket and starts a consumer subscribed to it.
func newFedmsg(t *testing.T, store *storage.Store) *fedmsgBus {
	pub, err := fedmsg.NewPublisher(fedmsg.PublisherConfig{Bind: "tcp://127.0.0.1:0", Username: "buildbot"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pub.Close() })
	sub, err := fedmsg.NewSubscriber(fedmsg.SubscriberConfig{Endpoints: []string{"tcp://" + pub.Addr().String()},
		Topics: consumer.Topics(prefix), Backoff: bus.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, store, statemachine.OriginFedmsg, sub, nil)
	// ZeroMQ drops what is sent before the subscriptions arrive.
	eventually(t, "the subscriptions to reach the publisher", func() bool { return len(pub.Subscriptions()) == 3 })
	return &fedmsgBus{pub: pub}
}

func (f *fedmsgBus) send(t *testing.T, msgs ...bus.Message) {
	t.Helper()
	if _, err := f.pub.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
}

func TestFedmsgJobLife(t *testing.T) {
	store := sqliteStore(t)
	f := newFedmsg(t, store)
	id := uuid.New()
	f.send(t, message("t", consumer.SuffixTrigger, trigger(id)), message("s", consumer.SuffixStart, start(id)),
		message("e", consumer.SuffixEnd, end(id, "CRASHED")), message("e", consumer.SuffixEnd, end(id, "CRASHED")))
	job := waitState(t, store, id, statemachine.Crashed)
	year := fmt.Sprint(time.Now().UTC().Year())
	if job.Source == nil || job.Source.MsgID != year+"-t" {
		t.Errorf("got source %+v, want the trigger's msg_id %s-t", job.Source, year)
	}
	eventually(t, "3 history entries", func() bool { return len(history(t, store, id)) == 3 })
	time.Sleep(100 * time.Millisecond)
	h := history(t, store, id)
	if len(h) != 3 || h[2].Origin != statemachine.OriginFedmsg || h[2].MessageID != year+"-e" {
		t.Errorf("got history %+v", h)
	}
}

// TestMixedTransports: the trigger on AMQP, the start on fedmsg, the end on AMQP.
func TestMixedTransports(t *testing.T) {
	store := postgresStore(t)
	a := newAMQP(t, store)
	f := newFedmsg(t, store)
	id := uuid.New()
	a.send(t, raw("t", consumer.SuffixTrigger, trigger(id)))
	waitState(t, store, id, statemachine.Scheduled)
	f.send(t, message("s", consumer.SuffixStart, start(id)))
	waitState(t, store, id, statemachine.Running)
	a.send(t, raw("e", consumer.SuffixEnd, end(id, "FINISHED")))
	waitState(t, store, id, statemachine.Finished)
	h := history(t, store, id)
	var origins []statemachine.Origin
	for _, e := range h {
		origins = append(origins, e.Origin)
	}
	if want := []statemachine.Origin{"amqp", "fedmsg", "amqp"}; !slices.Equal(origins, want) {
		t.Errorf("got origins %v, want %v", origins, want)
	}
	// A bad message on fedmsg is rejected like one on AMQP.
	f.send(t, bus.Message{ID: "liar", Topic: prefix + "." + consumer.SuffixStart, Body: []byte(`{}`)})
	eventually(t, "a rejection", func() bool { return len(rejected(t, store)) == 1 })
}
