package consumer_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/consumer"
	"github.com/fedora-qa/execdb/fedmsg"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
)

type amqpBus struct {
	url, exchange, queue, name string
}

// newAMQP declares a private exchange and queue, and starts a consumer on them.
func newAMQP(t *testing.T, store *jobs.Service) *amqpBus {
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

// TestAMQPBrokerRestart closes the consumer's connections, as a broker restart would, while
// deliveries are in flight: a batch's effects are committed and its acknowledgements not yet
// sent, with hundreds more deliveries prefetched behind it. The broker then delivers all of
// them again. The test asserts that this happened (a redelivery or a failed settle), that every
// acknowledgement came after its effect committed, and that each event was applied exactly once:
// every job FINISHED with exactly its three history entries and outbox messages, every
// redelivery and published duplicate recognised as a duplicate, nothing rejected. Timing can
// make a run miss the redelivery (the broker-side close lands after the consumer caught up); the
// scenario is then tried again, and the test fails if it never happened.
func TestAMQPBrokerRestart(t *testing.T) {
	const attempts = 3
	for attempt := 1; attempt <= attempts; attempt++ {
		st := brokerRestart(t)
		t.Logf("attempt %d: %d connections closed, %d deliveries (%d redelivered), %d settles failed",
			attempt, st.closed, st.received, st.redelivered, st.settleFailed)
		if t.Failed() || st.redelivered > 0 || st.settleFailed > 0 {
			return
		}
	}
	t.Fatalf("the test did not exercise a redelivery: in %d attempts no delivery came again and no settle failed after the connections were closed", attempts)
}

type restartStats struct {
	closed                              int
	received, redelivered, settleFailed int64
}

// brokerRestart runs the scenario once on its own queue and database schema and checks the
// outcome; it returns what happened on the bus.
func brokerRestart(t *testing.T) restartStats {
	store := postgresStore(t)
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-restart")
	top := rabbitmq.Topology{Exchange: name + "-x", Queue: name, Bindings: consumer.Topics(prefix)}
	rabbitmqtest.Topology(t, url, top)

	// A burst well over the prefetch window (1000), queued before the consumer starts: it
	// always has deliveries prefetched and batches being applied. One job in ten is sent
	// twice under the same message ids.
	const jobs = 1000
	ids := make([]uuid.UUID, jobs)
	jobOf := map[string]uuid.UUID{}
	var msgs []rabbitmqtest.Raw
	for i := range ids {
		id := uuid.New()
		ids[i] = id
		life := []rabbitmqtest.Raw{raw(fmt.Sprint("t-", i), consumer.SuffixTrigger, trigger(id)),
			raw(fmt.Sprint("s-", i), consumer.SuffixStart, start(id)), raw(fmt.Sprint("e-", i), consumer.SuffixEnd, end(id, "FINISHED"))}
		for _, m := range life {
			jobOf[m.MessageId] = id
		}
		msgs = append(msgs, life...)
		if i%10 == 0 {
			msgs = append(msgs, life...)
		}
	}
	rabbitmqtest.Publish(t, url, top.Exchange, msgs...)

	reg := prometheus.NewRegistry()
	metrics := consumer.NewMetrics(reg)
	w := &watched{
		Subscriber: rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: url, Topology: top, Name: name,
			Backoff: bus.Backoff{Min: 50 * time.Millisecond, Max: 500 * time.Millisecond}}),
		committed: committedProbe(store, jobOf),
		ids:       map[string]bool{},
	}
	run(t, store, statemachine.OriginAMQP, w, metrics)
	t.Cleanup(w.release) // before run's cleanup waits for the consumer

	// Three times during the stream: hold the settles back until a batch has committed and
	// waits to acknowledge, close the consumer's connections (only ExecDB's own, by name: the
	// broker is shared), let the settles go. They fail or are void: the broker requeued.
	var st restartStats
cycles:
	for k := int64(1); k <= 3; k++ {
		eventually(t, "the stream to progress", func() bool { return int64(w.distinct()) >= 3*jobs*k/5 })
		for try := 0; ; try++ {
			w.hold()
			if !within(3*time.Second, func() bool { return w.held.Load() > 0 }) {
				w.release()
				t.Logf("close %d: the consumer caught up before a settle could be held", k)
				break cycles
			}
			// The subscriber may still be on its way back from the previous close (it
			// reconnects once the consumer takes its next delivery): then let it go and
			// try again.
			n := rabbitmqtest.CloseConnections(t, name)
			w.release()
			st.closed += n
			if n > 0 || try == 20 {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	for _, id := range ids {
		waitState(t, store, id, statemachine.Finished)
	}
	// Every message id arrived, every delivery was settled and the broker holds nothing back.
	var state string
	deadline := time.Now().Add(wait)
	for {
		ready, unacked := rabbitmqtest.QueueLen(t, url, top.Queue), rabbitmqtest.Unacked(t, url, top.Queue)
		if w.distinct() == 3*jobs && w.settled.Load() == w.received.Load() && ready == 0 && unacked == 0 {
			break
		}
		state = fmt.Sprintf("%d of %d message ids received, %d of %d deliveries settled, %d ready, %d unacknowledged",
			w.distinct(), 3*jobs, w.settled.Load(), w.received.Load(), ready, unacked)
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for every delivery to be received and settled: %s", state)
		}
		time.Sleep(50 * time.Millisecond)
	}
	st.received, st.redelivered, st.settleFailed = w.received.Load(), w.redelivered.Load(), w.settleFailed.Load()

	for _, v := range w.report() {
		t.Error(v)
	}
	outbox, err := backend(store).Outbox(context.Background(), 0, 10*jobs)
	if err != nil {
		t.Fatal(err)
	}
	perJob := map[uuid.UUID]int{}
	for _, m := range outbox {
		perJob[m.JobUUID]++
	}
	bad := 0
	for i, id := range ids {
		h := history(t, store, id)
		var got []string
		for _, e := range h {
			got = append(got, fmt.Sprintf("%s %s %s->%s %s", e.Kind, e.MessageID, e.StateFrom, e.StateTo, e.Verdict))
		}
		want := []string{fmt.Sprintf("create t-%d ->SCHEDULED applied", i), fmt.Sprintf("start s-%d SCHEDULED->RUNNING applied", i),
			fmt.Sprintf("end e-%d RUNNING->FINISHED applied", i)}
		if !slices.Equal(got, want) || perJob[id] != 3 {
			if bad++; bad <= 10 {
				t.Errorf("job %d %s: got history %q and %d outbox messages, want %q and 3", i, id, got, perJob[id], want)
			}
		}
	}
	if bad > 10 {
		t.Errorf("... and %d more jobs", bad-10)
	}
	if len(outbox) != 3*jobs {
		t.Errorf("got %d outbox messages, want %d", len(outbox), 3*jobs)
	}
	if r := rejected(t, store); len(r) != 0 {
		t.Errorf("got %d rejected, want none; the first: %+v", len(r), r[0])
	}
	if n := rabbitmqtest.QueueLen(t, url, top.Queue+".rejected"); n != 0 {
		t.Errorf("got %d dead letters, want none", n)
	}
	// Each event applied exactly once; every other delivery, published duplicate or
	// redelivery, recognised as a duplicate.
	received := sumCounter(t, reg, "execdb_bus_received_total", nil)
	applied := sumCounter(t, reg, "execdb_bus_messages_total", map[string]string{"outcome": "applied"})
	duplicate := sumCounter(t, reg, "execdb_bus_messages_total", map[string]string{"outcome": "duplicate"})
	if received != float64(st.received) || applied != 3*jobs || duplicate != received-applied {
		t.Errorf("metrics: %v received, %v applied, %v duplicate; want %d received, %d applied, %v duplicate",
			received, applied, duplicate, st.received, 3*jobs, float64(st.received)-3*jobs)
	}
	return st
}

// watched is the consumer's subscriber with the test's hands on it: it counts deliveries,
// redeliveries and failed settles, can hold settles back (widening the window between a
// batch's commit and its acknowledgements, which a connection close must fall into), and checks
// that the effect of every acknowledged delivery was committed before the acknowledgement.
type watched struct {
	bus.Subscriber
	committed func(messageID string) (bool, error)

	received, redelivered, settled, settleFailed, held atomic.Int64

	mu         sync.Mutex
	gate       chan struct{} // settles wait while it is open
	ids        map[string]bool
	violations []string
}

func (w *watched) Receive(ctx context.Context) (bus.Delivery, error) {
	d, err := w.Subscriber.Receive(ctx)
	if err != nil {
		return d, err
	}
	w.received.Add(1)
	w.mu.Lock()
	w.ids[d.ID] = true
	w.mu.Unlock()
	if d.Redelivered {
		w.redelivered.Add(1)
	}
	d.Acker = watchedAcker{w: w, id: d.ID, a: d.Acker}
	return d, nil
}

// distinct is how many message ids were received.
func (w *watched) distinct() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.ids)
}

func (w *watched) hold() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.held.Store(0)
	if w.gate == nil {
		w.gate = make(chan struct{})
	}
}

func (w *watched) release() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.gate != nil {
		close(w.gate)
		w.gate = nil
	}
}

func (w *watched) violation(format string, args ...any) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.violations = append(w.violations, fmt.Sprintf(format, args...))
}

// report returns up to 10 violations.
func (w *watched) report() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.violations) > 10 {
		return append(slices.Clone(w.violations[:10]), fmt.Sprintf("... and %d more", len(w.violations)-10))
	}
	return slices.Clone(w.violations)
}

func (w *watched) settle(id, what string, send func() error) error {
	w.mu.Lock()
	gate := w.gate
	w.mu.Unlock()
	if gate != nil {
		w.held.Add(1)
		<-gate
	}
	switch what {
	case "ack":
		if ok, err := w.committed(id); err != nil {
			w.violation("message %s: checking its effect before the ack: %v", id, err)
		} else if !ok {
			w.violation("message %s acknowledged before its effect committed", id)
		}
	case "reject":
		w.violation("message %s rejected", id)
	}
	err := send()
	if err != nil {
		w.settleFailed.Add(1)
	}
	w.settled.Add(1)
	return err
}

type watchedAcker struct {
	w  *watched
	id string
	a  bus.Acknowledger
}

func (a watchedAcker) Ack() error { return a.w.settle(a.id, "ack", a.a.Ack) }

func (a watchedAcker) Requeue() error {
	return a.w.settle(a.id, "hand back", a.a.Requeue)
}

func (a watchedAcker) Reject(why map[string]string) error {
	return a.w.settle(a.id, "reject", func() error { return a.a.Reject(why) })
}

// committedProbe reports whether a message's effect is committed: whether its job's history
// names it. What it has seen committed it remembers.
func committedProbe(store *jobs.Service, jobOf map[string]uuid.UUID) func(string) (bool, error) {
	var mu sync.Mutex
	seen := map[string]bool{}
	return func(id string) (bool, error) {
		mu.Lock()
		ok := seen[id]
		mu.Unlock()
		if ok {
			return true, nil
		}
		job, known := jobOf[id]
		if !known {
			return false, fmt.Errorf("a message the test did not send")
		}
		h, err := backend(store).History(context.Background(), job) // empty while the job does not exist
		if err != nil {
			return false, err
		}
		mu.Lock()
		defer mu.Unlock()
		for _, e := range h {
			seen[e.MessageID] = true
		}
		return seen[id], nil
	}
}

// within polls cond until it holds or d has passed, and says whether it held.
func within(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// sumCounter adds up the counters of a family whose labels include labels.
func sumCounter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for k, v := range labels {
				found := false
				for _, lp := range m.GetLabel() {
					if lp.GetName() == k && lp.GetValue() == v {
						found = true
					}
				}
				if !found {
					continue metrics
				}
			}
			sum += m.GetCounter().GetValue()
		}
	}
	return sum
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
func newFedmsg(t *testing.T, store *jobs.Service) *fedmsgBus {
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
