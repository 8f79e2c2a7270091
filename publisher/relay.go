// Package publisher is the outbox relay: it takes the job-state messages that committed with
// their change and publishes them, in outbox order, to every configured bus, and removes them
// from the outbox only once every bus accepted them (the broker's confirm, for AMQP). Delivery is at
// least once: a message re-sent after a crash carries the same id.
package publisher

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/storage"
	"go.uber.org/zap"
)

// Defaults of Config.
const (
	DefaultBatchSize = 500
	// DefaultPoll is the safety-net poll with notifications (PostgreSQL).
	DefaultPoll = 5 * time.Second
	// DefaultFastPoll is the poll without notifications (SQLite).
	DefaultFastPoll = 200 * time.Millisecond
	// flushTimeout bounds the last flush at shutdown.
	flushTimeout = 10 * time.Second
	// DefaultStepDownAfter is how long a leading relay fails to publish before it gives the
	// lead up, in case another process reaches the broker.
	DefaultStepDownAfter = 30 * time.Second
	// stepDownPause is how long a relay that stepped down waits before it competes again
	// (longer than a follower's 2 s retry of the lock).
	stepDownPause = 5 * time.Second
)

// Sink is one bus the relay publishes to.
type Sink struct {
	Name      string // transport name in logs and metrics: amqp, fedmsg
	Publisher bus.Publisher
}

// Outbox is what the relay needs of the database; every storage backend has it (storage.Bus
// says what each method does). Lead makes one process among those sharing a database the one
// that relays, so that messages leave in outbox order: PostgreSQL's waits for an advisory lock
// and wakes the relay on a NOTIFY; SQLite's, whose database one process serves, leads at once
// and wakes it after each commit that queued messages.
type Outbox interface {
	Outbox(ctx context.Context, afterID int64, limit int) ([]storage.OutboxMessage, error)
	DeletePublished(ctx context.Context, ids []int64) error
	OutboxStats(ctx context.Context) (storage.OutboxStats, error)
	Lead(ctx context.Context, fn func(ctx context.Context, wake <-chan struct{}) error) error
}

var _ Outbox = storage.Backend(nil)

// Config configures a Relay.
type Config struct {
	// Outbox is the database's outbox.
	Outbox Outbox
	// Sinks are the buses to publish to; at least one. (A process without any runs Expire.)
	Sinks []Sink
	// Log receives problems; nil means none.
	Log *zap.Logger
	// Metrics are updated when set.
	Metrics *Metrics
	// BatchSize bounds the messages read and published at once; 0 means DefaultBatchSize.
	BatchSize int
	// Poll is the time between outbox reads when nothing wakes the relay; 0 means
	// DefaultPoll when the lead comes with a wake channel, DefaultFastPoll without.
	Poll time.Duration
	// Backoff paces retries while a bus or the database fails.
	Backoff bus.Backoff
	// StepDownAfter is how long a leading relay fails to publish before it gives the lead up
	// (to a process that may reach the broker); 0 means DefaultStepDownAfter.
	StepDownAfter time.Duration
}

// Relay publishes the outbox. Run it once per process; Ready may be called concurrently.
type Relay struct {
	cfg Config
	log *zap.Logger

	mu      sync.Mutex
	lastErr error
}

// New returns a relay.
func New(cfg Config) *Relay {
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = DefaultBatchSize
	}
	if cfg.StepDownAfter <= 0 {
		cfg.StepDownAfter = DefaultStepDownAfter
	}
	if cfg.Backoff.Min == 0 {
		cfg.Backoff.Min = 200 * time.Millisecond
	}
	if cfg.Backoff.Max == 0 {
		cfg.Backoff.Max = 15 * time.Second
	}
	// Buses that can refuse (with confirms) go first: what they refuse is not sent to the
	// others either, which keeps re-sends few.
	cfg.Sinks = slices.Clone(cfg.Sinks)
	slices.SortStableFunc(cfg.Sinks, func(a, b Sink) int {
		switch aa, ba := a.Publisher.Features().Acks, b.Publisher.Features().Acks; {
		case aa && !ba:
			return -1
		case !aa && ba:
			return 1
		}
		return 0
	})
	r := &Relay{cfg: cfg, log: cfg.Log}
	if r.log == nil {
		r.log = zap.NewNop()
	}
	return r
}

// Run relays until ctx ends, then publishes what is still waiting (at most flushTimeout) and
// returns. It relays only while it leads (Outbox.Lead).
func (r *Relay) Run(ctx context.Context) error {
	if len(r.cfg.Sinks) == 0 {
		return errors.New("relay: no bus to publish to")
	}
	backoff := r.cfg.Backoff
	for {
		steppedDown := false
		err := r.cfg.Outbox.Lead(ctx, func(lctx context.Context, wake <-chan struct{}) error {
			r.setLeading(true)
			r.log.Info("outbox relay active")
			backoff.Reset()
			steppedDown = r.loop(ctx, lctx, wake)
			return nil
		})
		r.setLeading(false)
		if ctx.Err() != nil {
			return nil
		}
		if steppedDown {
			r.log.Warn("outbox relay gave up the lead: it could not publish", zap.Duration("for", r.cfg.StepDownAfter))
			t := time.NewTimer(stepDownPause)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil
			case <-t.C:
			}
			continue
		}
		if err != nil {
			r.setErr(fmt.Errorf("relay lock: %w", err))
			r.log.Warn("outbox relay lost or could not take the lead; trying again", zap.Error(err))
		}
		if !backoff.Wait(ctx) {
			return nil
		}
	}
}

// loop publishes while lctx lasts. When ctx (the process) ends it flushes what waits; when
// only lctx ends (the lead was lost) it stops at once: another process relays now. It returns
// stepDown true after failing to publish for StepDownAfter, so that the lead can pass to a
// process that reaches the broker.
func (r *Relay) loop(ctx, lctx context.Context, wake <-chan struct{}) (stepDown bool) {
	every := r.cfg.Poll
	if every <= 0 {
		every = DefaultPoll
		if wake == nil {
			every = DefaultFastPoll
		}
	}
	poll := time.NewTicker(every)
	defer poll.Stop()
	backoff := r.cfg.Backoff
	var failingSince time.Time
	for {
		n, err := r.flush(lctx)
		switch {
		case err != nil && lctx.Err() == nil:
			r.setErr(err)
			r.log.Warn("publishing the outbox failed; retrying", zap.Error(err))
			if failingSince.IsZero() {
				failingSince = time.Now()
			}
			if time.Since(failingSince) > r.cfg.StepDownAfter {
				return true
			}
			backoff.Wait(lctx) // when lctx ends, the next flush fails and the end is handled below
			continue
		case err == nil:
			failingSince = time.Time{}
			r.setErr(nil)
			backoff.Reset()
			if n == r.cfg.BatchSize {
				continue // more is waiting
			}
		}
		if lctx.Err() != nil {
			if ctx.Err() != nil {
				r.finalFlush(ctx)
			}
			return false
		}
		select {
		case <-lctx.Done():
		case <-wake:
		case <-poll.C:
		}
	}
}

// finalFlush publishes what committed before the shutdown, within flushTimeout.
func (r *Relay) finalFlush(ctx context.Context) {
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), flushTimeout)
	defer cancel()
	for {
		n, err := r.flush(fctx)
		if err != nil {
			r.log.Warn("outbox not flushed at shutdown; the messages go out at the next start", zap.Error(err))
			return
		}
		if n < r.cfg.BatchSize {
			return
		}
	}
}

// flush publishes one batch of the oldest unpublished messages and deletes from the outbox
// what every bus accepted. It always reads from the lowest unpublished id, so that a message committed late
// by a slow transaction (with a lower id than ones already published) is not skipped.
func (r *Relay) flush(ctx context.Context) (int, error) {
	rows, err := r.cfg.Outbox.Outbox(ctx, 0, r.cfg.BatchSize)
	if err != nil {
		return 0, fmt.Errorf("read outbox: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	msgs := make([]bus.Message, len(rows))
	for i, row := range rows {
		msgs[i] = bus.Message{ID: row.MessageID.String(), Topic: row.Topic, Body: row.Body, Headers: row.Headers, Time: row.CreatedAt}
	}
	k := len(msgs)
	var pubErr error
	for _, s := range r.cfg.Sinks {
		n, err := s.Publisher.Publish(ctx, msgs[:k])
		if r.cfg.Metrics != nil {
			r.cfg.Metrics.published.WithLabelValues(s.Name).Add(float64(n))
			if err != nil {
				r.cfg.Metrics.errors.WithLabelValues(s.Name).Inc()
			}
		}
		if err != nil {
			pubErr = errors.Join(pubErr, fmt.Errorf("%s: %w", s.Name, err))
		}
		k = min(k, n)
	}
	if k > 0 {
		ids := make([]int64, k)
		for i := range k {
			ids[i] = rows[i].ID
		}
		now := time.Now()
		if err := r.cfg.Outbox.DeletePublished(context.WithoutCancel(ctx), ids); err != nil {
			// Published but still in the outbox: they go out again, with the same ids.
			return 0, errors.Join(pubErr, fmt.Errorf("delete published: %w", err))
		}
		if r.cfg.Metrics != nil {
			for _, row := range rows[:k] {
				r.cfg.Metrics.delay.Observe(now.Sub(row.CreatedAt).Seconds())
			}
		}
	}
	if pubErr != nil {
		return k, pubErr
	}
	return k, nil
}

// Ready returns nil while the relay publishes without trouble, else why it is degraded and how
// much waits.
func (r *Relay) Ready(ctx context.Context) error {
	r.mu.Lock()
	err := r.lastErr
	r.mu.Unlock()
	if err == nil {
		return nil
	}
	if st, serr := r.cfg.Outbox.OutboxStats(ctx); serr == nil && st.Oldest != nil {
		return fmt.Errorf("degraded: %d messages waiting since %s: %w", st.Backlog, st.Oldest.Format(time.RFC3339), err)
	}
	return fmt.Errorf("degraded: %w", err)
}

func (r *Relay) setErr(err error) {
	r.mu.Lock()
	r.lastErr = err
	r.mu.Unlock()
}

func (r *Relay) setLeading(v bool) {
	if r.cfg.Metrics != nil {
		g := 0.0
		if v {
			g = 1
		}
		r.cfg.Metrics.leader.Set(g)
	}
}
