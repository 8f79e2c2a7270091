package jobs_test

import (
	"testing"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
)

// TestSweepInterval: a tenth of the shortest timeout or first delay, within 1s…30s.
func TestSweepInterval(t *testing.T) {
	cases := []struct {
		run, schedule, delay time.Duration
		auto                 int
		want                 time.Duration
	}{
		{3 * time.Hour, 24 * time.Hour, 30 * time.Second, 0, 30 * time.Second},
		{3 * time.Hour, 24 * time.Hour, 30 * time.Second, 3, 3 * time.Second},
		{3 * time.Hour, 24 * time.Hour, 5 * time.Second, 3, time.Second},
		{2 * time.Minute, 24 * time.Hour, time.Hour, 3, 12 * time.Second},
		{2 * time.Second, 24 * time.Hour, time.Hour, 0, time.Second},
		{0, 0, 0, 0, 30 * time.Second},
	}
	for _, tc := range cases {
		got := jobs.SweepInterval(statemachine.Timeouts{Run: tc.run, Schedule: tc.schedule}, statemachine.AutoPolicy{Limit: tc.auto, FirstDelay: tc.delay})
		if got != tc.want {
			t.Errorf("%+v: got %s, want %s", tc, got, tc.want)
		}
	}
}
