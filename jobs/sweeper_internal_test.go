package jobs

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/google/uuid"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// TestSweepErrorsPerJob: a sweep's failure on single jobs is logged and counted job by job, with
// the job's uuid; what ended a sweep early once more.
func TestSweepErrorsPerJob(t *testing.T) {
	core, logs := observer.New(zap.ErrorLevel)
	counted := map[string]int{}
	cfg := SweeperConfig{Log: zap.New(core), OnError: func(sweep string) { counted[sweep]++ }}
	a, b := uuid.New(), uuid.New()
	err := &SweepError{Sweep: "automatic reschedule", Err: errors.New("claim: connection refused"),
		Jobs: []JobError{{JobUUID: a, Err: errors.New("boom")}, {JobUUID: b, Err: errors.New("bang")}}}
	if sweepStopped(context.Background(), cfg, "auto_reschedule", fmt.Errorf("wrapped: %w", err)) {
		t.Fatal("stopped: got true with a live context")
	}
	if len(counted) != 1 || counted["auto_reschedule"] != 3 {
		t.Errorf("errors counted: got %v, want 3 for auto_reschedule", counted)
	}
	var failed []string
	for _, e := range logs.All() {
		if id, ok := e.ContextMap()["job_uuid"]; ok {
			failed = append(failed, id.(string))
		}
	}
	if logs.Len() != 3 || fmt.Sprint(failed) != fmt.Sprint([]string{a.String(), b.String()}) {
		t.Errorf("logs: got %d entries for jobs %v, want 3, for %s and %s", logs.Len(), failed, a, b)
	}
	if sweepStopped(context.Background(), cfg, "watchdog", nil) {
		t.Error("stopped: got true without an error")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if !sweepStopped(ctx, cfg, "watchdog", err) {
		t.Error("stopped: got false with an ended context")
	}
}
