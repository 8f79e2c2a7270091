package jobs_test

import (
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/jobs"
)

func TestParseRetention(t *testing.T) {
	day := 24 * time.Hour
	r, err := jobs.ParseRetention("FINISHED=90d, CRASHED=52w,rejected=36h")
	if err != nil || r != (jobs.Retention{Finished: 90 * day, Crashed: 364 * day, Rejected: 36 * time.Hour}) {
		t.Fatalf("got %+v, %v", r, err)
	}
	if s := r.String(); s != "FINISHED=90d,CRASHED=364d,rejected=36h0m0s" {
		t.Errorf("String: got %q", s)
	}
	if back, err := jobs.ParseRetention(r.String()); err != nil || back != r {
		t.Errorf("round trip: got %+v, %v", back, err)
	}
	if r, err := jobs.ParseRetention(""); err != nil || !r.IsZero() {
		t.Errorf("empty: got %+v, %v", r, err)
	}
	for spec, want := range map[string]string{
		"RUNNING=1d":              "never pruned",
		"FINISHED":                "KIND=AGE",
		"FINISHED=soon":           "90d",
		"FINISHED=5m":             "less than",
		"FINISHED=1d,FINISHED=2d": "twice",
		"finished=1d":             "unknown kind",
	} {
		if _, err := jobs.ParseRetention(spec); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: got %v, want an error saying %q", spec, err, want)
		}
	}
}
