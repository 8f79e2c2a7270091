package publisher_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/bus/memory"
	"github.com/fedora-qa/execdb/fedmsg"
	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/publisher"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	amqp "github.com/rabbitmq/amqp091-go"
)

const prefix = "org.example"

const wait = 60 * time.Second

// testStore is the job service over a backend, and the backend, whose outbox the relay reads.
type testStore struct {
	*jobs.Service
	backend storage.Backend
}

func (s testStore) Backend() storage.Backend { return s.backend }

func sqliteStore(t *testing.T) testStore {
	b := testenv.SQLite(t, "")
	return testStore{jobs.New(b, jobs.Config{TopicPrefix: prefix}), b}
}

// postgresURL is a fresh schema; several stores may open it, as several serve processes would.
func postgresURL(t testing.TB) string {
	t.Helper()
	url := testenv.PostgresSchema(t)
	postgresStore(t, url)
	return url
}

func postgresStore(t testing.TB, url string) testStore {
	b := testenv.Postgres(t, url)
	return testStore{jobs.New(b, jobs.Config{TopicPrefix: prefix}), b}
}

// startRelay runs a relay until the test ends (or stop is called).
func startRelay(t *testing.T, cfg publisher.Config) (r *publisher.Relay, stop func()) {
	t.Helper()
	if cfg.Backoff.Min == 0 {
		cfg.Backoff = bus.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}
	}
	if cfg.Poll == 0 {
		cfg.Poll = 50 * time.Millisecond
	}
	r = publisher.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			t.Errorf("relay: %v", err)
		}
	}()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	t.Cleanup(stop)
	return r, stop
}

func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func meta() statemachine.Meta {
	return statemachine.Meta{Origin: statemachine.OriginHTTP, MessageID: uuid.NewString()}
}

// life runs a job through its life in the store: SCHEDULED, RUNNING, then the end.
func life(t *testing.T, s testStore, end statemachine.End) uuid.UUID {
	t.Helper()
	ctx := context.Background()
	res, err := s.Create(ctx, statemachine.NewJob{TaskName: "rpmlint", Item: "foo-1-1", ItemType: "koji_build"}, meta())
	if err != nil {
		t.Fatal(err)
	}
	id := res.Job.UUID
	if _, err := s.Apply(ctx, id, statemachine.Event{Meta: meta(), Start: &statemachine.Start{}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Apply(ctx, id, statemachine.Event{Meta: meta(), End: &end}); err != nil {
		t.Fatal(err)
	}
	return id
}

func crashed(notify statemachine.Notify, cause statemachine.Cause) statemachine.End {
	return statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: notify, Cause: cause}}
}

func backlog(t testing.TB, b storage.Backend) int64 {
	t.Helper()
	st, err := b.OutboxStats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st.Backlog
}

func TestRelayToMemory(t *testing.T) {
	store := sqliteStore(t)
	broker := memory.NewBroker()
	broker.Declare("watch", prefix+".execdb.job.")
	reg := prometheus.NewRegistry()
	metrics := publisher.NewMetrics(reg, store.Backend())
	id := life(t, store, statemachine.End{State: statemachine.Finished})
	startRelay(t, publisher.Config{Outbox: store.Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: broker.Publisher()}}, Metrics: metrics})
	sub := broker.Subscribe("watch")
	defer sub.Close()
	var topics []string
	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		d, err := sub.Receive(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(d.Body), id.String()) {
			t.Errorf("got body %s, want job %s", d.Body, id)
		}
		topics = append(topics, d.Topic)
		d.Ack()
	}
	if want := []string{prefix + ".execdb.job.scheduled", prefix + ".execdb.job.running", prefix + ".execdb.job.finished"}; !slices.Equal(topics, want) {
		t.Errorf("got %v, want %v", topics, want)
	}
	eventually(t, "the outbox marked", func() bool { return backlog(t, store.Backend()) == 0 })
	mfs, _ := reg.Gather()
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	for _, want := range []string{"execdb_outbox_backlog", "execdb_outbox_oldest_age_seconds", "execdb_published_total", "execdb_relay_active"} {
		if !slices.Contains(names, want) {
			t.Errorf("metric %s missing (have %v)", want, names)
		}
	}
}

// A process without a bus leaves the outbox to one that has, dropping only what nobody
// published within the retention.
func TestExpireDropsOnlyOldMessages(t *testing.T) {
	store := sqliteStore(t)
	life(t, store, statemachine.End{State: statemachine.Finished}) // three messages, created now
	cfg := publisher.ExpireConfig{Outbox: store.Backend(), Retention: time.Hour}
	if n, err := publisher.ExpireOnce(context.Background(), cfg); err != nil || n != 0 {
		t.Fatalf("got %d dropped (%v), want none of the fresh messages", n, err)
	}
	if got := backlog(t, store.Backend()); got != 3 {
		t.Fatalf("got backlog %d, want 3", got)
	}
	cfg.Now = func() time.Time { return time.Now().Add(2 * time.Hour) }
	if n, err := publisher.ExpireOnce(context.Background(), cfg); err != nil || n != 3 {
		t.Fatalf("got %d dropped (%v), want the 3 messages past the retention", n, err)
	}
	if got := backlog(t, store.Backend()); got != 0 {
		t.Errorf("got backlog %d, want 0", got)
	}
	if err := publisher.New(publisher.Config{Outbox: store.Backend()}).Run(context.Background()); err == nil {
		t.Error("a relay without a bus ran")
	}
}

// amqpWatch binds a queue to the exchange with #.execdb.job.# the way a subscriber would.
type amqpWatch struct {
	url, exchange, queue string
}

func newWatch(t testing.TB) *amqpWatch {
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-relay")
	rabbitmqtest.Watch(t, url, name+"-x", name, "#.execdb.job.#")
	return &amqpWatch{url: url, exchange: name + "-x", queue: name}
}

func (w *amqpWatch) next(t *testing.T) amqp.Delivery {
	t.Helper()
	var d amqp.Delivery
	eventually(t, "a message on "+w.queue, func() bool {
		var ok bool
		d, ok = rabbitmqtest.Get(t, w.url, w.queue)
		return ok
	})
	return d
}

func (w *amqpWatch) publisher(name string) *rabbitmq.Publisher {
	return rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: w.url, Exchange: w.exchange, Name: name})
}

// TestRelayToRabbitMQ: a bound queue gets scheduled, running and crashed.task.<cause> in order,
// with the fedora-messaging properties and the execdb headers; the broker drops the connection
// in between and nothing is lost.
func TestRelayToRabbitMQ(t *testing.T) {
	store := postgresStore(t, postgresURL(t))
	w := newWatch(t)
	name := rabbitmqtest.Name("execdb-test-relay-pub")
	pub := w.publisher(name)
	defer pub.Close()
	r, _ := startRelay(t, publisher.Config{Outbox: store.Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: pub}}})
	crash := life(t, store, crashed(statemachine.NotifyTask, statemachine.CauseNetwork))
	outbox := map[string]string{} // topic → message id as written in the outbox
	want := []struct {
		topic, state, severity string
	}{
		{"scheduled", "SCHEDULED", "20"}, {"running", "RUNNING", "20"}, {"crashed.task.network", "CRASHED", "30"},
	}
	for _, w2 := range want {
		d := w.next(t)
		if d.RoutingKey != prefix+".execdb.job."+w2.topic {
			t.Fatalf("got %s, want %s", rabbitmqtest.String(d), w2.topic)
		}
		outbox[w2.topic] = d.MessageId
		if d.ContentType != "application/json" || d.ContentEncoding != "utf-8" || d.DeliveryMode != amqp.Persistent || uuid.Validate(d.MessageId) != nil {
			t.Errorf("%s: got properties type=%s encoding=%s mode=%d id=%s", w2.topic, d.ContentType, d.ContentEncoding, d.DeliveryMode, d.MessageId)
		}
		h := d.Headers
		if h["fedora_messaging_schema"] != "execdb.job.v1" || fmt.Sprint(h["fedora_messaging_severity"]) != w2.severity || h["execdb_state"] != w2.state {
			t.Errorf("%s: got headers %v", w2.topic, h)
		}
		if sent, _ := h["sent-at"].(string); len(sent) != len("2026-11-02T10:00:00+00:00") || !strings.HasSuffix(sent, "+00:00") {
			t.Errorf("%s: got sent-at %q", w2.topic, h["sent-at"])
		}
		if !strings.Contains(string(d.Body), crash.String()) || !strings.Contains(string(d.Body), `"previous_state"`) {
			t.Errorf("%s: got body %s", w2.topic, d.Body)
		}
	}
	// The broker drops the publisher's connection; the next job still goes out, in order.
	rabbitmqtest.CloseConnections(t, name)
	finished := life(t, store, statemachine.End{State: statemachine.Finished})
	for _, topic := range []string{"scheduled", "running", "finished"} {
		d := w.next(t)
		if d.RoutingKey != prefix+".execdb.job."+topic || !strings.Contains(string(d.Body), finished.String()) {
			t.Fatalf("got %s, want %s of %s", rabbitmqtest.String(d), topic, finished)
		}
		if d.Headers["execdb_notify"] != nil {
			t.Errorf("a %s message carries crash headers: %v", topic, d.Headers)
		}
	}
	eventually(t, "the outbox marked", func() bool { return backlog(t, store.Backend()) == 0 })
	if err := r.Ready(context.Background()); err != nil {
		t.Errorf("ready: %v", err)
	}
}

func TestCrashHeaders(t *testing.T) {
	store := sqliteStore(t)
	w := newWatch(t)
	pub := w.publisher("execdb test")
	defer pub.Close()
	life(t, store, statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: statemachine.NotifyTaskotron,
		Cause: statemachine.CauseMinion, Fatal: true}})
	startRelay(t, publisher.Config{Outbox: store.Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: pub}}})
	w.next(t)
	w.next(t)
	d := w.next(t)
	h := d.Headers
	// fedora-messaging's types: the severity an integer, the package filter a boolean.
	if d.RoutingKey != prefix+".execdb.job.crashed.taskotron.minion" || h["execdb_notify"] != "taskotron" || h["execdb_cause"] != "minion" ||
		h["execdb_fatal"] != true || h["fedora_messaging_severity"] != int32(30) || h["fedora_messaging_rpm_foo"] != true ||
		h["fedora_messaging_schema_package"] != "execdb-messages" {
		t.Errorf("got %s", rabbitmqtest.String(d))
	}
}

// TestBrokerDown: while the broker cannot be reached the messages wait in the outbox and the
// relay says it is degraded; once it can, they go out in order.
func TestBrokerDown(t *testing.T) {
	store := postgresStore(t, postgresURL(t))
	w := newWatch(t)
	down := rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: "amqp://guest:guest@127.0.0.1:1/", Exchange: w.exchange})
	defer down.Close()
	r, stop := startRelay(t, publisher.Config{Outbox: store.Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: down}}})
	id := life(t, store, statemachine.End{State: statemachine.Finished})
	eventually(t, "the relay to report degraded", func() bool {
		err := r.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "3 messages waiting")
	})
	stop()
	if n := backlog(t, store.Backend()); n != 3 {
		t.Fatalf("got backlog %d, want 3", n)
	}
	up := w.publisher("execdb test")
	defer up.Close()
	startRelay(t, publisher.Config{Outbox: store.Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: up}}})
	for _, topic := range []string{"scheduled", "running", "finished"} {
		if d := w.next(t); d.RoutingKey != prefix+".execdb.job."+topic || !strings.Contains(string(d.Body), id.String()) {
			t.Fatalf("got %s, want %s", rabbitmqtest.String(d), topic)
		}
	}
}

// forgetful is a backend whose relay dies between publishing and marking.
type forgetful struct{ storage.Backend }

func (forgetful) DeletePublished(ctx context.Context, ids []int64) error {
	return errors.New("killed before marking")
}

// TestCrashBetweenPublishAndMark: the message comes again, with the same id.
func TestCrashBetweenPublishAndMark(t *testing.T) {
	store := sqliteStore(t)
	w := newWatch(t)
	ctx := context.Background()
	if _, err := store.Create(ctx, statemachine.NewJob{TaskName: "t", Item: "i", ItemType: "x"}, meta()); err != nil {
		t.Fatal(err)
	}
	pub1 := w.publisher("execdb test 1")
	_, stop := startRelay(t, publisher.Config{Outbox: forgetful{store.Backend()}, Sinks: []publisher.Sink{{Name: "amqp", Publisher: pub1}}})
	first := w.next(t)
	stop()
	pub1.Close()
	for { // the killed relay may have sent it more than once
		if _, ok := rabbitmqtest.Get(t, w.url, w.queue); !ok {
			break
		}
	}
	pub2 := w.publisher("execdb test 2")
	defer pub2.Close()
	startRelay(t, publisher.Config{Outbox: store.Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: pub2}}})
	again := w.next(t)
	if again.MessageId != first.MessageId || string(again.Body) != string(first.Body) || again.RoutingKey != first.RoutingKey {
		t.Errorf("got %s, want the same message as %s", rabbitmqtest.String(again), rabbitmqtest.String(first))
	}
	eventually(t, "the outbox marked", func() bool { return backlog(t, store.Backend()) == 0 })
}

// TestFedmsgCrashSubscription: a subscriber with the prefix …execdb.job.crashed.task. gets task
// crashes and no taskotron ones.
func TestFedmsgCrashSubscription(t *testing.T) {
	store := sqliteStore(t)
	pub, err := fedmsg.NewPublisher(fedmsg.PublisherConfig{Bind: "tcp://127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sub, err := fedmsg.NewSubscriber(fedmsg.SubscriberConfig{Endpoints: []string{"tcp://" + pub.Addr().String()},
		Topics: []string{prefix + ".execdb.job.crashed.task."}})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	eventually(t, "the subscription", func() bool { return len(pub.Subscriptions()) == 1 })
	startRelay(t, publisher.Config{Outbox: store.Backend(), Sinks: []publisher.Sink{{Name: "fedmsg", Publisher: pub}}})
	life(t, store, crashed(statemachine.NotifyTaskotron, statemachine.CauseTask))
	task := life(t, store, crashed(statemachine.NotifyTask, statemachine.CauseTask))
	life(t, store, statemachine.End{State: statemachine.Finished})
	task2 := life(t, store, crashed(statemachine.NotifyTask, statemachine.CauseLibtaskotron))
	for _, want := range []struct {
		id    uuid.UUID
		topic string
	}{{task, "crashed.task.task"}, {task2, "crashed.task.libtaskotron"}} {
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		d, err := sub.Receive(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if d.Topic != prefix+".execdb.job."+want.topic || !strings.Contains(string(d.Body), want.id.String()) || d.Malformed != nil {
			t.Errorf("got %s %s, want %s of %s", d.Topic, d.Body, want.topic, want.id)
		}
		if !strings.HasPrefix(d.ID, fmt.Sprint(time.Now().UTC().Year(), "-")) {
			t.Errorf("got msg_id %q, want <year>-<uuid>", d.ID)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if d, err := sub.Receive(ctx); err == nil {
		t.Errorf("got %s, want nothing more", d.Topic)
	}
}

// TestTwoRelaysKeepOrder runs two relays on one PostgreSQL database, as two serve processes
// would: one relays at a time, and every job's messages arrive in order, none lost.
func TestTwoRelaysKeepOrder(t *testing.T) {
	url := postgresURL(t)
	w := newWatch(t)
	var stores []testStore
	for i := range 2 {
		s := postgresStore(t, url)
		stores = append(stores, s)
		pub := w.publisher(fmt.Sprint("execdb test relay ", i))
		defer pub.Close()
		startRelay(t, publisher.Config{Outbox: s.Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: pub}}, BatchSize: 7})
	}
	const n = 40
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			life(t, stores[i%2], statemachine.End{State: statemachine.Finished})
		}()
	}
	wg.Wait()
	seen := map[string][]string{}
	ids := map[string]bool{}
	for range 3 * n {
		d := w.next(t)
		var job string
		if i := strings.Index(string(d.Body), `"uuid":"`); i >= 0 {
			job = string(d.Body[i+8 : i+44])
		}
		if ids[d.MessageId] {
			t.Errorf("message %s twice", d.MessageId)
		}
		ids[d.MessageId] = true
		seen[job] = append(seen[job], strings.TrimPrefix(d.RoutingKey, prefix+".execdb.job."))
	}
	if len(seen) != n {
		t.Errorf("got messages about %d jobs, want %d", len(seen), n)
	}
	for job, topics := range seen {
		if !slices.Equal(topics, []string{"scheduled", "running", "finished"}) {
			t.Errorf("job %s: got %v", job, topics)
		}
	}
}

// TestExpireLeavesTheOutboxToALeadingRelay: on a shared PostgreSQL database a process without
// a bus drops nothing while another process relays, even one that waits for its broker; once
// no process relays, it drops what is past the retention.
func TestExpireLeavesTheOutboxToALeadingRelay(t *testing.T) {
	url := postgresURL(t)
	store := postgresStore(t, url)
	down := rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: "amqp://guest:guest@127.0.0.1:1/", Exchange: "amq.topic"})
	defer down.Close()
	r, stopRelay := startRelay(t, publisher.Config{Outbox: store.Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: down}}})
	life(t, store, statemachine.End{State: statemachine.Finished})
	eventually(t, "the relay to lead and report degraded", func() bool { return r.Ready(context.Background()) != nil })

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		publisher.Expire(ctx, publisher.ExpireConfig{Outbox: postgresStore(t, url).Backend(), Retention: time.Nanosecond})
	}()
	defer func() { cancel(); <-done }()
	time.Sleep(3 * time.Second) // Expire tries for the lead every 2 s; it must not get it
	if n := backlog(t, store.Backend()); n != 3 {
		t.Fatalf("got backlog %d while a relay leads, want 3", n)
	}
	stopRelay()
	eventually(t, "the messages past the retention dropped once nobody relays", func() bool { return backlog(t, store.Backend()) == 0 })
}

// TestLeaderThatCannotPublishStepsDown: a leading relay whose broker is unreachable gives the
// lead up, and a process that reaches its broker relays instead.
func TestLeaderThatCannotPublishStepsDown(t *testing.T) {
	url := postgresURL(t)
	store := postgresStore(t, url)
	down := rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: "amqp://guest:guest@127.0.0.1:1/", Exchange: "amq.topic"})
	defer down.Close()
	a, _ := startRelay(t, publisher.Config{Outbox: store.Backend(), StepDownAfter: time.Second,
		Sinks: []publisher.Sink{{Name: "amqp", Publisher: down}}})
	life(t, store, statemachine.End{State: statemachine.Finished})
	eventually(t, "relay A to lead and fail", func() bool { return a.Ready(context.Background()) != nil })

	broker := memory.NewBroker()
	broker.Declare("watch", prefix+".execdb.job.")
	startRelay(t, publisher.Config{Outbox: postgresStore(t, url).Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: broker.Publisher()}}})
	eventually(t, "relay B to take over and publish all three", func() bool { return backlog(t, store.Backend()) == 0 })
	if n := broker.Len("watch"); n != 3 {
		t.Errorf("got %d messages through relay B, want 3", n)
	}
}
