package jobstest

import (
	"context"
	"fmt"
	"testing"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// BenchmarkLifecycle measures the apply path: each iteration creates a job, starts it and
// crashes it, three writes with their history and outbox rows, from 8 goroutines per CPU.
// It reports jobs/s and transitions/s.
func BenchmarkLifecycle(b *testing.B, backend storage.Backend, group jobs.GroupCommit) {
	s := jobs.New(backend, jobs.Config{GroupCommit: group})
	defer s.Close()
	ctx := context.Background()
	meta := statemachine.Meta{Origin: statemachine.OriginHTTP}
	b.SetParallelism(8) // like a busy API: many requests in flight on a 2-core machine
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			res, err := s.Create(ctx, statemachine.NewJob{TaskName: "rpmlint", Item: "foo-1-1.fc45", ItemType: "koji_build",
				Data: statemachine.KeyVals{"koji_tag": {"f45"}}}, meta)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := s.Apply(ctx, res.Job.UUID, statemachine.Event{Meta: meta, Start: &statemachine.Start{}}); err != nil {
				b.Fatal(err)
			}
			end := &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Cause: statemachine.CauseMinion,
				KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {"TIMED_OUT"}}}}
			if _, err := s.Apply(ctx, res.Job.UUID, statemachine.Event{Meta: meta, End: end}); err != nil {
				b.Fatal(err)
			}
		}
	})
	secs := b.Elapsed().Seconds()
	b.ReportMetric(float64(b.N)/secs, "jobs/s")
	b.ReportMetric(float64(3*b.N)/secs, "transitions/s")
}

// BenchmarkApplyBus measures the bus path below the transport: batches of 255 messages (85
// job lives: trigger, start, crash with keyvals), one ApplyBus each, as a consumer worker
// applies them. It reports messages/s.
func BenchmarkApplyBus(b *testing.B, backend storage.Backend) {
	s := jobs.New(backend, jobs.Config{TopicPrefix: "org.example"})
	ctx := context.Background()
	const lives = 85
	b.ResetTimer()
	for i := range b.N {
		msgs := make([]jobs.BusMessage, 0, 3*lives)
		for k := range lives {
			id := uuid.New()
			ref := fmt.Sprintf("%d-%d", i, k)
			msgs = append(msgs,
				busTrigger("t-"+ref, statemachine.NewJob{UUID: id, TaskName: "rpmlint", Item: "foo-1.0-1.fc45", ItemType: "koji_build",
					Data: statemachine.KeyVals{"koji_tag": {"f45-updates-testing"}}}),
				busStart("s-"+ref, id),
				busEndCrash("e-"+ref, id))
		}
		if _, err := s.ApplyBus(ctx, msgs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(3*lives*b.N)/b.Elapsed().Seconds(), "msgs/s")
}

func busEndCrash(id string, job uuid.UUID) jobs.BusMessage {
	m := busEnd(id, job, statemachine.Crashed, statemachine.CauseMinion)
	m.Event.End.Crash.KeyVals = statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {"TIMED_OUT"}}
	return m
}
