package jobstest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// pruneTests cover retention (CONTRACT section 7, v1.1).
var pruneTests = []test{
	{"PruneKeepsWhatIsStillNeeded", testPrune},
}

func testPrune(t *testing.T, open env) {
	s, b, c := clockedStore(t, open)
	ctx := context.Background()
	day := 24 * time.Hour
	job := func() statemachine.NewJob {
		n := newJob()
		n.Data = statemachine.KeyVals{"koji_tag": {"f45"}}
		return n
	}
	// Old jobs, created at t0.
	finished := create(t, s, job())
	apply(t, s, finished.UUID, finish())
	declined := crashedJob(t, s, job(), false) // the rescheduler declines it below
	retried := crashedJob(t, s, job(), false)
	done := reschedule(t, s, retried.UUID, false).Successor // finishes below: retried may go
	apply(t, s, done.UUID, finish())
	pendingParent := crashedJob(t, s, job(), false)
	pending := reschedule(t, s, pendingParent.UUID, false).Successor // stays SCHEDULED
	unpublished := create(t, s, job())
	apply(t, s, unpublished.UUID, finish())
	running := create(t, s, job())
	apply(t, s, running.UUID, start(nil))
	if _, err := s.DecideAutoReschedules(ctx, statemachine.AutoPolicy{}); err != nil {
		t.Fatal(err)
	}
	undecided := crashedJob(t, s, job(), false) // crashes after the decisions
	// Everything was published but the messages about one job.
	var published []int64
	for _, m := range outbox(t, b) {
		if m.JobUUID != unpublished.UUID {
			published = append(published, m.ID)
		}
	}
	if err := b.DeletePublished(ctx, published); err != nil {
		t.Fatal(err)
	}
	rejectAt := func(id string) {
		applyBus(t, s, jobs.BusMessage{Meta: busMeta(id), Topic: "t", Body: []byte("x"),
			Reject: &jobs.Rejection{Reason: storage.RejectUndecodable}})
	}
	rejectAt("old-rejected")
	c.Advance(80 * day)
	recent := create(t, s, job()) // 20 days old at the prune
	apply(t, s, recent.UUID, finish())
	rejectAt("recent-rejected")
	if err := b.DeletePublished(ctx, idsOf(outbox(t, b), unpublished.UUID)); err != nil {
		t.Fatal(err)
	}
	c.Advance(20 * day)

	r := jobs.Retention{Finished: 90 * day, Crashed: 90 * day, Rejected: 30 * day}
	dry, err := s.Prune(ctx, r, true, 0)
	if err != nil {
		t.Fatal(err)
	}
	wantFinished := storage.PruneCount{Prunable: 2, OutboxPending: 1}                         // finished, done; unpublished kept
	wantCrashed := storage.PruneCount{Prunable: 2, SuccessorPending: 1, ReschedulePending: 1} // declined, retried; pendingParent, undecided kept
	if dry.Jobs[statemachine.Finished] != wantFinished || dry.Jobs[statemachine.Crashed] != wantCrashed || dry.Rejected != 1 || !dry.DryRun {
		t.Errorf("dry run: got %s\nwant FINISHED %+v CRASHED %+v rejected 1", js(dry), wantFinished, wantCrashed)
	}
	if _, err := b.Job(ctx, finished.UUID); err != nil {
		t.Fatalf("the dry run removed a job: %v", err)
	}

	res, err := s.Prune(ctx, r, false, 0)
	if err != nil {
		t.Fatal(err)
	}
	if res.Jobs[statemachine.Finished].Prunable != 2 || res.Jobs[statemachine.Crashed].Prunable != 2 || res.Rejected != 1 {
		t.Errorf("prune: got %s", js(res))
	}
	gone := []uuid.UUID{finished.UUID, done.UUID, declined.UUID, retried.UUID}
	kept := []uuid.UUID{pendingParent.UUID, pending.UUID, undecided.UUID, unpublished.UUID, running.UUID, recent.UUID}
	for _, id := range gone {
		if _, err := b.Job(ctx, id); !errors.Is(err, storage.ErrNotFound) {
			t.Errorf("job %s: got %v, want it pruned", id, err)
		}
		if h, err := b.History(ctx, id); err != nil || len(h) != 0 {
			t.Errorf("job %s: its history stayed: %d entries, %v", id, len(h), err)
		}
	}
	for _, id := range kept {
		if _, err := b.Job(ctx, id); err != nil {
			t.Errorf("job %s: got %v, want it kept", id, err)
		}
	}
	// The data of pruned jobs went with them: a search by it finds only the kept jobs.
	f := parseFilter(t, s, "data.koji_tag=f45")
	found, _, err := b.Search(ctx, f, storage.Page{Limit: 100})
	if err != nil || len(found) != len(kept) {
		t.Errorf("search by data after the prune: got %d jobs (%v), want %d", len(found), err, len(kept))
	}
	if rs := rejectedList(t, b, storage.RejectedQuery{}); len(rs) != 1 || rs[0].MessageID != "recent-rejected" {
		t.Errorf("rejected after the prune: got %s", js(rs))
	}
	// Again: nothing more to do.
	if again, err := s.Prune(ctx, r, false, 0); err != nil || again.Jobs[statemachine.Finished].Prunable != 0 || again.Rejected != 0 {
		t.Errorf("second prune: got %s, %v", js(again), err)
	}
}

func idsOf(msgs []storage.OutboxMessage, except uuid.UUID) []int64 {
	var ids []int64
	for _, m := range msgs {
		if m.JobUUID != except {
			ids = append(ids, m.ID)
		}
	}
	return ids
}
