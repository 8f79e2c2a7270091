package jobs_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// TestCopy moves a database with every kind of row from one backend to the other and finds it
// whole on the other side; a target that is not empty is refused.
func TestCopy(t *testing.T) {
	backends := map[string]func(t *testing.T) storage.Backend{
		"sqlite":   func(t *testing.T) storage.Backend { return testenv.SQLite(t, "") },
		"postgres": func(t *testing.T) storage.Backend { return testenv.Postgres(t, "") },
	}
	for _, pair := range [][2]string{{"sqlite", "postgres"}, {"postgres", "sqlite"}} {
		t.Run(pair[0]+" to "+pair[1], func(t *testing.T) {
			from, to := backends[pair[0]](t), backends[pair[1]](t)
			seedForCopy(t, from)
			var reports int
			res, err := jobs.Copy(context.Background(), from, to, func(jobs.CopyResult) { reports++ })
			if err != nil {
				t.Fatal(err)
			}
			if res.Jobs != 6 || res.Parked != 1 || res.Rejected != 2 || res.Outbox == 0 || res.History == 0 || reports == 0 {
				t.Errorf("copied %+v (%d reports)", res, reports)
			}
			compare(t, from, to)
			if _, err := jobs.Copy(context.Background(), from, to, nil); !errors.Is(err, jobs.ErrNotEmpty) {
				t.Errorf("copy into a database that is not empty: got %v, want ErrNotEmpty", err)
			}
		})
	}
}

// seedForCopy fills b with jobs in every state, rescheduled chains, automatic-reschedule marks,
// unpublished messages, a parked event and rejected messages.
func seedForCopy(t *testing.T, b storage.Backend) {
	t.Helper()
	ctx := context.Background()
	s := jobs.New(b, jobs.Config{TopicPrefix: "org.example"})
	meta := statemachine.Meta{Origin: statemachine.OriginHTTP, MessageID: "m", Actor: "tester"}
	newJob := func(i int) statemachine.Job {
		res, err := s.Create(ctx, statemachine.NewJob{TaskName: "rpmlint", Item: fmt.Sprintf("foo-%d-1.fc45", i), ItemType: "koji_build",
			Data: statemachine.KeyVals{"koji_tag": {"f45", "f45-updates"}}, Source: &statemachine.Source{MsgID: "koji-1", Topic: "buildsys"}}, meta)
		if err != nil {
			t.Fatal(err)
		}
		return res.Job
	}
	apply := func(id uuid.UUID, ev statemachine.Event) {
		ev.Meta = meta
		if _, err := s.Apply(ctx, id, ev); err != nil {
			t.Fatal(err)
		}
	}
	newJob(0) // SCHEDULED
	running := newJob(1)
	apply(running.UUID, statemachine.Event{Start: &statemachine.Start{Runner: &statemachine.Runner{Name: "buildbot", JobID: "all/1"}}})
	finished := newJob(2)
	apply(finished.UUID, statemachine.Event{End: &statemachine.End{State: statemachine.Finished, LogURL: "http://log"}})
	crashed := newJob(3)
	apply(crashed.UUID, statemachine.Event{End: &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{
		Notify: statemachine.NotifyTaskotron, Cause: statemachine.CauseMinion, KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}}}}})
	if _, err := s.Reschedule(ctx, crashed.UUID, jobs.RescheduleOptions{Reason: "flaky"}, meta); err != nil {
		t.Fatal(err)
	}
	planned := newJob(4)
	apply(planned.UUID, statemachine.Event{End: &statemachine.End{State: statemachine.Crashed}})
	if _, err := s.DecideAutoReschedules(ctx, statemachine.AutoPolicy{Limit: 3, FirstDelay: time.Hour}); err != nil {
		t.Fatal(err)
	}
	parkedFor := uuid.New()
	if _, err := s.ApplyBus(ctx, []jobs.BusMessage{
		{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: "early-end"}, Topic: "org.example.taskotron.runtask.end",
			Body: []byte(`{}`), JobUUID: parkedFor, Event: &statemachine.Event{End: &statemachine.End{State: statemachine.Finished}}},
		{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: "bad-1"}, Topic: "t", Body: []byte{0xff},
			Reject: &jobs.Rejection{Reason: storage.RejectUndecodable, Detail: "not JSON"}},
		{Meta: statemachine.Meta{Origin: statemachine.OriginFedmsg, MessageID: "bad-2"}, Topic: "t", Body: []byte(`{}`),
			Reject: &jobs.Rejection{Reason: storage.RejectSchema, Field: "uuid", Detail: "required", JobUUID: &finished.UUID, Kind: statemachine.EventEnd}},
	}); err != nil {
		t.Fatal(err)
	}
}

// compare fails unless to holds what from holds (row ids aside).
func compare(t *testing.T, from, to storage.Backend) {
	t.Helper()
	ctx := context.Background()
	ids, err := from.ExportJobs(ctx, uuid.Nil, 1000)
	if err != nil {
		t.Fatal(err)
	}
	copied, err := to.ExportJobs(ctx, uuid.Nil, 1000)
	if err != nil || !reflect.DeepEqual(copied, ids) {
		t.Fatalf("jobs: got %v, want %v (%v)", copied, ids, err)
	}
	for _, id := range ids {
		a, _ := from.Job(ctx, id)
		b, err := to.Job(ctx, id)
		if err != nil || !reflect.DeepEqual(b, a) {
			t.Errorf("job %s: got %+v (%v)\nwant %+v", id, b, err, a)
		}
		ha, _ := from.History(ctx, id)
		hb, _ := to.History(ctx, id)
		if len(ha) != len(hb) {
			t.Errorf("history of %s: got %d entries, want %d", id, len(hb), len(ha))
			continue
		}
		for i := range ha {
			ha[i].ID, hb[i].ID = 0, 0
			if string(ha[i].Detail) != "" && string(hb[i].Detail) != "" {
				ha[i].Detail, hb[i].Detail = nil, nil // jsonb reorders keys; the rest must match
			}
			if !reflect.DeepEqual(hb[i], ha[i]) {
				t.Errorf("history of %s, entry %d: got %+v, want %+v", id, i, hb[i], ha[i])
			}
		}
	}
	oa, _ := from.Outbox(ctx, 0, 1000)
	ob, _ := to.Outbox(ctx, 0, 1000)
	if len(oa) != len(ob) {
		t.Fatalf("outbox: got %d, want %d", len(ob), len(oa))
	}
	for i := range oa {
		if oa[i].MessageID != ob[i].MessageID || oa[i].Topic != ob[i].Topic || !reflect.DeepEqual(oa[i].Headers, ob[i].Headers) {
			t.Errorf("outbox message %d: got %+v, want %+v", i, ob[i], oa[i])
		}
	}
	pa, _ := from.ExportParked(ctx, 0, 10)
	pb, _ := to.ExportParked(ctx, 0, 10)
	if len(pa) != 1 || len(pb) != 1 || pb[0].JobUUID != pa[0].JobUUID || pb[0].Event.MessageID != "early-end" || pb[0].Event.End == nil {
		t.Errorf("parked: got %+v, want %+v", pb, pa)
	}
	ra, _ := from.Rejected(ctx, storage.RejectedQuery{Limit: 10})
	rb, _ := to.Rejected(ctx, storage.RejectedQuery{Limit: 10})
	if len(ra) != len(rb) {
		t.Fatalf("rejected: got %d, want %d", len(rb), len(ra))
	}
	for i := range ra {
		ra[i].ID, rb[i].ID = 0, 0
		if !reflect.DeepEqual(rb[i], ra[i]) {
			t.Errorf("rejected %d: got %+v, want %+v", i, rb[i], ra[i])
		}
	}
}
