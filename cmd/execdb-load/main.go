// Command execdb-load measures ExecDB's bus throughput end to end: it publishes N complete job
// lives (trigger, runtask.start, runtask.end) to RabbitMQ the way Trigger and Buildbot do, and
// watches ExecDB's own job-state messages (scheduled, running, finished) on a private queue.
// Each input message counts as applied when the message announcing its effect arrives, so the
// latency covers consuming, the database commit, the outbox relay and the broker both ways.
// Run it against a running `execdb serve` with EXECDB_AMQP_URL set; the numbers are in
// docs/performance.md.
//
//	execdb-load --amqp-url amqp://guest:guest@127.0.0.1:5672/ --jobs 20000
//
// With --null-pipeline the tool stands in for ExecDB itself: it consumes the same messages from
// a queue of its own declared and bound as ExecDB's, and for each publishes the job-state
// message ExecDB would announce, with publisher confirms, acknowledging the delivery after the
// confirm, without a database. The same publishing side then measures the ceiling of the
// broker alone, and ExecDB's rate can be given as a share of it. Use a topic prefix no ExecDB
// consumes.
//
//	execdb-load --null-pipeline --topic-prefix org.fedoraproject.null --jobs 20000
//
// `execdb-load http` is HTTP write load against a running `execdb serve` instead: creates or
// whole job lives, over N keep-alive connections, with throughput and latency per request kind
// (see http.go and `execdb-load http -h`).
//
//	execdb-load http --server http://127.0.0.1:5003 --conns 32 --duration 20s --workload lives
//
// cmd/execdb-perf runs both against pgbench and the null pipeline, interleaved, and prints
// ratios.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "http" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := runHTTPCommand(ctx, os.Args[2:])
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, "execdb-load:", err)
			os.Exit(1)
		}
		return
	}
	url := flag.String("amqp-url", envOr("EXECDB_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/"), "broker ExecDB consumes from")
	exchange := flag.String("amqp-exchange", envOr("EXECDB_AMQP_EXCHANGE", "amq.topic"), "exchange ExecDB consumes from and publishes to")
	prefix := flag.String("topic-prefix", envOr("EXECDB_TOPIC_PREFIX", jobs.DefaultTopicPrefix), "ExecDB's topic prefix")
	jobs := flag.Int("jobs", 10000, "job lives to publish (3 messages each)")
	chunk := flag.Int("chunk", 200, "jobs per round: their triggers, then their starts, then their ends")
	window := flag.Int("window", 2000, "unconfirmed publishes in flight")
	rate := flag.Float64("rate", 0, "publish at most this many messages/s; 0: as fast as the broker confirms")
	timeout := flag.Duration("timeout", 10*time.Minute, "give up after this long")
	null := flag.Bool("null-pipeline", false, "stand in for ExecDB: consume from --null-queue, republish each message's announcement with confirms, no database (use a --topic-prefix no ExecDB consumes)")
	nullQueue := flag.String("null-queue", "execdb-load-null", "the null pipeline's queue, declared like ExecDB's and deleted afterwards")
	jsonOut := flag.Bool("json", false, "print the summary as one JSON object on stdout (and the report on stderr)")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "Usage: execdb-load [flags]\n       execdb-load http [flags]\n\nPublishes job lives to ExecDB over AMQP and reports applied messages/s and latency.\n`execdb-load http -h` tells about the HTTP load.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	opts := busOptions{null: *null, nullQueue: *nullQueue, out: os.Stdout}
	if *jsonOut {
		opts.out = os.Stderr
	}
	res, err := run(ctx, *url, *exchange, *prefix, *jobs, *chunk, *window, *rate, opts)
	if err == nil && *jsonOut {
		err = json.NewEncoder(os.Stdout).Encode(res)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "execdb-load:", err)
		os.Exit(1)
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// input is one message to publish and what ExecDB announces when it applied it.
type input struct {
	topic string
	body  []byte
	key   string // job uuid + announced state
}

// busOptions are the bus mode's additions: the null pipeline and where the report goes.
type busOptions struct {
	null      bool
	nullQueue string
	out       io.Writer
}

// busResult is the summary of a bus run; the JSON form is what execdb-perf reads.
type busResult struct {
	Mode        string  `json:"mode"` // "execdb" or "null"
	Jobs        int     `json:"jobs"`
	Messages    int     `json:"messages"`
	PublishRate float64 `json:"published_per_s"`
	Elapsed     float64 `json:"elapsed_s"` // from the first publish to the last announcement
	AppliedRate float64 `json:"applied_per_s"`
	LifeRate    float64 `json:"lives_per_s"`
	Latency     struct {
		P50 float64 `json:"p50_ms"`
		P90 float64 `json:"p90_ms"`
		P99 float64 `json:"p99_ms"`
		Max float64 `json:"max_ms"`
	} `json:"latency"`
}

func run(ctx context.Context, url, exchange, prefix string, jobs, chunk, window int, rate float64, opts busOptions) (*busResult, error) {
	out := opts.out
	ctx, abort := context.WithCancelCause(ctx)
	defer abort(nil)
	conn, err := rabbitmq.Dial(ctx, url, "execdb-load")
	if err != nil {
		return nil, err
	}
	defer conn.Close()

	// Watch what ExecDB publishes, on a private queue.
	wch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	q, err := wch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return nil, fmt.Errorf("declare watch queue: %w", err)
	}
	if err := wch.QueueBind(q.Name, prefix+".execdb.job.#", exchange, false, nil); err != nil {
		return nil, fmt.Errorf("bind watch queue: %w", err)
	}
	if err := wch.Qos(5000, 0, false); err != nil {
		return nil, err
	}
	deliveries, err := wch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return nil, fmt.Errorf("consume watch queue: %w", err)
	}

	if opts.null {
		np, err := startNull(ctx, url, exchange, prefix, opts.nullQueue, abort)
		if err != nil {
			return nil, err
		}
		defer func() {
			if err := np.stop(); err != nil {
				fmt.Fprintln(os.Stderr, "execdb-load: null pipeline:", err)
			}
		}()
		fmt.Fprintf(out, "null pipeline: this tool stands in for ExecDB on queue %s (no database)\n", opts.nullQueue)
	}

	var inputs []input
	for start := 0; start < jobs; start += chunk {
		ids := make([]uuid.UUID, min(chunk, jobs-start))
		for i := range ids {
			ids[i] = uuid.New()
		}
		for _, id := range ids {
			inputs = append(inputs, input{topic: prefix + ".taskotron.job.trigger", key: id.String() + "SCHEDULED",
				body: fmt.Appendf(nil, `{"taskname":"rpmlint","item":"load-%s","item_type":"koji_build","uuid":%q,"data":{"koji_tag":"f45-updates"}}`, id, id)})
		}
		for _, id := range ids {
			inputs = append(inputs, input{topic: prefix + ".taskotron.runtask.start", key: id.String() + "RUNNING",
				body: fmt.Appendf(nil, `{"uuid":%q,"runner":{"name":"buildbot","jobid":"load/1","worker":"load","url":"http://load/1"}}`, id)})
		}
		for _, id := range ids {
			inputs = append(inputs, input{topic: prefix + ".taskotron.runtask.end", key: id.String() + "FINISHED",
				body: fmt.Appendf(nil, `{"uuid":%q,"state":"FINISHED","log_url":"http://load/log"}`, id)})
		}
	}

	var mu sync.Mutex
	sentAt := make(map[string]time.Time, len(inputs))
	latencies := make([]time.Duration, 0, len(inputs))
	relayed := make([]time.Duration, 0, len(inputs)) // from ExecDB's receipt (updated_at) to us
	var firstApplied, lastApplied time.Time
	received := make(chan struct{})
	var watchErr error
	go func() {
		defer close(received)
		for n := 0; n < len(inputs); {
			select {
			case <-ctx.Done():
				watchErr = fmt.Errorf("%d of %d applied when giving up: %w", n, len(inputs), context.Cause(ctx))
				return
			case d, ok := <-deliveries:
				if !ok {
					watchErr = fmt.Errorf("watch queue closed after %d of %d", n, len(inputs))
					return
				}
				now := time.Now()
				var job struct {
					UUID      string    `json:"uuid"`
					State     string    `json:"state"`
					UpdatedAt time.Time `json:"updated_at"`
				}
				if json.Unmarshal(d.Body, &job) != nil {
					continue
				}
				key := job.UUID + job.State
				mu.Lock()
				// The send time is noted before the publish, so an announcement of ours always
				// finds it; anything else on the exchange is ignored.
				if t, ok := sentAt[key]; ok {
					delete(sentAt, key)
					latencies = append(latencies, now.Sub(t))
					relayed = append(relayed, now.Sub(job.UpdatedAt))
					if firstApplied.IsZero() {
						firstApplied = now
					}
					lastApplied = now
					n++
				}
				mu.Unlock()
			}
		}
	}()

	pch, err := conn.Channel()
	if err != nil {
		return nil, err
	}
	if err := pch.Confirm(false); err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "publishing %d job lives (%d messages) to %s on %s\n", jobs, len(inputs), exchange, rabbitmq.Redact(url))
	begin := time.Now()
	pending := make([]*amqp.DeferredConfirmation, 0, window)
	for i, in := range inputs {
		if rate > 0 {
			if ahead := time.Until(begin.Add(time.Duration(float64(i) / rate * float64(time.Second)))); ahead > 0 {
				time.Sleep(ahead)
			}
		}
		msg := amqp.Publishing{ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: amqp.Persistent,
			MessageId: uuid.NewString(), Body: in.body,
			Headers: amqp.Table{"fedora_messaging_schema": "base.message", "fedora_messaging_severity": int32(20),
				"sent-at": time.Now().UTC().Format(rabbitmq.SentAtLayout)}}
		mu.Lock()
		sentAt[in.key] = time.Now()
		mu.Unlock()
		dc, err := pch.PublishWithDeferredConfirmWithContext(ctx, exchange, in.topic, false, false, msg)
		if err != nil {
			return nil, fmt.Errorf("publish %d: %w", i, err)
		}
		pending = append(pending, dc)
		if len(pending) == window {
			if err := waitConfirms(ctx, pending); err != nil {
				return nil, err
			}
			pending = pending[:0]
		}
	}
	if err := waitConfirms(ctx, pending); err != nil {
		return nil, err
	}
	published := time.Since(begin)
	fmt.Fprintf(out, "published and confirmed in %s: %.0f messages/s\n", published.Round(time.Millisecond), float64(len(inputs))/published.Seconds())
	<-received
	if watchErr != nil {
		return nil, watchErr
	}
	elapsed := lastApplied.Sub(begin)
	slices.Sort(latencies)
	slices.Sort(relayed)
	pct := func(ds []time.Duration, p float64) time.Duration {
		return ds[min(len(ds)-1, int(p*float64(len(ds))))].Round(100 * time.Microsecond)
	}
	fmt.Fprintf(out, "applied %d messages in %s: %.0f messages/s (%.0f job lives/s)\n", len(inputs), elapsed.Round(time.Millisecond),
		float64(len(inputs))/elapsed.Seconds(), float64(jobs)/elapsed.Seconds())
	if drain := lastApplied.Sub(firstApplied); drain > 0 {
		fmt.Fprintf(out, "from the first announcement to the last: %s, %.0f messages/s\n", drain.Round(time.Millisecond),
			float64(len(inputs)-1)/drain.Seconds())
	}
	fmt.Fprintf(out, "latency from publish to ExecDB's announcement: p50 %s  p90 %s  p99 %s  max %s\n",
		pct(latencies, 0.50), pct(latencies, 0.90), pct(latencies, 0.99), pct(latencies, 1))
	fmt.Fprintf(out, "from ExecDB taking the message (the job's updated_at) to the announcement: p50 %s  p90 %s  p99 %s  max %s\n",
		pct(relayed, 0.50), pct(relayed, 0.90), pct(relayed, 0.99), pct(relayed, 1))
	res := &busResult{Mode: "execdb", Jobs: jobs, Messages: len(inputs), Elapsed: elapsed.Seconds(),
		PublishRate: float64(len(inputs)) / published.Seconds(), AppliedRate: float64(len(inputs)) / elapsed.Seconds(),
		LifeRate: float64(jobs) / elapsed.Seconds()}
	if opts.null {
		res.Mode = "null"
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	res.Latency.P50, res.Latency.P90 = ms(pct(latencies, 0.50)), ms(pct(latencies, 0.90))
	res.Latency.P99, res.Latency.Max = ms(pct(latencies, 0.99)), ms(pct(latencies, 1))
	return res, nil
}

func waitConfirms(ctx context.Context, pending []*amqp.DeferredConfirmation) error {
	for _, dc := range pending {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			return fmt.Errorf("wait for confirms: %w", err)
		}
		if !ok {
			return fmt.Errorf("the broker refused message %d", dc.DeliveryTag)
		}
	}
	return nil
}
