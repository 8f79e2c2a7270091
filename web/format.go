package web

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// shortUUID is the first group of a uuid's digits, enough to tell jobs apart in a list.
func shortUUID(id uuid.UUID) string { return id.String()[:8] }

// timeOf reads a time.Time or *time.Time; ok is false for nil or the zero time.
func timeOf(v any) (time.Time, bool) {
	switch t := v.(type) {
	case time.Time:
		return t.UTC(), !t.IsZero()
	case *time.Time:
		if t == nil || t.IsZero() {
			return time.Time{}, false
		}
		return t.UTC(), true
	}
	return time.Time{}, false
}

// formatTime shows a time in UTC to the second, as lists show it.
func formatTime(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return "—"
	}
	return t.Format("2006-01-02 15:04:05") + " UTC"
}

// formatTimeFull shows a time in UTC with its fraction, as the job page shows it.
func formatTimeFull(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return "—"
	}
	return t.Format("2006-01-02 15:04:05.000000") + " UTC"
}

// rfc3339 is a time for the datetime attribute of <time>.
func rfc3339(v any) string {
	t, ok := timeOf(v)
	if !ok {
		return ""
	}
	return t.Format(time.RFC3339Nano)
}

// formatDuration shows a duration the way people say it, at most two units; never negative
// (a duration below zero, which the contract rules out, shows as under a millisecond).
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	switch {
	case d < time.Millisecond:
		return "< 1 ms"
	case d < time.Second:
		return strconv.FormatInt(d.Milliseconds(), 10) + " ms"
	case d < 10*time.Second:
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return twoUnits(int64(d/time.Minute), "min", int64(d%time.Minute/time.Second), "s")
	case d < 48*time.Hour:
		return twoUnits(int64(d/time.Hour), "h", int64(d%time.Hour/time.Minute), "min")
	}
	return twoUnits(int64(d/(24*time.Hour)), "d", int64(d%(24*time.Hour)/time.Hour), "h")
}

func twoUnits(a int64, ua string, b int64, ub string) string {
	if b == 0 {
		return fmt.Sprintf("%d %s", a, ua)
	}
	return fmt.Sprintf("%d %s %d %s", a, ua, b, ub)
}

// formatSeconds shows a duration given in seconds, as stats give them.
func formatSeconds(s float64) string {
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return "—"
	}
	return formatDuration(time.Duration(s * float64(time.Second)))
}

// formatShare shows a share (0…1) as a percentage.
func formatShare(f float64) string {
	switch {
	case f <= 0:
		return "0 %"
	case f < 0.001:
		return "< 0.1 %"
	case f >= 0.9995 && f < 1:
		return "> 99.9 %"
	}
	return strconv.FormatFloat(f*100, 'f', 1, 64) + " %"
}

// formatCount writes a count with thin spaces between thousands: 1 234 567.
func formatCount(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteString("\u202f")
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// since is how long ago t was at now, never negative.
func since(now time.Time, t time.Time) time.Duration {
	if d := now.Sub(t); d > 0 {
		return d
	}
	return 0
}

// relative writes a duration as a relative time the filters take: 144m, 24h, 30d.
func relative(d time.Duration) string {
	switch {
	case d%(24*time.Hour) == 0:
		return strconv.FormatInt(int64(d/(24*time.Hour)), 10) + "d"
	case d%time.Hour == 0:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Minute == 0:
		return strconv.FormatInt(int64(d/time.Minute), 10) + "m"
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}
