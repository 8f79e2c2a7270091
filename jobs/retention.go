package jobs

import (
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
)

// Retention says what is pruned, and after how long (CONTRACT section 7, v1.1): jobs in a final
// state by their age (since created_at), with their history and key-values, and rejected bus
// messages by theirs (since rejected_at). A zero duration keeps that kind for ever; the zero
// Retention prunes nothing. Whatever it says, a job whose successor is still pending (or whose
// automatic reschedule is not decided or not carried out yet) is kept, and so is a job the
// outbox still has to announce.
type Retention struct {
	Finished time.Duration
	Crashed  time.Duration
	Rejected time.Duration
}

// MinRetention is the shortest retention ParseRetention takes: anything shorter is a typo more
// likely than a wish.
const MinRetention = time.Hour

// IsZero reports whether r prunes nothing.
func (r Retention) IsZero() bool { return r == Retention{} }

// Of is the retention of jobs in state (FINISHED or CRASHED); 0 for any other state.
func (r Retention) Of(state statemachine.State) time.Duration {
	switch state {
	case statemachine.Finished:
		return r.Finished
	case statemachine.Crashed:
		return r.Crashed
	}
	return 0
}

// String is r as ParseRetention reads it, e.g. "FINISHED=90d,CRASHED=365d,rejected=30d"; "" for
// the zero Retention.
func (r Retention) String() string {
	var parts []string
	for _, p := range []struct {
		key string
		d   time.Duration
	}{{"FINISHED", r.Finished}, {"CRASHED", r.Crashed}, {"rejected", r.Rejected}} {
		if p.d > 0 {
			parts = append(parts, p.key+"="+formatAge(p.d))
		}
	}
	return strings.Join(parts, ",")
}

// ParseRetention reads a retention spec: comma-separated KIND=AGE, KIND being FINISHED, CRASHED
// or rejected, AGE a number of days (90d), weeks (2w) or a Go duration of at least an hour
// (36h). "" is the zero Retention. Errors name what is wrong.
func ParseRetention(spec string) (Retention, error) {
	var r Retention
	seen := map[string]bool{}
	for _, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		kind, age, ok := strings.Cut(part, "=")
		if !ok {
			return r, fmt.Errorf("%q is not KIND=AGE, e.g. FINISHED=90d", part)
		}
		d, err := parseAge(age)
		if err != nil {
			return r, fmt.Errorf("%s: %v", kind, err)
		}
		if seen[kind] {
			return r, fmt.Errorf("%s given twice", kind)
		}
		seen[kind] = true
		switch kind {
		case string(statemachine.Finished):
			r.Finished = d
		case string(statemachine.Crashed):
			r.Crashed = d
		case "rejected":
			r.Rejected = d
		default:
			return r, fmt.Errorf("unknown kind %q: want FINISHED, CRASHED or rejected (SCHEDULED and RUNNING jobs are never pruned)", kind)
		}
	}
	return r, nil
}

// parseAge reads 90d, 2w or a Go duration, at least MinRetention.
func parseAge(s string) (time.Duration, error) {
	var d time.Duration
	if n, unit := strings.TrimRight(s, "dw"), strings.TrimLeft(s, "0123456789"); len(n) > 0 && (unit == "d" || unit == "w") {
		days, err := strconv.Atoi(n)
		if err != nil || days > 36600 {
			return 0, fmt.Errorf("want an age such as 90d, 2w or 36h, got %q", s)
		}
		if unit == "w" {
			days *= 7
		}
		d = time.Duration(days) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, fmt.Errorf("want an age such as 90d, 2w or 36h, got %q", s)
		}
	}
	if d < MinRetention {
		return 0, fmt.Errorf("%q is less than %s", s, MinRetention)
	}
	return d, nil
}

// formatAge writes d as parseAge reads it: whole days as Nd, else a Go duration.
func formatAge(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		return strconv.Itoa(int(d/(24*time.Hour))) + "d"
	}
	return d.String()
}
