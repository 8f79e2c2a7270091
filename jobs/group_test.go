package jobs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// gatedBackend holds every transaction at its start while the gate is shut, so that the
// writes a test submits meanwhile queue in their lane; and fails a Write that stores a job
// whose item is "poison", as a database refusing a value would.
type gatedBackend struct {
	storage.Backend
	mu   sync.Mutex
	shut chan struct{} // nil: open
	held chan struct{} // receives a value when a transaction waits at the gate
}

func (b *gatedBackend) InTx(ctx context.Context, fn func(storage.Tx) error) error {
	b.mu.Lock()
	gate := b.shut
	b.mu.Unlock()
	if gate != nil {
		b.held <- struct{}{}
		<-gate
	}
	return b.Backend.InTx(ctx, func(tx storage.Tx) error { return fn(poisonTx{tx}) })
}

type poisonTx struct{ storage.Tx }

func (t poisonTx) Write(ctx context.Context, w storage.Writes) error {
	for _, j := range w.NewJobs {
		if j.Item == "poison" {
			return fmt.Errorf("item refused: %w", storage.ErrInvalidData)
		}
	}
	return t.Tx.Write(ctx, w)
}

// groupFixture is a service with one lane over a gated SQLite backend, and a record of the
// units it committed.
type groupFixture struct {
	s       *Service
	b       *gatedBackend
	mu      sync.Mutex
	commits []Commit
}

func newGroupFixture(t *testing.T) *groupFixture {
	f := &groupFixture{b: &gatedBackend{Backend: testenv.SQLite(t, ""), held: make(chan struct{}, 100)}}
	f.s = New(f.b, Config{TopicPrefix: "org.example", GroupCommit: GroupCommit{Lanes: 1, MaxBatch: 64},
		OnCommit: func(c Commit) { f.mu.Lock(); f.commits = append(f.commits, c); f.mu.Unlock() }})
	t.Cleanup(f.s.Close)
	return f
}

// hold shuts the gate and submits a first write, which the lane takes and holds at the gate;
// what is submitted until release queues behind it.
func (f *groupFixture) hold(t *testing.T) (release func()) {
	t.Helper()
	gate := make(chan struct{})
	f.b.mu.Lock()
	f.b.shut = gate
	f.b.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		_, err := f.s.Create(context.Background(), newJobN("first"), httpMeta())
		done <- err
	}()
	<-f.b.held
	return func() {
		f.b.mu.Lock()
		f.b.shut = nil
		f.b.mu.Unlock()
		close(gate)
		if err := <-done; err != nil {
			t.Errorf("first write: %v", err)
		}
	}
}

// queued waits until n writes wait in the lane.
func (f *groupFixture) queued(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for len(f.s.group.lanes[0]) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d writes queued, want %d", len(f.s.group.lanes[0]), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func newJobN(item string) statemachine.NewJob {
	return statemachine.NewJob{TaskName: "rpmlint", Item: item, ItemType: "koji_build"}
}

func httpMeta() statemachine.Meta {
	return statemachine.Meta{Origin: statemachine.OriginHTTP, MessageID: uuid.NewString()}
}

// TestGroupCommitSharesOneUnit: writes that arrive while a unit commits are committed together
// in the next unit, each answered with its own result; a lone write waits for nobody.
func TestGroupCommitSharesOneUnit(t *testing.T) {
	f := newGroupFixture(t)
	ctx := context.Background()
	if _, err := f.s.Create(ctx, newJobN("alone"), httpMeta()); err != nil {
		t.Fatal(err)
	}
	release := f.hold(t)
	const n = 20
	results := make([]Result, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i], errs[i] = f.s.Create(ctx, newJobN(fmt.Sprint("pkg-", i)), httpMeta())
		}()
	}
	f.queued(t, n)
	release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil || !results[i].Created || results[i].Job.Item != fmt.Sprint("pkg-", i) {
			t.Errorf("write %d: got %+v, %v; want its own job created", i, results[i].Job, errs[i])
		}
		if got, err := f.s.Job(ctx, results[i].Job.UUID); err != nil || got.Item != fmt.Sprint("pkg-", i) {
			t.Errorf("write %d: stored %+v, %v", i, got, err)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.commits) != 3 || len(f.commits[0].Events) != 1 || len(f.commits[1].Events) != 1 || len(f.commits[2].Events) != n {
		sizes := []int{}
		for _, c := range f.commits {
			sizes = append(sizes, len(c.Events))
		}
		t.Errorf("units committed, by events: %v; want [1 1 %d]: the lone write, the held one, then all that waited", sizes, n)
	}
}

// TestGroupCommitOutcomesAreTheirOwn: in one unit, writes refused on their own (an unknown job,
// a taken request id, a reschedule of a job that did not crash) get their answers and the
// others commit; a write the database refuses fails the unit, which is then retried write by
// write, so that it alone fails.
func TestGroupCommitOutcomesAreTheirOwn(t *testing.T) {
	f := newGroupFixture(t)
	ctx := context.Background()
	running, err := f.s.Create(ctx, newJobN("running"), httpMeta())
	if err != nil {
		t.Fatal(err)
	}
	taken := newJobN("taken")
	taken.RequestID = "req-taken"
	if _, err := f.s.Create(ctx, taken, httpMeta()); err != nil {
		t.Fatal(err)
	}

	for _, poison := range []bool{false, true} {
		t.Run(fmt.Sprint("poison=", poison), func(t *testing.T) {
			release := f.hold(t)
			type outcome struct {
				name string
				err  error
				res  Result
			}
			var (
				mu  sync.Mutex
				got []outcome
				wg  sync.WaitGroup
			)
			do := func(name string, fn func() (Result, error)) {
				wg.Add(1)
				go func() {
					defer wg.Done()
					res, err := fn()
					mu.Lock()
					got = append(got, outcome{name, err, res})
					mu.Unlock()
				}()
			}
			good := newJobN("good")
			do("good", func() (Result, error) { return f.s.Create(ctx, good, httpMeta()) })
			do("unknown", func() (Result, error) {
				return f.s.Apply(ctx, uuid.New(), statemachine.Event{Meta: httpMeta(), Start: &statemachine.Start{}})
			})
			conflict := newJobN("taken")
			conflict.UUID, conflict.RequestID = uuid.New(), "req-taken"
			do("conflict", func() (Result, error) { return f.s.Create(ctx, conflict, httpMeta()) })
			do("refused", func() (Result, error) {
				_, err := f.s.Reschedule(ctx, running.Job.UUID, RescheduleOptions{}, httpMeta())
				return Result{}, err
			})
			do("start", func() (Result, error) {
				return f.s.Apply(ctx, running.Job.UUID, statemachine.Event{Meta: httpMeta(), Start: &statemachine.Start{}})
			})
			n := 5
			if poison {
				do("poison", func() (Result, error) { return f.s.Create(ctx, newJobN("poison"), httpMeta()) })
				n++
			}
			f.queued(t, n)
			release()
			wg.Wait()
			var refused *RefusedError
			for _, o := range got {
				switch o.name {
				case "good":
					if o.err != nil || !o.res.Created {
						t.Errorf("good create: got %v", o.err)
					}
				case "unknown":
					if !errors.Is(o.err, storage.ErrNotFound) {
						t.Errorf("start of an unknown job: got %v, want ErrNotFound", o.err)
					}
				case "conflict":
					if !errors.Is(o.err, storage.ErrConflict) {
						t.Errorf("create with a taken request id: got %v, want ErrConflict", o.err)
					}
				case "refused":
					if !errors.As(o.err, &refused) || refused.Reason != statemachine.SkipNotCrashed {
						t.Errorf("reschedule of a job that did not crash: got %v, want refused not_crashed", o.err)
					}
				case "start":
					if o.err != nil || o.res.Job.State != statemachine.Running {
						t.Errorf("start: got %+v, %v; want RUNNING (a duplicate the second time)", o.res.Job.State, o.err)
					}
				case "poison":
					if !errors.Is(o.err, storage.ErrInvalidData) {
						t.Errorf("poison: got %v, want ErrInvalidData", o.err)
					}
				}
			}
			if found, _, err := f.s.Search(ctx, storage.Filter{Conditions: []storage.Condition{{Field: storage.FieldItem,
				Match: storage.Match{Values: []string{"poison"}}}}}, storage.Page{}); err != nil || len(found) != 0 {
				t.Errorf("poison stored: %d jobs (%v)", len(found), err)
			}
		})
	}
}

// TestGroupCommitKeepsOrderPerJob: one job's writes queued in one lane are applied in the order
// they arrived, within one unit: a start queued before an end is applied before it.
func TestGroupCommitKeepsOrderPerJob(t *testing.T) {
	f := newGroupFixture(t)
	ctx := context.Background()
	res, err := f.s.Create(ctx, newJobN("ordered"), httpMeta())
	if err != nil {
		t.Fatal(err)
	}
	id := res.Job.UUID
	release := f.hold(t)
	var wg sync.WaitGroup
	var start, end Result
	var startErr, endErr error
	wg.Add(2)
	go func() {
		defer wg.Done()
		start, startErr = f.s.Apply(ctx, id, statemachine.Event{Meta: httpMeta(), Start: &statemachine.Start{}})
	}()
	f.queued(t, 1)
	go func() {
		defer wg.Done()
		end, endErr = f.s.Apply(ctx, id, statemachine.Event{Meta: httpMeta(), End: &statemachine.End{State: statemachine.Finished}})
	}()
	f.queued(t, 2)
	release()
	wg.Wait()
	if startErr != nil || endErr != nil || start.Verdict != statemachine.Applied || start.StateFrom != statemachine.Scheduled ||
		end.Verdict != statemachine.Applied || end.StateFrom != statemachine.Running || end.Job.State != statemachine.Finished {
		t.Errorf("got start %s %s→%s (%v), end %s %s→%s (%v); want the start applied first, then the end",
			start.Verdict, start.StateFrom, start.Job.State, startErr, end.Verdict, end.StateFrom, end.Job.State, endErr)
	}
}

// TestGroupCommitClose: Close answers what waits and refuses what comes after.
func TestGroupCommitClose(t *testing.T) {
	f := newGroupFixture(t)
	f.s.Close()
	if _, err := f.s.Create(context.Background(), newJobN("late"), httpMeta()); !errors.Is(err, ErrClosed) {
		t.Errorf("create after Close: got %v, want ErrClosed", err)
	}
}
