// Package consumer turns bus deliveries into store operations: it decodes trigger,
// runtask.start and runtask.end messages, applies them in batches (one transaction for many
// messages) and settles each delivery only after its effect committed. Poison messages are
// rejected with their reason and never stop it.
package consumer

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/bus"
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
	// Store applies the messages.
	Store *storage.Store
	// Origin is the transport's name in histories and metrics: amqp or fedmsg.
	Origin statemachine.Origin
	// Prefix is the topic prefix; empty means storage.DefaultTopicPrefix.
	Prefix string
	// Log receives rejections and problems; nil means none.
	Log *zap.Logger
	// Metrics are updated when set.
	Metrics *Metrics
	// Observe is told the result of every create and event that reached a job (the job
	// transition metrics); nil means nobody.
	Observe func(statemachine.Origin, statemachine.EventKind, storage.Result)
	// Workers apply batches in parallel; the messages of one job always go to the same worker,
	// in order. 0 means DefaultWorkers.
	Workers int
	// BatchSize bounds the messages of one transaction; 0 means DefaultBatchSize.
	BatchSize int
	// Backoff paces retries while the database fails.
	Backoff bus.Backoff
}

// Consumer applies the deliveries of a subscriber. It is safe to run several consumers (one
// per transport) on one store.
type Consumer struct {
	cfg Config
	log *zap.Logger
}

// New returns a consumer.
func New(cfg Config) *Consumer {
	if cfg.Prefix == "" {
		cfg.Prefix = storage.DefaultTopicPrefix
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
	c := &Consumer{cfg: cfg, log: cfg.Log}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	return c
}

type item struct {
	d bus.Delivery
	m storage.BusMessage
}

// Run takes deliveries from sub until ctx ends or sub is closed, and returns then, after the
// deliveries it took were applied and settled (or, when the database fails at that moment,
// handed back). It returns nil on such a stop and an error only when sub fails otherwise.
func (c *Consumer) Run(ctx context.Context, sub bus.Subscriber) error {
	queues := make([]chan item, c.cfg.Workers)
	var wg sync.WaitGroup
	for i := range queues {
		queues[i] = make(chan item, c.cfg.BatchSize)
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.work(ctx, queues[i])
		}()
	}
	defer func() {
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
func partition(m storage.BusMessage, n int) int {
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

// work applies what arrives on q in batches: whatever is queued when it is free, up to the
// batch size. It drains q after ctx ended, until q is closed.
func (c *Consumer) work(ctx context.Context, q <-chan item) {
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
		c.process(ctx, batch, &backoff)
	}
}

// process applies a batch and settles its deliveries.
func (c *Consumer) process(ctx context.Context, batch []item, backoff *bus.Backoff) {
	msgs := make([]storage.BusMessage, len(batch))
	for i, it := range batch {
		msgs[i] = it.m
	}
	start := time.Now()
	results, ok := c.apply(ctx, msgs, backoff)
	if !ok {
		for _, it := range batch {
			if err := it.d.Reject(true); err != nil {
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
// (storage.ErrInvalidData) is rejected as unprocessable without holding up the others; any other
// error (locked, timed out, read-only, disk full) is retried, however long it lasts. ok is false when ctx
// ended while the database failed: nothing was applied.
func (c *Consumer) apply(ctx context.Context, msgs []storage.BusMessage, backoff *bus.Backoff) ([]storage.BusResult, bool) {
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
		if attempt >= 1 && len(msgs) > 1 {
			out := make([]storage.BusResult, 0, len(msgs))
			for _, m := range msgs {
				r, ok := c.apply(ctx, []storage.BusMessage{m}, backoff)
				if !ok {
					return nil, false
				}
				out = append(out, r...)
			}
			return out, true
		}
		if len(msgs) == 1 && msgs[0].Reject == nil && errors.Is(err, storage.ErrInvalidData) {
			// The database refuses this message's data: keep it as rejected instead.
			c.log.Warn("database refused a bus message; rejecting it", zap.String("message_id", msgs[0].Meta.MessageID),
				zap.String("topic", msgs[0].Topic), zap.Error(err))
			m := msgs[0]
			m.Create, m.Event = nil, nil
			m.Reject = &storage.Rejection{Reason: storage.RejectUnprocessable, Detail: err.Error()}
			if m.JobUUID != [16]byte{} {
				id := m.JobUUID
				m.Reject.JobUUID = &id
			}
			msgs = []storage.BusMessage{m}
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
func (c *Consumer) settle(it item, r storage.BusResult, now time.Time) {
	var err error
	if r.Outcome == storage.BusRejected {
		err = it.d.Reject(false)
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
		if r.Outcome == storage.BusRejected {
			c.cfg.Metrics.rejected.WithLabelValues(origin, string(r.Reason)).Inc()
		}
		if !it.d.Time.IsZero() && r.Outcome != storage.BusRejected {
			c.cfg.Metrics.lag.WithLabelValues(origin).Observe(now.Sub(it.d.Time).Seconds())
		}
		for _, p := range r.Result.Parked {
			c.cfg.Metrics.outcomes.WithLabelValues(string(p.Meta.Origin), string(p.Kind), "applied_parked").Inc()
			if p.Reason != "" {
				c.cfg.Metrics.rejected.WithLabelValues(string(p.Meta.Origin), string(p.Reason)).Inc()
			}
		}
	}
	if c.cfg.Observe != nil && !r.Seen && r.Result.Verdict != "" {
		c.cfg.Observe(c.cfg.Origin, r.Kind, r.Result)
		for _, p := range r.Result.Parked {
			c.cfg.Observe(p.Meta.Origin, p.Kind, p.Result)
		}
	}
	switch r.Outcome {
	case storage.BusRejected:
		if rej := it.m.Reject; rej != nil {
			fields = append(fields, zap.String("field", rej.Field), zap.String("detail", rej.Detail))
		}
		c.log.Warn("bus message rejected", append(fields, zap.String("reason", string(r.Reason)))...)
	case storage.BusParked:
		c.log.Info("bus message parked until its job exists", fields...)
	default:
		if ce := c.log.Check(zap.DebugLevel, "bus message applied"); ce != nil {
			ce.Write(append(fields, zap.String("outcome", string(r.Outcome)), zap.String("state_from", string(r.Result.StateFrom)),
				zap.String("state_to", string(r.Result.Job.State)))...)
		}
	}
}
