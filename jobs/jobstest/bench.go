package jobstest

import (
	"context"
	"testing"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
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
