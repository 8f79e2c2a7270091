package bus

import (
	"context"
	"math/rand/v2"
	"time"
)

// Backoff spaces out reconnection attempts: each wait doubles from Min up to Max, with jitter,
// and Reset starts over after a success. The zero value waits 100ms to 30s. A Backoff is used
// by one goroutine.
type Backoff struct {
	Min, Max time.Duration
	attempt  int
}

// Wait sleeps before the next attempt; false when ctx ended first.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Next returns the next wait and counts the attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = 100 * time.Millisecond
	}
	if hi <= 0 {
		hi = 30 * time.Second
	}
	d := lo << min(b.attempt, 20)
	if d > hi || d <= 0 {
		d = hi
	}
	b.attempt++
	// Full jitter on the upper half: between d/2 and d.
	return d/2 + rand.N(d/2+1)
}

// Reset starts over from Min.
func (b *Backoff) Reset() { b.attempt = 0 }
