package consumer

import (
	"context"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"go.uber.org/zap"
)

// Sweeper defaults.
const (
	DefaultParkTTL       = time.Hour
	DefaultSeenRetention = 7 * 24 * time.Hour
	sweepBatch           = 500
)

// SweeperConfig configures a Sweeper.
type SweeperConfig struct {
	// Store holds the parked events.
	Store *jobs.Service
	// ParkTTL is how long an event waits for its job; 0 means DefaultParkTTL.
	ParkTTL time.Duration
	// Interval is the time between sweeps; 0 means ParkTTL/10, between 1s and 1m.
	Interval time.Duration
	// SeenRetention is how long message ids are remembered for dedup; 0 means
	// DefaultSeenRetention, and never less than twice ParkTTL.
	SeenRetention time.Duration
	// Log receives expirations and problems; nil means none.
	Log *zap.Logger
	// Metrics count expired events as rejected (reason unknown_job).
	Metrics *Metrics
}

// Sweeper rejects, as unknown_job, events that waited longer than the park TTL for their job,
// and forgets old message ids. Several processes may sweep one database at once.
type Sweeper struct {
	cfg SweeperConfig
	log *zap.Logger
}

// NewSweeper returns a sweeper.
func NewSweeper(cfg SweeperConfig) *Sweeper {
	if cfg.ParkTTL <= 0 {
		cfg.ParkTTL = DefaultParkTTL
	}
	if cfg.Interval <= 0 {
		cfg.Interval = min(max(cfg.ParkTTL/10, time.Second), time.Minute)
	}
	if cfg.SeenRetention <= 0 {
		cfg.SeenRetention = DefaultSeenRetention
	}
	cfg.SeenRetention = max(cfg.SeenRetention, 2*cfg.ParkTTL)
	s := &Sweeper{cfg: cfg, log: cfg.Log}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	return s
}

// Run sweeps every interval until ctx ends.
func (s *Sweeper) Run(ctx context.Context) {
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		s.Sweep(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sweep expires what is due once.
func (s *Sweeper) Sweep(ctx context.Context) {
	for ctx.Err() == nil {
		expired, err := s.cfg.Store.ExpireParked(ctx, s.cfg.ParkTTL, sweepBatch)
		if err != nil {
			if ctx.Err() == nil {
				s.log.Warn("expiring parked events failed", zap.Error(err))
			}
			return
		}
		for _, r := range expired {
			if s.cfg.Metrics != nil {
				s.cfg.Metrics.rejected.WithLabelValues(string(r.Transport), string(r.Reason)).Inc()
				s.cfg.Metrics.outcomes.WithLabelValues(string(r.Transport), "", string(jobs.BusRejected)).Inc()
			}
			var job string
			if r.JobUUID != nil {
				job = r.JobUUID.String()
			}
			s.log.Warn("bus message rejected", zap.String("message_id", r.MessageID), zap.String("topic", r.Topic),
				zap.String("transport", string(r.Transport)), zap.String("job_uuid", job), zap.String("reason", string(r.Reason)),
				zap.String("detail", r.Detail))
		}
		if len(expired) < sweepBatch {
			break
		}
	}
	if ctx.Err() != nil {
		return
	}
	if n, err := s.cfg.Store.PruneSeen(ctx, time.Now().Add(-s.cfg.SeenRetention)); err != nil {
		if ctx.Err() == nil {
			s.log.Warn("pruning seen message ids failed", zap.Error(err))
		}
	} else if n > 0 {
		s.log.Debug("pruned seen message ids", zap.Int64("count", n))
	}
}
