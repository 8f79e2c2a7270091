package publisher

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"
)

// DefaultRetention is how long a process with no bus to publish to leaves job-state messages
// in the outbox for one that has.
const DefaultRetention = 24 * time.Hour

// ExpireConfig configures Expire.
type ExpireConfig struct {
	// Outbox is the database's outbox.
	Outbox Outbox
	// Retention is how old a message must be to be dropped; 0 means DefaultRetention.
	Retention time.Duration
	// Now returns the current time; nil means time.Now.
	Now func() time.Time
	// Log receives problems; nil means none.
	Log *zap.Logger
}

// Expire is what a process with no bus to publish to runs instead of a Relay. It does not
// relay: several serve processes may share a PostgreSQL database, and one that has a bus
// publishes the messages. It only drops messages older than the retention, which no process
// published in that time, so that the outbox of a deployment without any bus stays bounded; it
// does so only while it can take the relay's lead (Outbox.Lead), so never while a relay of
// another process waits for its broker. It runs until ctx ends.
func Expire(ctx context.Context, cfg ExpireConfig) {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.Log == nil {
		cfg.Log = zap.NewNop()
	}
	every := min(max(cfg.Retention/24, time.Second), 10*time.Minute)
	tick := time.NewTicker(every)
	defer tick.Stop()
	expire := func(ctx context.Context) {
		if n, err := ExpireOnce(ctx, cfg); err != nil {
			cfg.Log.Warn("dropping old outbox messages failed", zap.Error(err))
		} else if n > 0 {
			cfg.Log.Info("dropped outbox messages no bus took", zap.Int("messages", n), zap.Duration("retention", cfg.Retention))
		}
	}
	for {
		// Only while no process relays: a relay that waits for its broker keeps the lead, and
		// what it waits to send is not dropped. The lead is given back at once.
		err := cfg.Outbox.Lead(ctx, func(lctx context.Context, _ <-chan struct{}) error {
			expire(lctx)
			return nil
		})
		if err != nil && ctx.Err() == nil {
			cfg.Log.Warn("outbox expiry could not take the relay's lock", zap.Error(err))
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// ExpireOnce drops the outbox messages older than the retention and returns how many.
func ExpireOnce(ctx context.Context, cfg ExpireConfig) (int, error) {
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	now := time.Now
	if cfg.Now != nil {
		now = cfg.Now
	}
	cutoff := now().Add(-cfg.Retention)
	dropped := 0
	for {
		rows, err := cfg.Outbox.Outbox(ctx, 0, DefaultBatchSize)
		if err != nil {
			return dropped, fmt.Errorf("read outbox: %w", err)
		}
		var ids []int64
		for _, row := range rows {
			if row.CreatedAt.Before(cutoff) {
				ids = append(ids, row.ID)
			}
		}
		if len(ids) == 0 {
			return dropped, nil
		}
		if err := cfg.Outbox.DeletePublished(ctx, ids); err != nil {
			return dropped, fmt.Errorf("drop old outbox messages: %w", err)
		}
		dropped += len(ids)
		if len(rows) < DefaultBatchSize {
			return dropped, nil
		}
	}
}
