package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// Group commit: the HTTP writes (Create, Apply, Reschedule) of many clients share units of
// work. Each write goes to a lane chosen by its job's uuid; a lane runs one unit at a time, and
// while it commits the writes that arrive queue; its next unit takes every write waiting (up to
// GroupCommit.MaxBatch), runs them one after the other in memory, writes them with one Write
// and commits once, then answers each write with its own outcome. An idle lane takes a write at
// once, so a lone write waits for nobody. A write refused on its own (unknown job, a conflict,
// a reschedule refused) is answered so and leaves the others be; a unit that fails as a whole
// (a database error, a deadlock, a value the database refuses) is retried write by write, each
// alone, so one bad write fails only itself. One job's writes go to one lane, in order of
// arrival; a crash loses nothing that was answered, since answers come after the commit.

// GroupCommit configures group commit. The zero value is off: every write is a unit of its own.
type GroupCommit struct {
	// Lanes is how many units commit at once: 1 for a database with one writer (SQLite),
	// a few for PostgreSQL, within its connection pool. 0 turns group commit off.
	Lanes int
	// MaxBatch bounds the writes of one unit; 0 means DefaultMaxBatch.
	MaxBatch int
}

// DefaultMaxBatch is GroupCommit.MaxBatch's default.
const DefaultMaxBatch = 128

// unitTimeout bounds a grouped unit: it serves many clients, so no one client's context may
// end it.
const unitTimeout = time.Minute

// ErrClosed is a write submitted after Close.
var ErrClosed = errors.New("job service closed")

// write is one write request: do runs it in a unit whose keys (key, and the create's uuid)
// are locked and jobs read. do returns nil, an outcome of the write alone (see isOutcome) having
// written nothing, or an error that fails the unit.
type write struct {
	key    uuid.UUID            // the job it is about; its lane
	create *statemachine.NewJob // a create: its uuid is key-locked, its request id read
	do     func(ctx context.Context, u *unit) error
}

// pending is a write waiting in a lane, and where its outcome goes.
type pending struct {
	ctx  context.Context
	w    write
	done chan error
}

// committer runs the lanes.
type committer struct {
	s        *Service
	lanes    []chan *pending
	maxBatch int
	closed   chan struct{} // closed by close: the lanes stop
	stopped  chan struct{} // closed once every lane stopped
	wg       sync.WaitGroup
	once     sync.Once
}

func newCommitter(s *Service, cfg GroupCommit) *committer {
	c := &committer{s: s, lanes: make([]chan *pending, cfg.Lanes), maxBatch: cfg.MaxBatch,
		closed: make(chan struct{}), stopped: make(chan struct{})}
	if c.maxBatch <= 0 {
		c.maxBatch = DefaultMaxBatch
	}
	for i := range c.lanes {
		c.lanes[i] = make(chan *pending, c.maxBatch)
		c.wg.Add(1)
		go c.run(c.lanes[i])
	}
	return c
}

// submit runs w, grouped with others when group commit is on, and returns its outcome.
func (s *Service) submit(ctx context.Context, w write) error {
	if s.group == nil {
		return s.submitAlone(ctx, w)
	}
	return s.group.submit(ctx, w)
}

func (c *committer) submit(ctx context.Context, w write) error {
	p := &pending{ctx: ctx, w: w, done: make(chan error, 1)}
	lane := c.lanes[int(w.key[15])%len(c.lanes)]
	select {
	case lane <- p:
	case <-c.closed:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
	// Once queued, the write's outcome is awaited even if ctx ends: it may be committing.
	select {
	case err := <-p.done:
		return err
	case <-c.stopped:
		select {
		case err := <-p.done:
			return err
		default:
			return ErrClosed // queued after its lane stopped: never begun
		}
	}
}

// run is a lane: it takes a write, and every write waiting behind it, and commits them.
func (c *committer) run(lane chan *pending) {
	defer c.wg.Done()
	for {
		var first *pending
		select {
		case first = <-lane:
		case <-c.closed:
			// Answer what is still queued, then stop.
			for {
				select {
				case p := <-lane:
					p.done <- ErrClosed
				default:
					return
				}
			}
		}
		batch := []*pending{first}
	more:
		for len(batch) < c.maxBatch {
			select {
			case p := <-lane:
				batch = append(batch, p)
			default:
				break more
			}
		}
		c.commit(batch)
	}
}

// commit runs the writes of batch as one unit, or each alone when that fails, and answers them.
func (c *committer) commit(batch []*pending) {
	live := batch[:0]
	for _, p := range batch {
		if err := p.ctx.Err(); err != nil {
			p.done <- err // gone before it began: nothing was done
			continue
		}
		live = append(live, p)
	}
	if len(live) == 0 {
		return
	}
	if len(live) == 1 {
		p := live[0]
		p.done <- c.s.submitAlone(p.ctx, p.w)
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(live[0].ctx), unitTimeout)
	defer cancel()
	ws := make([]write, len(live))
	for i, p := range live {
		ws[i] = p.w
	}
	outcomes := make([]error, len(live))
	err := c.s.run(ctx, func(u *unit) error {
		clear(outcomes)
		if err := u.prepare(ctx, ws); err != nil {
			return err
		}
		for i, w := range ws {
			err := w.do(ctx, u)
			if err != nil && !isOutcome(err) {
				return fmt.Errorf("%d grouped writes: %w", len(ws), err)
			}
			outcomes[i] = err
		}
		return nil
	})
	if err == nil {
		for i, p := range live {
			p.done <- outcomes[i]
		}
		return
	}
	// The unit failed as a whole: each write alone, so that only what fails by itself fails.
	for _, p := range live {
		p.done <- c.s.submitAlone(p.ctx, p.w)
	}
}

// submitAlone runs one write as a unit of its own.
func (s *Service) submitAlone(ctx context.Context, w write) error {
	return s.run(ctx, func(u *unit) error {
		if err := u.prepare(ctx, []write{w}); err != nil {
			return err
		}
		return w.do(ctx, u)
	})
}

// isOutcome reports whether err is the answer to one write that wrote nothing (an unknown job,
// a create or reschedule refused), as opposed to a failure of the unit.
func isOutcome(err error) bool {
	var refused *createRefused
	var rescheduleRefused *RefusedError
	var taken *requestIDTakenError
	return errors.Is(err, storage.ErrNotFound) || errors.As(err, &refused) ||
		errors.As(err, &rescheduleRefused) || errors.As(err, &taken)
}

// prepare locks and reads, with one Tx.Load, what the writes need: the key locks of the uuids
// the creates name, every job the writes name, and for the creates the jobs of their request
// ids and the events parked for them.
func (u *unit) prepare(ctx context.Context, ws []write) error {
	var l storage.Load
	var creates []statemachine.NewJob
	for _, w := range ws {
		l.Jobs = append(l.Jobs, w.key)
		if w.create != nil {
			creates = append(creates, *w.create)
		}
	}
	loadCreates(&l, creates)
	_, err := u.load(ctx, l)
	return err
}

// close stops the lanes; writes still queued are answered ErrClosed.
func (c *committer) close() {
	c.once.Do(func() {
		close(c.closed)
		c.wg.Wait()
		close(c.stopped)
	})
}
