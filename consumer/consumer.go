// Package consumer turns bus deliveries into store operations: it decodes trigger,
// runtask.start and runtask.end messages, applies them in batches (one transaction for many
// messages) and settles each delivery only after its effect committed. Poison messages are
// rejected with their reason and never stop it.
package consumer

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	DefaultWorkers   = 4
	DefaultBatchSize = 256
)

// Config configures a Consumer.
type Config struct {
	// Store applies the messages. (Its commit hook counts and logs what they did to jobs.)
	Store *jobs.Service
	// Origin is the transport's name in histories and metrics: amqp or fedmsg.
	Origin statemachine.Origin
	// Prefix is the topic prefix; empty means jobs.DefaultTopicPrefix.
	Prefix string
	// Log receives rejections and problems; nil means none.
	Log *zap.Logger
	// Metrics are updated when set.
	Metrics *Metrics
	// Workers apply batches in parallel; the messages of one job always go to the same worker,
	// in order. 0 means DefaultWorkers.
	Workers int
	// BatchSize bounds the messages of one transaction; 0 means DefaultBatchSize.
	BatchSize int
	// Backoff paces retries while the database fails.
	Backoff bus.Backoff
	// StallAfter is how long a worker may hold messages without settling them before Ready
	// reports the consumer stalled; 0 means DefaultStallAfter.
	StallAfter time.Duration
}

// DefaultStallAfter is Config.StallAfter's default: a batch commits in milliseconds, so a
// minute without one means the database has been failing for that long, or a bug.
const DefaultStallAfter = time.Minute

// Consumer applies the deliveries of a subscriber. It is safe to run several consumers (one
// per transport) on one store.
type Consumer struct {
	cfg     Config
	log     *zap.Logger
	workers []workerState
}

// workerState is what Ready knows of a worker: since when it holds a batch (zero when idle),
// how many messages, and why its last attempt to apply them failed.
type workerState struct {
	mu      sync.Mutex
	holding time.Time
	held    int
	lastErr error
}

func (w *workerState) begin(n int) {
	w.mu.Lock()
	w.holding, w.held, w.lastErr = time.Now(), n, nil
	w.mu.Unlock()
}

func (w *workerState) failed(err error) {
	w.mu.Lock()
	w.lastErr = err
	w.mu.Unlock()
}

func (w *workerState) end() {
	w.mu.Lock()
	w.holding, w.held, w.lastErr = time.Time{}, 0, nil
	w.mu.Unlock()
}

// stalled is how long the worker has held its batch, with what it holds and its last error.
func (w *workerState) stalled(now time.Time) (time.Duration, int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.holding.IsZero() {
		return 0, 0, nil
	}
	return now.Sub(w.holding), w.held, w.lastErr
}

// Ready returns nil unless a worker has held messages for longer than Config.StallAfter
// without settling them (the database keeps failing, say): then it says which worker, for how
// long and why, for /readyz.
func (c *Consumer) Ready(ctx context.Context) error {
	worst, held, which, why := c.stalled(time.Now())
	if worst <= c.cfg.StallAfter {
		return nil
	}
	msg := fmt.Sprintf("worker %d has held %d messages for %s without settling them", which, held, worst.Round(time.Second))
	if why != nil {
		msg += ": " + why.Error()
	}
	return errors.New(msg)
}

// stalled finds the worker that has held its batch longest.
func (c *Consumer) stalled(now time.Time) (worst time.Duration, held, which int, why error) {
	for i := range c.workers {
		if d, n, err := c.workers[i].stalled(now); d > worst {
			worst, held, which, why = d, n, i, err
		}
	}
	return worst, held, which, why
}

// New returns a consumer.
func New(cfg Config) *Consumer {
	if cfg.Prefix == "" {
		cfg.Prefix = jobs.DefaultTopicPrefix
	}
	if cfg.Workers <= 0 {
		cfg.Workers = DefaultWorkers
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.Backoff.Min == 0 {
		cfg.Backoff.Min = 100 * time.Millisecond
	}
	if cfg.Backoff.Max == 0 {
		cfg.Backoff.Max = 10 * time.Second
	}
	if cfg.StallAfter <= 0 {
		cfg.StallAfter = DefaultStallAfter
	}
	c := &Consumer{cfg: cfg, log: cfg.Log, workers: make([]workerState, cfg.Workers)}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	return c
}

type item struct {
	d bus.Delivery
	m jobs.BusMessage
}

// Run takes deliveries from sub until ctx ends or sub is closed, and returns then, after the
// deliveries it took were applied and settled (or, when the database fails at that moment,
// handed back). It returns nil on such a stop and an error only when sub fails otherwise. Run
// once per Consumer.
func (c *Consumer) Run(ctx context.Context, sub bus.Subscriber) error {
	queues := make([]chan item, c.cfg.Workers)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan item, c.cfg.BatchSize)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.work(ctx, queues[i], &c.workers[i])
		}()
	}
	gaugeCtx, stopGauge := context.WithCancel(ctx)
	if c.cfg.Metrics != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.watchStalls(gaugeCtx)
		}()
	}
	defer func() {
		stopGauge()
		for _, q := range queues {
			close(q)
		}
		wg.Wait()
	}()
	origin := string(c.cfg.Origin)
	for {
		d, err := sub.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, bus.ErrClosed) {
				return nil
			}
			return err
		}
		if c.cfg.Metrics != nil {
			c.cfg.Metrics.received.WithLabelValues(origin).Inc()
		}
		m := Decode(d, c.cfg.Origin, c.cfg.Prefix)
		queues[partition(m, len(queues))] <- item{d: d, m: m}
	}
}

// partition picks the worker of a message: by job uuid, so that one job's messages stay in
// order.
func partition(m jobs.BusMessage, n int) int {
	h := fnv.New32a()
	switch {
	case m.Event != nil:
		h.Write(m.JobUUID[:])
	case m.Create != nil && m.Create.UUID != [16]byte{}:
		h.Write(m.Create.UUID[:])
	default:
		h.Write([]byte(m.Meta.MessageID))
	}
	return int(h.Sum32() % uint32(n))
}

// watchStalls keeps the stalled-seconds gauge up to date until ctx ends.
func (c *Consumer) watchStalls(ctx context.Context) {
	gauge := c.cfg.Metrics.stalled.WithLabelValues(string(c.cfg.Origin))
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		worst, _, _, _ := c.stalled(time.Now())
		gauge.Set(worst.Seconds())
		select {
		case <-ctx.Done():
			gauge.Set(0)
			return
		case <-t.C:
		}
	}
}

// work applies what arrives on q in batches: whatever is queued when it is free, up to the
// batch size. It drains q after ctx ended, until q is closed.
func (c *Consumer) work(ctx context.Context, q <-chan item, state *workerState) {
	backoff := c.cfg.Backoff
	batch := make([]item, 0, c.cfg.BatchSize)
	for {
		first, ok := <-q
		if !ok {
			return
		}
		batch = append(batch[:0], first)
	fill:
		for len(batch) < c.cfg.BatchSize {
			select {
			case it, ok := <-q:
				if !ok {
					break fill
				}
				batch = append(batch, it)
			default:
				break fill
			}
		}
		state.begin(len(batch))
		c.process(ctx, batch, &backoff, state)
		state.end()
	}
}

// process applies a batch and settles its deliveries.
func (c *Consumer) process(ctx context.Context, batch []item, backoff *bus.Backoff, state *workerState) {
	msgs := make([]jobs.BusMessage, len(batch))
	for i, it := range batch {
		msgs[i] = it.m
	}
	start := time.Now()
	results, ok := c.apply(ctx, msgs, backoff, state)
	if !ok {
		for _, it := range batch {
			if err := it.d.Requeue(); err != nil {
				c.log.Debug("hand back delivery", zap.String("message_id", it.m.Meta.MessageID), zap.Error(err))
			}
		}
		return
	}
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.batch.Observe(float64(len(batch)))
		c.cfg.Metrics.apply.Observe(time.Since(start).Seconds())
	}
	now := time.Now()
	for i, it := range batch {
		c.settle(it, results[i], now)
	}
}

// apply applies msgs in one transaction, retrying while the database fails. A batch that keeps
// failing is applied message by message, so that one message whose data the database refuses
// (storage.ErrInvalidData: the database's own data errors, which no retry cures) is rejected as
// unprocessable without holding up the others; any other error (connection lost, locked,
// timed out, read-only, disk full) is retried, however long it lasts. Should even the
// rejection of such a message be refused, the message is rejected without being stored
// (unstored): settled, dead-lettered and counted, never retried for ever. ok is false when ctx
// ended while the database failed: nothing was applied.
func (c *Consumer) apply(ctx context.Context, msgs []jobs.BusMessage, backoff *bus.Backoff, state *workerState) ([]jobs.BusResult, bool) {
	dbCtx := context.WithoutCancel(ctx)
	for attempt := 0; ; attempt++ {
		results, err := c.cfg.Store.ApplyBus(dbCtx, msgs)
		if err == nil {
			backoff.Reset()
			return results, true
		}
		if c.cfg.Metrics != nil {
			c.cfg.Metrics.dbErrors.WithLabelValues(string(c.cfg.Origin)).Inc()
		}
		state.failed(err)
		if attempt >= 1 && len(msgs) > 1 {
			out := make([]jobs.BusResult, 0, len(msgs))
			for _, m := range msgs {
				r, ok := c.apply(ctx, []jobs.BusMessage{m}, backoff, state)
				if !ok {
					return nil, false
				}
				out = append(out, r...)
			}
			return out, true
		}
		if len(msgs) == 1 && errors.Is(err, storage.ErrInvalidData) {
			m := msgs[0]
			if m.Reject != nil && m.Reject.Reason == storage.RejectUnprocessable {
				// The database refuses even to keep the rejection.
				c.log.Error("database refused to store a rejected bus message; dead-lettering it unstored",
					zap.String("message_id", m.Meta.MessageID), zap.String("topic", schemas.EscapeTruncate(m.Topic, 256)), zap.Error(err))
				return []jobs.BusResult{{Outcome: jobs.BusRejected, Kind: m.Reject.Kind, Reason: m.Reject.Reason,
					Rejection: m.Reject, Unstored: true}}, true
			}
			// The database refuses this message's data: keep it as rejected instead.
			c.log.Warn("database refused a bus message; rejecting it", zap.String("message_id", m.Meta.MessageID),
				zap.String("topic", schemas.EscapeTruncate(m.Topic, 256)), zap.Error(err))
			rej := &jobs.Rejection{Reason: storage.RejectUnprocessable, Detail: err.Error(), Kind: m.Kind()}
			switch {
			case m.Reject != nil:
				rej.Kind, rej.JobUUID = m.Reject.Kind, m.Reject.JobUUID
				rej.Detail = fmt.Sprintf("%s: %s (%s); storing that: %v", m.Reject.Reason, m.Reject.Detail, m.Reject.Field, err)
			case m.Event != nil:
				id := m.JobUUID
				rej.JobUUID = &id
			}
			m.Create, m.Event, m.Reject = nil, nil, rej
			msgs = []jobs.BusMessage{m}
			continue
		}
		if attempt == 0 {
			continue // a deadlock or a lost race: at once again
		}
		c.log.Warn("applying bus messages failed; retrying", zap.Int("messages", len(msgs)), zap.Error(err))
		if ctx.Err() != nil || !backoff.Wait(ctx) {
			return nil, false
		}
	}
}

// settle acknowledges or rejects a delivery by its outcome, and counts and logs it.
func (c *Consumer) settle(it item, r jobs.BusResult, now time.Time) {
	var err error
	if r.Outcome == jobs.BusRejected {
		err = it.d.Reject(DeadLetterHeaders(r.Rejection))
	} else {
		err = it.d.Ack()
	}
	fields := []zap.Field{zap.String("message_id", it.m.Meta.MessageID), zap.String("topic", it.m.Topic),
		zap.String("transport", string(c.cfg.Origin))}
	if it.m.JobUUID != [16]byte{} {
		fields = append(fields, zap.String("job_uuid", it.m.JobUUID.String()))
	} else if r.Result.Job.UUID != [16]byte{} {
		fields = append(fields, zap.String("job_uuid", r.Result.Job.UUID.String()))
	}
	if err != nil {
		// The effect committed; the transport will deliver the message again and the dedup
		// on its id will recognise it.
		c.log.Info("could not settle a delivery; it will come again and be recognised", append(fields, zap.Error(err))...)
	}
	origin := string(c.cfg.Origin)
	if c.cfg.Metrics != nil {
		c.cfg.Metrics.outcomes.WithLabelValues(origin, string(r.Kind), string(r.Outcome)).Inc()
		if r.Outcome == jobs.BusRejected {
			c.cfg.Metrics.rejected.WithLabelValues(origin, string(r.Reason)).Inc()
			if r.Unstored {
				c.cfg.Metrics.unstored.WithLabelValues(origin).Inc()
			}
		}
		if !it.d.Time.IsZero() && r.Outcome != jobs.BusRejected {
			c.cfg.Metrics.lag.WithLabelValues(origin).Observe(now.Sub(it.d.Time).Seconds())
		}
		for _, p := range r.Result.Parked {
			c.cfg.Metrics.outcomes.WithLabelValues(string(p.Meta.Origin), string(p.Kind), "applied_parked").Inc()
			if p.Reason != "" {
				c.cfg.Metrics.rejected.WithLabelValues(string(p.Meta.Origin), string(p.Reason)).Inc()
			}
		}
	}
	switch r.Outcome {
	case jobs.BusRejected:
		if rej := r.Rejection; rej != nil {
			fields = append(fields, zap.String("field", schemas.EscapeTruncate(rej.Field, 256)), zap.String("detail", schemas.EscapeTruncate(rej.Detail, 1024)))
		}
		c.log.Warn("bus message rejected", append(fields, zap.String("reason", string(r.Reason)), zap.Bool("stored", !r.Unstored))...)
	case jobs.BusParked:
		c.log.Info("bus message parked until its job exists", fields...)
	default:
		if ce := c.log.Check(zap.DebugLevel, "bus message applied"); ce != nil {
			ce.Write(append(fields, zap.String("outcome", string(r.Outcome)), zap.String("state_from", string(r.Result.StateFrom)),
				zap.String("state_to", string(r.Result.Job.State)))...)
		}
	}
}

// The headers of a dead letter that say why ExecDB rejected it (CONTRACT section 3, v1.1).
const (
	HeaderRejectReason = "execdb_reject_reason"
	HeaderRejectField  = "execdb_reject_field"
	HeaderRejectDetail = "execdb_reject_detail"
)

// maxDeadLetterDetail bounds execdb_reject_detail: AMQP header values are long strings, but
// a broker's frame is not the place for a novel.
const maxDeadLetterDetail = 1024

// DeadLetterHeaders are the headers that say why a message was rejected, for its dead letter.
func DeadLetterHeaders(r *jobs.Rejection) map[string]string {
	if r == nil {
		return nil
	}
	return map[string]string{
		HeaderRejectReason: string(r.Reason),
		HeaderRejectField:  schemas.EscapeTruncate(r.Field, 256),
		HeaderRejectDetail: schemas.EscapeTruncate(r.Detail, maxDeadLetterDetail),
	}
}
