package consumer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/bus/memory"
	"github.com/fedora-qa/execdb/consumer"
	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
)

const prefix = "org.example"

// wait bounds eventual delivery; generous, the tests do not measure speed.
const wait = 60 * time.Second

func sqliteStore(t *testing.T) *jobs.Service { return newStore(testenv.SQLite(t, "")) }

func postgresStore(t *testing.T) *jobs.Service { return newStore(testenv.Postgres(t, "")) }

// backendOf holds the backend under each store the tests make, for reading what the service
// does not show (the outbox).
var backendOf sync.Map // *jobs.Service → storage.Backend

func newStore(b storage.Backend) *jobs.Service {
	s := jobs.New(b, jobs.Config{TopicPrefix: prefix})
	backendOf.Store(s, b)
	return s
}

func backend(s *jobs.Service) storage.Backend {
	b, _ := backendOf.Load(s)
	return b.(storage.Backend)
}

// run starts a consumer on sub and stops it when the test ends.
func run(t *testing.T, store *jobs.Service, origin statemachine.Origin, sub bus.Subscriber, m *consumer.Metrics) {
	t.Helper()
	c := consumer.New(consumer.Config{Store: store, Origin: origin, Prefix: prefix, Metrics: m,
		Backoff: bus.Backoff{Min: 10 * time.Millisecond, Max: 100 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx, sub) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("consumer: %v", err)
		}
		sub.Close()
	})
}

// eventually polls cond until it holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitState(t *testing.T, s *jobs.Service, id uuid.UUID, state statemachine.State) statemachine.Job {
	t.Helper()
	var job statemachine.Job
	eventually(t, fmt.Sprintf("job %s to be %s", id, state), func() bool {
		var err error
		job, err = s.Job(context.Background(), id)
		return err == nil && job.State == state
	})
	return job
}

func trigger(id uuid.UUID) string {
	return fmt.Sprintf(`{"taskname":"rpmlint","item":"foo-1.0-1.fc45","item_type":"koji_build","uuid":%q,"data":{"koji_tag":"f45"},"future_field":1}`, id)
}

func start(id uuid.UUID) string {
	return fmt.Sprintf(`{"uuid":%q,"runner":{"name":"buildbot","jobid":"all/1","worker":"w1","url":"http://bb/1"}}`, id)
}

func end(id uuid.UUID, state string) string {
	if state == "CRASHED" {
		return fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"notify":"task","cause":"task","keyvals":{"step":"RUN"}}}`, id)
	}
	return fmt.Sprintf(`{"uuid":%q,"state":%q,"log_url":"http://logs/1"}`, id, state)
}

func message(id, suffix, body string) bus.Message {
	return bus.Message{ID: id, Topic: prefix + "." + suffix, Body: []byte(body), Time: time.Now()}
}

type memoryBus struct {
	broker *memory.Broker
	pub    bus.Publisher
}

func newMemory(t *testing.T, store *jobs.Service, m *consumer.Metrics) *memoryBus {
	b := memory.NewBroker()
	b.Declare("execdb", consumer.Topics(prefix)...)
	b.Declare("other", "org.example.elsewhere")
	run(t, store, statemachine.OriginAMQP, b.Subscribe("execdb"), m)
	return &memoryBus{broker: b, pub: b.Publisher()}
}

func (mb *memoryBus) send(t *testing.T, msgs ...bus.Message) {
	t.Helper()
	if _, err := mb.pub.Publish(context.Background(), msgs); err != nil {
		t.Fatal(err)
	}
}

func history(t *testing.T, s *jobs.Service, id uuid.UUID) []storage.HistoryEntry {
	t.Helper()
	h, err := s.History(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func rejected(t *testing.T, s *jobs.Service) []storage.RejectedMessage {
	t.Helper()
	r, err := s.Rejected(context.Background(), storage.RejectedQuery{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestJobLife(t *testing.T) {
	store := sqliteStore(t)
	reg := prometheus.NewRegistry()
	metrics := consumer.NewMetrics(reg)
	mb := newMemory(t, store, metrics)
	id := uuid.New()
	mb.send(t, message("m-trigger", consumer.SuffixTrigger, trigger(id)), message("m-start", consumer.SuffixStart, start(id)),
		message("m-end", consumer.SuffixEnd, end(id, "CRASHED")))
	job := waitState(t, store, id, statemachine.Crashed)
	if job.Source == nil || job.Source.MsgID != "m-trigger" || job.Source.Topic != prefix+"."+consumer.SuffixTrigger || job.RequestID != "m-trigger" {
		t.Errorf("got source %+v request_id %q, want the trigger message itself", job.Source, job.RequestID)
	}
	if job.Runner == nil || job.Crash == nil || job.Crash.KeyVals["step"][0] != "RUN" || job.Data["koji_tag"][0] != "f45" {
		t.Errorf("got job %+v", job)
	}
	h := history(t, store, id)
	if len(h) != 3 || h[1].Origin != statemachine.OriginAMQP || h[1].MessageID != "m-start" {
		t.Errorf("got history %+v", h)
	}
	msgs, _ := backend(store).Outbox(context.Background(), 0, 10)
	var topics []string
	for _, m := range msgs {
		topics = append(topics, m.Topic)
	}
	if want := []string{"org.example.execdb.job.scheduled", "org.example.execdb.job.running", "org.example.execdb.job.crashed.task.task"}; !slices.Equal(topics, want) {
		t.Errorf("got outbox %v, want %v", topics, want)
	}
	eventually(t, "the queue to drain", func() bool { return mb.broker.Len("execdb") == 0 })
	eventually(t, "metrics", func() bool {
		return counter(t, reg, "execdb_bus_messages_total", map[string]string{"transport": "amqp", "kind": "end", "outcome": "applied"}) == 1
	})
}

// counter reads one labelled counter from the registry; 0 when it does not exist.
func counter(t *testing.T, reg *prometheus.Registry, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue metrics
				}
			}
			return m.GetCounter().GetValue()
		}
	}
	return 0
}

func TestDuplicatesAndRedelivery(t *testing.T) {
	store := sqliteStore(t)
	mb := newMemory(t, store, nil)
	id := uuid.New()
	mb.send(t, message("t", consumer.SuffixTrigger, trigger(id)), message("t", consumer.SuffixTrigger, trigger(id)),
		message("s", consumer.SuffixStart, start(id)), message("s", consumer.SuffixStart, start(id)))
	waitState(t, store, id, statemachine.Running)
	// A trigger repeated under another message id with the same request id is a duplicate.
	body := strings.Replace(trigger(id), `"uuid"`, `"request_id":"r1","uuid"`, 1)
	mb.send(t, message("e", consumer.SuffixEnd, end(id, "FINISHED")), message("e", consumer.SuffixEnd, end(id, "FINISHED")))
	waitState(t, store, id, statemachine.Finished)
	eventually(t, "the queue to drain", func() bool { return mb.broker.Len("execdb") == 0 })
	if h := history(t, store, id); len(h) != 3 {
		t.Errorf("got %d history entries, want 3: a redelivered message has no second effect", len(h))
	}
	other := uuid.New()
	mb.send(t, message("x1", consumer.SuffixTrigger, strings.Replace(body, id.String(), other.String(), 1)),
		message("x2", consumer.SuffixTrigger, strings.Replace(body, id.String(), other.String(), 1)))
	waitState(t, store, other, statemachine.Scheduled)
	eventually(t, "both triggers recorded", func() bool { return len(history(t, store, other)) == 2 })
	if h := history(t, store, other); h[1].Verdict != statemachine.Duplicate {
		t.Errorf("got %+v, want the second trigger a duplicate", h[1])
	}
	if n := len(mb.broker.DeadLetters("execdb")); n != 0 {
		t.Errorf("got %d dead letters, want 0", n)
	}
}

func TestEndBeforeStartBeforeTrigger(t *testing.T) {
	store := sqliteStore(t)
	mb := newMemory(t, store, nil)
	id := uuid.New()
	mb.send(t, message("e", consumer.SuffixEnd, end(id, "FINISHED")))
	mb.send(t, message("s", consumer.SuffixStart, start(id)))
	eventually(t, "both parked", func() bool { return mb.broker.Len("execdb") == 0 })
	mb.send(t, message("t", consumer.SuffixTrigger, trigger(id)))
	job := waitState(t, store, id, statemachine.Finished)
	if job.Runner == nil || job.LogURL != "http://logs/1" || job.StartedAt == nil {
		t.Errorf("got %+v, want the start's runner and time and the end's log url", job)
	}
	// Events that waited for their job are applied in lifecycle order: start, then end.
	h := history(t, store, id)
	if len(h) != 3 || h[1].MessageID != "s" || h[1].Verdict != statemachine.Applied || h[2].MessageID != "e" || h[2].Verdict != statemachine.Applied {
		t.Errorf("got history %+v, want create, start applied, end applied", h)
	}
	if r := rejected(t, store); len(r) != 0 {
		t.Errorf("got rejected %+v, want none", r)
	}
}

// TestPoisonMessages sends every kind of bad message, each followed by a valid one: each bad
// one is rejected with its reason and dead-lettered, every valid one applied.
func TestPoisonMessages(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var store *jobs.Service
			if backend == "sqlite" {
				store = sqliteStore(t)
			} else {
				store = postgresStore(t)
			}
			testPoison(t, store)
		})
	}
}

func testPoison(t *testing.T, store *jobs.Service) {
	mb := newMemory(t, store, nil)
	done := uuid.New()
	mb.send(t, message("setup", consumer.SuffixTrigger, trigger(done)), message("setup-end", consumer.SuffixEnd, end(done, "FINISHED")))
	waitState(t, store, done, statemachine.Finished)
	poison := []struct {
		msg    bus.Message
		reason storage.RejectReason
		field  string
	}{
		{message("p-json", consumer.SuffixStart, `{"uuid": nope`), storage.RejectUndecodable, ""},
		{message("p-array", consumer.SuffixStart, `["uuid"]`), storage.RejectUndecodable, ""},
		{message("p-empty", consumer.SuffixEnd, ``), storage.RejectUndecodable, ""},
		{message("p-huge", consumer.SuffixEnd, `{"uuid":"`+strings.Repeat("x", consumer.MaxBodyBytes)+`"}`), storage.RejectSchema, ""},
		{message("p-schema", consumer.SuffixEnd, fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"cause":"gremlins"}}`, uuid.New())), storage.RejectSchema, "crash.cause"},
		{message("p-missing", consumer.SuffixTrigger, `{"taskname":"x","item":"y"}`), storage.RejectSchema, "item_type"},
		{message("p-keyval", consumer.SuffixTrigger, `{"taskname":"x","item":"y","item_type":"z","data":{"k":"`+strings.Repeat("v", 2000)+`"}}`), storage.RejectSchema, "data.k"},
		{message("p-nouuid", consumer.SuffixStart, `{"started_at":"2026-01-01T00:00:00Z"}`), storage.RejectSchema, "uuid"},
		{bus.Message{ID: "p-topic", Topic: prefix + ".taskotron.runtask.endless", Body: []byte(`{}`)}, storage.RejectUnknownTopic, ""},
		{message("p-conflict", consumer.SuffixEnd, end(done, "CRASHED")), storage.RejectConflict, ""},
		// The text rule (CONTRACT section 1, v1.1), the same on every backend: refused, never
		// stored or mangled.
		{message("p-nul", consumer.SuffixTrigger, strings.Replace(trigger(uuid.New()), "rpmlint", `rpm\u0000lint`, 1)), storage.RejectSchema, "taskname"},
		{message("p-utf8", consumer.SuffixTrigger, strings.Replace(trigger(uuid.New()), "rpmlint", "rpm\xfflint", 1)), storage.RejectSchema, "taskname"},
		{message("p-surrogate", consumer.SuffixEnd, fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"keyvals":{"step":"\udc00"}}}`, done)), storage.RejectSchema, "crash.keyvals.step"},
		{message("p-dupkey", consumer.SuffixTrigger, `{"taskname":"x","item":"y","item_type":"z","item":"w"}`), storage.RejectSchema, "item"},
		{message("p-badkey", consumer.SuffixEnd, fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"keyvals":{"bad key":"v"}}}`, done)), storage.RejectSchema, "crash.keyvals.bad key"},
	}
	for i, p := range poison {
		valid := uuid.New()
		mb.send(t, p.msg, message(fmt.Sprint("valid-", i), consumer.SuffixTrigger, trigger(valid)))
		waitState(t, store, valid, statemachine.Scheduled)
	}
	// A start after the end is no poison: recorded in the job's history as late, acknowledged.
	mb.send(t, message("late", consumer.SuffixStart, start(done)))
	got := map[string]storage.RejectedMessage{}
	eventually(t, "every poison message rejected", func() bool {
		for _, r := range rejected(t, store) {
			got[r.MessageID] = r
		}
		return len(got) >= len(poison)
	})
	for _, p := range poison {
		r, ok := got[p.msg.ID]
		if !ok {
			t.Errorf("%s: not rejected", p.msg.ID)
			continue
		}
		if r.Reason != p.reason || r.Field != p.field || r.Transport != statemachine.OriginAMQP || r.Topic != p.msg.Topic || !strings.HasPrefix(string(p.msg.Body), string(r.Body)) || len(r.Body) == 0 && len(p.msg.Body) > 0 {
			t.Errorf("%s: got %s field %q (%s), want %s field %q", p.msg.ID, r.Reason, r.Field, r.Detail, p.reason, p.field)
		}
	}
	eventually(t, "the queue to drain", func() bool { return mb.broker.Len("execdb") == 0 })
	dead := map[string]bus.Message{}
	for _, m := range mb.broker.DeadLetters("execdb") {
		dead[m.ID] = m
	}
	for _, p := range poison {
		d, ok := dead[p.msg.ID]
		switch {
		case !ok:
			t.Errorf("%s: not dead-lettered (dead letters: %v)", p.msg.ID, slices.Collect(maps.Keys(dead)))
		case d.Headers[consumer.HeaderRejectReason] != string(p.reason) || d.Headers[consumer.HeaderRejectField] != p.field ||
			d.Headers[consumer.HeaderRejectDetail] == "" || !schemas.ValidText(d.Headers[consumer.HeaderRejectDetail]):
			t.Errorf("%s: dead letter says %v, want reason %s field %q and a detail", p.msg.ID, d.Headers, p.reason, p.field)
		}
	}
	if _, ok := dead["late"]; ok {
		t.Error("a late start was dead-lettered")
	}
	if _, ok := got["late"]; ok {
		t.Error("a late start was listed as rejected")
	}
	// Rejections of messages that name a job that exists are listed under it and are in its
	// history; the late start is there too.
	eventually(t, "the late start in the history", func() bool {
		return slices.ContainsFunc(history(t, store, done), func(h storage.HistoryEntry) bool { return h.MessageID == "late" })
	})
	var rejectedHere, late []string
	for _, h := range history(t, store, done) {
		switch h.Verdict {
		case statemachine.Rejected:
			rejectedHere = append(rejectedHere, h.MessageID)
		case statemachine.Late:
			late = append(late, h.MessageID)
		}
	}
	slices.Sort(rejectedHere)
	if want := []string{"p-badkey", "p-surrogate"}; !slices.Equal(rejectedHere, want) || !slices.Equal(late, []string{"late"}) {
		t.Errorf("history of the job: rejected %v late %v, want rejected %v late [late]", rejectedHere, late, want)
	}
	for _, id := range []string{"p-badkey", "p-surrogate", "p-conflict"} {
		if r := got[id]; r.JobUUID == nil || *r.JobUUID != done {
			t.Errorf("%s: listed under job %v, want %s", id, r.JobUUID, done)
		}
	}
	if r := got["p-badkey"]; !strings.Contains(r.Detail, "key must match") {
		t.Errorf("p-badkey: detail %q, want the key rule as over HTTP", r.Detail)
	}
}

// TestHostileMessageIDs: ids of any bytes and length are stored in a bounded, valid form that
// still deduplicates (CONTRACT section 3, v1.1); none jams the consumer.
func TestHostileMessageIDs(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			var store *jobs.Service
			if backend == "sqlite" {
				store = sqliteStore(t)
			} else {
				store = postgresStore(t)
			}
			mb := newMemory(t, store, nil)
			ids := []string{"nul\x00id", "bad\xff\xfeutf8", strings.Repeat("long-", 600), "\x00"}
			jobs := map[string]uuid.UUID{}
			for _, id := range ids {
				jobs[id] = uuid.New()
				m := message(id, consumer.SuffixTrigger, trigger(jobs[id]))
				mb.send(t, m, m) // the second is a redelivery: deduplicated by the stored form
			}
			// And a poison message with a hostile id is rejected, its id kept escaped.
			mb.send(t, message("poison\x00", consumer.SuffixStart, `{"uuid": nope`))
			for _, id := range ids {
				waitState(t, store, jobs[id], statemachine.Scheduled)
			}
			eventually(t, "the queue to drain and the poison rejected", func() bool {
				return mb.broker.Len("execdb") == 0 && len(rejected(t, store)) == 1
			})
			for _, id := range ids {
				stored, kept := bus.StorableID(id)
				h := history(t, store, jobs[id])
				if kept || len(h) != 1 || h[0].MessageID != stored || len(stored) > bus.MaxMessageIDBytes || !schemas.ValidText(stored) {
					t.Errorf("id %q: history %+v, want one create under %s", id, h, stored)
				}
			}
			r := rejected(t, store)[0]
			if !strings.HasPrefix(r.MessageID, "sha256:") || !strings.Contains(r.Detail, `"poison\x00"`) {
				t.Errorf("rejection: id %q detail %q, want the stored form and the original escaped", r.MessageID, r.Detail)
			}
		})
	}
}

func TestUnknownJobExpires(t *testing.T) {
	store := sqliteStore(t)
	reg := prometheus.NewRegistry()
	metrics := consumer.NewMetrics(reg)
	mb := newMemory(t, store, metrics)
	id := uuid.New()
	mb.send(t, message("orphan", consumer.SuffixEnd, end(id, "FINISHED")))
	eventually(t, "the end parked", func() bool { return mb.broker.Len("execdb") == 0 })
	sw := consumer.NewSweeper(consumer.SweeperConfig{Store: store, ParkTTL: time.Millisecond, Metrics: metrics})
	eventually(t, "the sweeper to reject it", func() bool {
		sw.Sweep(context.Background())
		r := rejected(t, store)
		return len(r) == 1 && r[0].Reason == storage.RejectUnknownJob && r[0].MessageID == "orphan"
	})
	if v := counter(t, reg, "execdb_bus_rejected_total", map[string]string{"transport": "amqp", "reason": "unknown_job"}); v != 1 {
		t.Errorf("got execdb_bus_rejected_total{reason=unknown_job} %v, want 1", v)
	}
}

func TestDecode(t *testing.T) {
	d := bus.Delivery{Message: bus.Message{Topic: prefix + ".taskotron.job.trigger", Body: []byte(`{}`)}, Malformed: fmt.Errorf("x: %w", bus.ErrTopicMismatch)}
	if m := consumer.Decode(d, statemachine.OriginFedmsg, prefix); m.Reject == nil || m.Reject.Reason != storage.RejectTopicMismatch || m.Meta.MessageID == "" {
		t.Errorf("got %+v", m)
	}
	d = bus.Delivery{Message: bus.Message{ID: "m", Topic: prefix + ".taskotron.job.trigger",
		Body: []byte(`{"taskname":"a","item":"b","item_type":"c","request_id":"r","source":{"msg_id":"koji-1","topic":"buildsys"}}`)}}
	m := consumer.Decode(d, statemachine.OriginFedmsg, prefix)
	if m.Create == nil || m.Create.RequestID != "r" || m.Create.Source.MsgID != "koji-1" || m.Meta.Origin != statemachine.OriginFedmsg {
		t.Errorf("got %+v", m)
	}
	b, _ := json.Marshal(m.Create)
	if !strings.Contains(string(b), `"TaskName":"a"`) {
		t.Errorf("got %s", b)
	}
}

// TestShutdownHandsBack stops a consumer while messages wait: what it took is applied or
// handed back, nothing is lost.
func TestShutdownHandsBack(t *testing.T) {
	store := sqliteStore(t)
	b := memory.NewBroker()
	b.Declare("execdb", consumer.Topics(prefix)...)
	pub := b.Publisher()
	var ids []uuid.UUID
	var msgs []bus.Message
	for i := range 300 {
		id := uuid.New()
		ids = append(ids, id)
		msgs = append(msgs, message(fmt.Sprint("t", i), consumer.SuffixTrigger, trigger(id)))
	}
	pub.Publish(context.Background(), msgs)
	c := consumer.New(consumer.Config{Store: store, Origin: statemachine.OriginAMQP, Prefix: prefix, BatchSize: 16})
	ctx, cancel := context.WithCancel(context.Background())
	sub := b.Subscribe("execdb")
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := c.Run(ctx, sub); err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	eventually(t, "some progress", func() bool { return b.Len("execdb") < 300 })
	cancel()
	wg.Wait()
	sub.Close()
	// A second consumer takes the rest.
	run(t, store, statemachine.OriginAMQP, b.Subscribe("execdb"), nil)
	for _, id := range ids {
		waitState(t, store, id, statemachine.Scheduled)
	}
	eventually(t, "the queue to drain", func() bool { return b.Len("execdb") == 0 })
}

// refusingBackend is a backend whose database refuses every write as invalid data.
type refusingBackend struct{ storage.Backend }

func (refusingBackend) InTx(context.Context, func(storage.Tx) error) error {
	return fmt.Errorf("value refused: %w", storage.ErrInvalidData)
}

// TestRejectionTheDatabaseRefuses: when the database refuses a message and then refuses to keep
// its rejection too, the message is still settled (dead-lettered with why) and counted, never
// retried for ever; the next message is handled.
func TestRejectionTheDatabaseRefuses(t *testing.T) {
	store := jobs.New(refusingBackend{testenv.SQLite(t, "")}, jobs.Config{TopicPrefix: prefix})
	reg := prometheus.NewRegistry()
	mb := newMemory(t, store, consumer.NewMetrics(reg))
	mb.send(t, message("refused-1", consumer.SuffixTrigger, trigger(uuid.New())), message("refused-2", consumer.SuffixTrigger, trigger(uuid.New())))
	eventually(t, "both dead-lettered", func() bool { return len(mb.broker.DeadLetters("execdb")) == 2 })
	for _, d := range mb.broker.DeadLetters("execdb") {
		if d.Headers[consumer.HeaderRejectReason] != string(storage.RejectUnprocessable) || !strings.Contains(d.Headers[consumer.HeaderRejectDetail], "value refused") {
			t.Errorf("%s: dead letter says %v", d.ID, d.Headers)
		}
	}
	if v := counter(t, reg, "execdb_bus_rejected_unstored_total", map[string]string{"transport": "amqp"}); v != 2 {
		t.Errorf("got execdb_bus_rejected_unstored_total %v, want 2", v)
	}
}

// stallingBackend fails every transaction as a database that went away would.
type stallingBackend struct{ storage.Backend }

func (stallingBackend) InTx(context.Context, func(storage.Tx) error) error {
	return fmt.Errorf("connection refused: %w", storage.ErrUnavailable)
}

// TestStalledWorkerShows: a worker that holds messages it cannot apply (the database is gone)
// keeps retrying, and Ready says so once it has held them longer than StallAfter.
func TestStalledWorkerShows(t *testing.T) {
	store := jobs.New(stallingBackend{testenv.SQLite(t, "")}, jobs.Config{TopicPrefix: prefix})
	b := memory.NewBroker()
	b.Declare("execdb", consumer.Topics(prefix)...)
	c := consumer.New(consumer.Config{Store: store, Origin: statemachine.OriginAMQP, Prefix: prefix, StallAfter: 50 * time.Millisecond,
		Backoff: bus.Backoff{Min: 10 * time.Millisecond, Max: 20 * time.Millisecond}})
	if err := c.Ready(context.Background()); err != nil {
		t.Fatalf("idle consumer: got %v, want ready", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	sub := b.Subscribe("execdb")
	go func() { done <- c.Run(ctx, sub) }()
	b.Publisher().Publish(context.Background(), []bus.Message{message("m", consumer.SuffixTrigger, trigger(uuid.New()))})
	eventually(t, "the consumer to report the stall", func() bool {
		err := c.Ready(context.Background())
		return err != nil && strings.Contains(err.Error(), "connection refused")
	})
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	sub.Close()
	if b.Len("execdb") != 1 {
		t.Errorf("the message was not handed back: %d waiting", b.Len("execdb"))
	}
}
