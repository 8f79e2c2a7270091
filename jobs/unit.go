package jobs

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// unit is one unit of work, the one way every change is made (an HTTP create, start, finish or
// reschedule; a batch of bus messages; a watchdog verdict; an automatic-reschedule decision or
// successor; expiring parked events): it reads and locks the jobs it touches through its
// storage.Tx, runs the state machine on them in memory, and collects what to write, which
// run writes with one Tx.Write before the commit.
type unit struct {
	s  *Service
	tx storage.Tx

	jobs      map[uuid.UUID]statemachine.Job // every job the unit knows, as it stands now
	absent    map[uuid.UUID]bool             // looked up, and not there
	isNew     map[uuid.UUID]bool             // created by this unit
	newOrder  []uuid.UUID
	changed   []uuid.UUID // existing jobs changed, in first-change order
	crashed   map[uuid.UUID]bool
	byRequest map[string]uuid.UUID
	parked    map[uuid.UUID][]storage.ParkedEvent // waiting for their job, oldest first

	w      storage.Writes // history, outbox, rejected (jobs and parked events come from the maps)
	events []Event        // for the commit hook
}

// run runs fn as one unit of work in one transaction: fn reads, locks and decides; run writes
// what it decided and commits; then the commit hook is told. When fn or the write fails,
// nothing was done.
func (s *Service) run(ctx context.Context, fn func(u *unit) error) error {
	var commit Commit
	err := s.backend.InTx(ctx, func(tx storage.Tx) error {
		u := &unit{s: s, tx: tx, jobs: map[uuid.UUID]statemachine.Job{}, absent: map[uuid.UUID]bool{},
			isNew: map[uuid.UUID]bool{}, crashed: map[uuid.UUID]bool{}, byRequest: map[string]uuid.UUID{},
			parked: map[uuid.UUID][]storage.ParkedEvent{}}
		if err := fn(u); err != nil {
			return err
		}
		if w := u.writes(); !w.Empty() {
			if err := tx.Write(ctx, w); err != nil {
				return err
			}
		}
		commit = Commit{Events: u.events, Rejected: u.w.Rejected}
		return nil
	})
	if err == nil && s.onCommit != nil && len(commit.Events)+len(commit.Rejected) > 0 {
		s.onCommit(commit)
	}
	return err
}

// lock returns the job with the given uuid, locked, and whether it exists.
func (u *unit) lock(ctx context.Context, id uuid.UUID) (statemachine.Job, bool, error) {
	if _, err := u.load(ctx, storage.Load{Jobs: []uuid.UUID{id}}); err != nil {
		return statemachine.Job{}, false, err
	}
	job, ok := u.jobs[id]
	return job, ok, nil
}

// load locks and reads, with one Tx.Load, what l names (the key locks sorted, before any job
// lock), leaving out the jobs and request ids the unit knows, and keeps what it found: the
// jobs, the jobs of the request ids, and the events taken from the park, which writes parks
// again unless a create applied them. It returns, for each of l.SeenIDs, whether it is new.
func (u *unit) load(ctx context.Context, l storage.Load) ([]bool, error) {
	l.Keys = sortedUnique(l.Keys)
	var jobs []uuid.UUID
	for _, id := range l.Jobs {
		if _, known := u.jobs[id]; !known && !u.absent[id] {
			jobs = append(jobs, id)
		}
	}
	l.Jobs = sortedUnique(jobs)
	var reqs []string
	for _, r := range l.RequestIDs {
		if _, known := u.byRequest[r]; !known {
			reqs = append(reqs, r)
		}
	}
	l.RequestIDs = reqs
	loaded, err := u.tx.Load(ctx, l)
	if err != nil {
		return nil, fmt.Errorf("lock and read jobs: %w", err)
	}
	for _, id := range l.Jobs {
		if job, ok := loaded.Jobs[id]; ok {
			u.jobs[id] = job
		} else {
			u.absent[id] = true
		}
	}
	for req, job := range loaded.ByRequestID {
		u.byRequest[req] = job.UUID
		if _, ok := u.jobs[job.UUID]; !ok {
			u.jobs[job.UUID] = job
		}
	}
	for _, p := range loaded.Parked {
		u.parked[p.JobUUID] = append(u.parked[p.JobUUID], p)
	}
	return loaded.Fresh, nil
}

// loadCreates adds to l what creating the jobs ns needs: their uuids' key locks (against
// parking and a concurrent create of the same uuid), the jobs that hold those uuids or request
// ids, and the events parked for those uuids.
func loadCreates(l *storage.Load, ns []statemachine.NewJob) {
	for _, n := range ns {
		l.Keys = append(l.Keys, n.UUID)
		l.Jobs = append(l.Jobs, n.UUID)
		l.RequestIDs = append(l.RequestIDs, n.RequestID)
		l.Parked = append(l.Parked, n.UUID)
	}
	l.Parked = sortedUnique(l.Parked)
}

// create makes the job n (see Service.Create), or finds the one its request id made. A create
// whose request id made a job with another uuid than it names (unless ExecDB issued that uuid:
// uuidIssued), or whose uuid a job of another request holds, is refused with a conflict
// rejection, and nothing is written. The unit must have loaded it (loadCreates).
func (u *unit) create(n statemachine.NewJob, meta statemachine.Meta, uuidIssued bool) (Result, *Rejection, error) {
	if id, ok := u.byRequest[n.RequestID]; ok {
		existing := u.jobs[id]
		if !uuidIssued && existing.UUID != n.UUID {
			return Result{}, &Rejection{Reason: storage.RejectConflict, Field: "uuid", JobUUID: &id, Kind: statemachine.EventCreate,
				Detail: fmt.Sprintf("request id %q already created job %s", n.RequestID, id)}, nil
		}
		res := Result{Job: existing, Verdict: statemachine.Duplicate, StateFrom: existing.State}
		u.record(existing.UUID, statemachine.EventCreate, res, meta, createDetail(n))
		return res, nil, nil
	}
	if _, taken := u.jobs[n.UUID]; taken {
		id := n.UUID
		return Result{}, &Rejection{Reason: storage.RejectConflict, Field: "uuid", JobUUID: &id, Kind: statemachine.EventCreate,
			Detail: "uuid already used by a job another request created"}, nil
	}
	job, msg := statemachine.Create(n, meta.ReceivedAt)
	u.add(job, n.RequestID)
	res := Result{Job: job, Verdict: statemachine.Applied, Created: true}
	u.record(job.UUID, statemachine.EventCreate, res, meta, createDetail(n))
	if err := u.queue(msg, meta.ReceivedAt); err != nil {
		return Result{}, nil, err
	}
	parked := u.parked[job.UUID]
	delete(u.parked, job.UUID)
	for _, p := range inLifecycleOrder(parked) {
		ev := truncateTimes(p.Event)
		r, rej := u.event(job.UUID, ev, p.Topic, p.Body, true)
		res.Parked = append(res.Parked, ParkedApplied{Meta: ev.Meta, Kind: ev.Kind(), Result: r, Reason: reasonOf(rej)})
	}
	res.Job = u.jobs[job.UUID]
	return res, nil, nil
}

// event runs the state machine on a job the unit knows and records what it decided: the job,
// its history entry, its outgoing message. A conflicting event from the bus is also kept as a
// rejected message (topic and body are the message's); over HTTP the caller answers it.
func (u *unit) event(id uuid.UUID, ev statemachine.Event, topic string, body []byte, fromBus bool) (Result, *Rejection) {
	job := u.jobs[id]
	d := statemachine.Apply(job, ev)
	res := Result{Job: d.Job, Verdict: d.Verdict, StateFrom: job.State}
	crashed := d.Changed && job.State != statemachine.Crashed && d.Job.State == statemachine.Crashed
	if d.Changed {
		u.change(d.Job, crashed)
	}
	var payload any = ev.End
	if ev.Start != nil {
		payload = ev.Start
	}
	u.record(id, ev.Kind(), res, ev.Meta, payload)
	if crashed && u.s.auto != nil {
		// Decided with the crash, in its transaction: no sweep has to come back for it.
		u.decideAuto(id, *u.s.auto, ev.Meta)
	}
	if d.Message != nil {
		if err := u.queue(*d.Message, ev.ReceivedAt); err != nil {
			// A random message id could not be read: as good as impossible; keep the change.
			panic(err)
		}
	}
	rej := conflictRejection(job, d.Verdict)
	if rej != nil && fromBus {
		u.w.Rejected = append(u.w.Rejected, rejected(BusMessage{Meta: ev.Meta, Topic: topic, Body: body}, *rej))
	}
	return res, rej
}

// add records a job this unit creates, made by the given request id.
func (u *unit) add(job statemachine.Job, requestID string) {
	u.jobs[job.UUID], u.isNew[job.UUID], u.byRequest[requestID] = job, true, job.UUID
	delete(u.absent, job.UUID)
	u.newOrder = append(u.newOrder, job.UUID)
}

// change records that the job is to be written back as it is now; crashed, that it became
// CRASHED in this unit (its crash key-values are written).
func (u *unit) change(job statemachine.Job, crashed bool) {
	id := job.UUID
	u.jobs[id] = job
	if crashed {
		u.crashed[id] = true
	}
	if !u.isNew[id] && !slices.Contains(u.changed, id) {
		u.changed = append(u.changed, id)
	}
}

// record appends a history entry for an event with result r, and tells the commit hook.
func (u *unit) record(id uuid.UUID, kind statemachine.EventKind, r Result, meta statemachine.Meta, payload any) {
	u.w.History = append(u.w.History, historyEntry(id, kind, r, meta, payload))
	u.events = append(u.events, Event{Meta: meta, Kind: kind, Result: r})
}

// queue queues an outgoing job-state message.
func (u *unit) queue(m statemachine.Message, at time.Time) error {
	out, err := u.s.outboxMessage(m, at)
	if err != nil {
		return err
	}
	u.w.Outbox = append(u.w.Outbox, out)
	return nil
}

// park keeps an event for a job that does not exist yet.
func (u *unit) park(p storage.ParkedEvent) {
	u.parked[p.JobUUID] = append(u.parked[p.JobUUID], p)
}

// reject keeps a bus message as rejected; a rejection that names a job the unit knows (or can
// lock) is also in that job's history, verdict rejected.
func (u *unit) reject(ctx context.Context, m BusMessage, r Rejection) error {
	u.w.Rejected = append(u.w.Rejected, rejected(m, r))
	if r.JobUUID == nil || r.Kind == "" {
		return nil
	}
	job, ok, err := u.lock(ctx, *r.JobUUID)
	if err != nil || !ok {
		return err
	}
	res := Result{Job: job, Verdict: statemachine.Rejected, StateFrom: job.State}
	detail := map[string]string{"reason": string(r.Reason), "field": r.Field, "detail": r.Detail}
	u.record(job.UUID, r.Kind, res, m.Meta, detail)
	return nil
}

// writes is what the unit leaves to write: the new jobs and the changed ones in their final
// state, history, outbox, the events parked in this unit that still wait for their job, and
// rejected messages.
func (u *unit) writes() storage.Writes {
	w := u.w
	for _, id := range u.newOrder {
		w.NewJobs = append(w.NewJobs, u.jobs[id])
	}
	for _, id := range u.changed {
		w.Changed = append(w.Changed, storage.Change{Job: u.jobs[id], Crashed: u.crashed[id]})
	}
	for _, ps := range u.parked {
		for _, p := range ps {
			p.ID = 0 // parked by this unit, or taken and not applied: parked (again)
			w.Parked = append(w.Parked, p)
		}
	}
	slices.SortStableFunc(w.Parked, func(a, b storage.ParkedEvent) int { return a.ParkedAt.Compare(b.ParkedAt) })
	return w
}

// inLifecycleOrder orders the events that waited for a job: starts before ends, each kind in
// arrival order. What only the order of arrival mixed up is applied in the order it happened,
// so the job's history reads start, then end, whichever came first.
func inLifecycleOrder(parked []storage.ParkedEvent) []storage.ParkedEvent {
	sort.SliceStable(parked, func(i, j int) bool { return parked[i].Event.Start != nil && parked[j].Event.Start == nil })
	return parked
}

func sortedUnique(ids []uuid.UUID) []uuid.UUID {
	ids = slices.Clone(ids)
	slices.SortFunc(ids, func(a, b uuid.UUID) int { return bytes.Compare(a[:], b[:]) })
	return slices.Compact(ids)
}

// errNoWork is what a sweep's work returns for a job it re-checked under its lock and left
// alone; nothing is written.
var errNoWork = errors.New("nothing to do")
