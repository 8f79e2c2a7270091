package publisher_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/publisher"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

func outboxMessage() storage.OutboxMessage {
	id := uuid.New()
	return storage.OutboxMessage{MessageID: uuid.New(), JobUUID: id, Topic: prefix + ".execdb.job.running",
		Body: []byte(`{"uuid":"` + id.String() + `","state":"RUNNING","taskname":"rpmlint","item":"foo-1.0-1.fc45",` +
			`"item_type":"koji_build","arch":"noarch","data":{"koji_tag":["f45"]},"source":null,"request_id":"r",` +
			`"runner":null,"artifacts_url":null,"log_url":null,"crash":null,"attempt":1,"rescheduled_from":null,` +
			`"rescheduled_to":null,"created_at":"2026-11-02T10:00:00Z","started_at":"2026-11-02T10:00:01Z",` +
			`"finished_at":null,"updated_at":"2026-11-02T10:00:01Z","href":"/api/v1/jobs/x","previous_state":"SCHEDULED"}`),
		Headers:   map[string]string{"fedora_messaging_schema": "execdb.job.v1", "fedora_messaging_severity": "20", "execdb_state": "RUNNING"},
		CreatedAt: time.Now()}
}

// BenchmarkRelay needs PostgreSQL and RabbitMQ. It fills the outbox with b.N messages and times
// the relay emptying it into a bound quorum queue (msgs/s); then, with the relay waiting on
// LISTEN/NOTIFY, it commits one message every 2 ms and measures from each commit to the
// broker's delivery of the message (p50/p90/p99). The numbers are in docs/performance.md:
//
//	go test -run '^$' -bench Relay -benchtime 20000x ./publisher
func BenchmarkRelay(b *testing.B) {
	b.StopTimer()
	store := postgresStore(b, postgresURL(b))
	w := newWatch(b)
	ctx := context.Background()
	for i := 0; i < b.N; i += 1000 {
		var w storage.Writes
		for range min(1000, b.N-i) {
			w.Outbox = append(w.Outbox, outboxMessage())
		}
		err := store.Backend().InTx(ctx, func(tx storage.Tx) error { return tx.Write(ctx, w) })
		if err != nil {
			b.Fatal(err)
		}
	}
	pub := rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: w.url, Exchange: w.exchange})
	defer pub.Close()
	relay := publisher.New(publisher.Config{Outbox: store.Backend(), Sinks: []publisher.Sink{{Name: "amqp", Publisher: pub}}})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	defer func() { cancel(); <-done }()
	b.StartTimer()
	start := time.Now()
	go func() { defer close(done); relay.Run(rctx) }()
	for backlog(b, store.Backend()) > 0 {
		time.Sleep(2 * time.Millisecond)
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")

	conn, err := rabbitmq.Dial(ctx, w.url, "execdb bench")
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		b.Fatal(err)
	}
	if _, err := ch.QueuePurge(w.queue, false); err != nil {
		b.Fatal(err)
	}
	deliveries, err := ch.Consume(w.queue, "", true, false, false, false, nil)
	if err != nil {
		b.Fatal(err)
	}
	const samples = 500
	arrived := make(chan map[string]time.Time)
	go func() {
		at := map[string]time.Time{}
		for d := range deliveries {
			at[d.MessageId] = time.Now()
			if len(at) == samples {
				break
			}
		}
		arrived <- at
	}()
	committed := map[string]time.Time{}
	for range samples {
		m := outboxMessage()
		if err := store.Backend().InTx(ctx, func(tx storage.Tx) error { return tx.Write(ctx, storage.Writes{Outbox: []storage.OutboxMessage{m}}) }); err != nil {
			b.Fatal(err)
		}
		committed[m.MessageID.String()] = time.Now()
		time.Sleep(2 * time.Millisecond)
	}
	var lat []time.Duration
	for id, at := range <-arrived {
		lat = append(lat, at.Sub(committed[id]))
	}
	slices.Sort(lat)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
	b.ReportMetric(ms(lat[len(lat)*9/10]), "p90-ms")
	b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
}
