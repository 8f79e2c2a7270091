package web

import (
	"testing"
	"time"
)

func TestFormatDurationIsNeverNegative(t *testing.T) {
	for d, want := range map[time.Duration]string{
		-time.Hour:                           "< 1 ms",
		0:                                    "< 1 ms",
		350 * time.Millisecond:               "350 ms",
		4*time.Second + 200*time.Millisecond: "4.2 s",
		4*time.Minute + 48*time.Second:       "4 min 48 s",
		3 * time.Hour:                        "3 h",
		24 * time.Hour:                       "24 h",
		30 * 24 * time.Hour:                  "30 d",
		50 * time.Hour:                       "2 d 2 h",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%s): got %q, want %q", d, got, want)
		}
	}
}

func TestRelativeIsAFilterTime(t *testing.T) {
	for d, want := range map[time.Duration]string{
		144 * time.Minute: "144m", 1152 * time.Minute: "1152m", 24 * time.Hour: "1d", 3 * time.Hour: "3h", 90 * time.Second: "90s",
	} {
		if got := relative(d); got != want {
			t.Errorf("relative(%s): got %q, want %q", d, got, want)
		}
	}
}

func TestNiceScale(t *testing.T) {
	for v, want := range map[int64][2]int64{0: {4, 1}, 3: {4, 1}, 7: {8, 2}, 10: {10, 5}, 95: {100, 25}, 1234: {1500, 500}} {
		top, step := niceScale(v)
		if top != want[0] || step != want[1] || top < v {
			t.Errorf("niceScale(%d): got %d by %d, want %d by %d", v, top, step, want[0], want[1])
		}
	}
}

func TestBucketsCoverTheWindow(t *testing.T) {
	from := time.Date(2026, 11, 4, 15, 30, 0, 0, time.UTC) // a Wednesday
	to := time.Date(2026, 11, 18, 1, 0, 0, 0, time.UTC)
	weeks := bucketTimes(from, to, "week")
	if len(weeks) != 3 || weeks[0] != time.Date(2026, 11, 2, 0, 0, 0, 0, time.UTC) {
		t.Errorf("got weeks %v, want three from Monday 2026-11-02", weeks)
	}
	if days := bucketTimes(from, to, "day"); len(days) != 15 {
		t.Errorf("got %d days, want 15", len(days))
	}
	c := newLineChart("t", bucketTimes(from, to, "day"), []timeSeries{{Name: "a", Counts: map[time.Time]int64{
		time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC): 7}}}, 24*time.Hour)
	if len(c.Series) != 1 || len(c.Series[0].Points) != 15 || c.Series[0].Total != 7 || len(c.Series[0].Segments) != 14 {
		t.Errorf("got %+v", c.Series)
	}
	if c.Series[0].Points[1].Y != "40" || c.Series[0].Points[0].Y != "192" {
		t.Errorf("got points %+v, want 7 near the top of 8 and 0 at the bottom", c.Series[0].Points[:2])
	}
}

func TestLineChartAddsUpTheSmallestSeries(t *testing.T) {
	b := []time.Time{time.Date(2026, 11, 5, 0, 0, 0, 0, time.UTC)}
	var all []timeSeries
	for i := range 12 {
		all = append(all, timeSeries{Name: string(rune('a' + i)), Counts: map[time.Time]int64{b[0]: int64(i + 1)}})
	}
	c := newLineChart("t", b, all, 24*time.Hour)
	if len(c.Series) != maxSeries || c.Series[0].Name != "l" || c.Series[maxSeries-1].Name != "other" || c.Series[maxSeries-1].Total != 1+2+3+4+5 {
		t.Errorf("got %d series, first %q, last %q %d", len(c.Series), c.Series[0].Name, c.Series[len(c.Series)-1].Name, c.Series[len(c.Series)-1].Total)
	}
}
