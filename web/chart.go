package web

import (
	"math"
	"sort"
	"strconv"
	"time"
)

// Charts are SVG drawn by templates/chart.html from these models: nothing runs in the
// browser. Horizontal positions are percentages of the chart's width, so a chart fills a
// phone's screen or a desktop's column and its text keeps its size; vertical positions are
// pixels.

// maxSeries is how many lines a line chart draws; the smaller groups are added up as "other".
const maxSeries = 8

// barChart draws one horizontal bar a row, its label above it and its value at the right.
type barChart struct {
	Title  string
	Height int
	Bars   []bar
}

// bar is one row of a bar chart. Segments split the bar (a stacked bar); a plain bar has one.
type bar struct {
	Label     string
	ValueText string
	Y         int // the baseline of the label
	BarY      int
	Segments  []segment
}

// segment is a part of a bar, from X to X+W percent of the width.
type segment struct {
	X, W  string
	Class string
	Title string
}

const (
	barRow    = 40 // pixels a bar row takes
	barHeight = 14
)

// newBarChart draws values (at most maxBars of them, the caller's order) against the largest.
func newBarChart(title string, labels []string, values []int64) *barChart {
	c := &barChart{Title: title}
	var top int64
	for _, v := range values {
		top = max(top, v)
	}
	for i, v := range values {
		y := i*barRow + 16
		b := bar{Label: labels[i], ValueText: formatCount(v), Y: y, BarY: y + 6}
		b.Segments = []segment{{X: "0", W: percent(float64(v), float64(top)), Class: "s0", Title: labels[i] + ": " + formatCount(v)}}
		c.Bars = append(c.Bars, b)
	}
	c.Height = len(values)*barRow + 4
	return c
}

// stackedRow is one row of a stacked bar chart: its parts by class.
type stackedRow struct {
	Label string
	Value string
	Parts []stackedPart
}

type stackedPart struct {
	Class string
	Name  string
	N     int64
}

// newStackedChart draws each row as a bar of its parts, as shares of the row's total.
func newStackedChart(title string, rows []stackedRow) *barChart {
	c := &barChart{Title: title}
	for i, r := range rows {
		y := i*barRow + 16
		b := bar{Label: r.Label, ValueText: r.Value, Y: y, BarY: y + 6}
		var total int64
		for _, p := range r.Parts {
			total += p.N
		}
		var at int64
		for _, p := range r.Parts {
			if p.N == 0 {
				continue
			}
			b.Segments = append(b.Segments, segment{
				X: percent(float64(at), float64(total)), W: percent(float64(p.N), float64(total)),
				Class: p.Class, Title: r.Label + ": " + formatCount(p.N) + " " + p.Name,
			})
			at += p.N
		}
		c.Bars = append(c.Bars, b)
	}
	c.Height = len(rows)*barRow + 4
	return c
}

// lineChart draws series over time buckets.
type lineChart struct {
	Title   string
	Height  int
	Grid    []gridLine
	XLabels []xLabel
	Series  []series
}

type gridLine struct {
	Y     int
	Label string
}

type xLabel struct {
	X     string
	Label string
}

type series struct {
	Name     string
	Class    string
	Total    int64
	Href     string // the list of the series' jobs, set by the caller
	Segments []lineSegment
	Points   []point
}

type lineSegment struct{ X1, Y1, X2, Y2 string }

type point struct {
	X, Y  string
	Title string
}

// Line chart geometry, in pixels.
const (
	lineHeight = 220
	lineTop    = 18
	lineBottom = 192 // the x axis
	lineInset  = 2.0 // percent of the width left free at either side
)

// timeSeries is the count of each bucket of one group.
type timeSeries struct {
	Name   string
	Counts map[time.Time]int64
}

// newLineChart draws the series over every bucket from first to last (missing buckets count
// zero). The largest maxSeries-1 series are drawn by themselves and the rest added up as
// "other".
func newLineChart(title string, buckets []time.Time, all []timeSeries, bucket time.Duration) *lineChart {
	c := &lineChart{Title: title, Height: lineHeight}
	totals := make([]int64, len(all))
	for i, s := range all {
		for _, n := range s.Counts {
			totals[i] += n
		}
	}
	order := make([]int, len(all))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return totals[order[a]] > totals[order[b]] })
	var drawn []timeSeries
	if len(all) > maxSeries {
		other := timeSeries{Name: "other", Counts: map[time.Time]int64{}}
		for k, i := range order {
			if k < maxSeries-1 {
				drawn = append(drawn, all[i])
				continue
			}
			for t, n := range all[i].Counts {
				other.Counts[t] += n
			}
		}
		drawn = append(drawn, other)
	} else {
		for _, i := range order {
			drawn = append(drawn, all[i])
		}
	}
	var top int64
	for _, s := range drawn {
		for _, n := range s.Counts {
			top = max(top, n)
		}
	}
	scaleTop, step := niceScale(top)
	for v := int64(0); v <= scaleTop; v += step {
		c.Grid = append(c.Grid, gridLine{Y: yOf(v, scaleTop), Label: formatCount(v)})
	}
	x := func(i int) float64 {
		if len(buckets) == 1 {
			return 50
		}
		return lineInset + float64(i)*(100-2*lineInset)/float64(len(buckets)-1)
	}
	every := max(1, int(math.Ceil(float64(len(buckets))/7)))
	for i, b := range buckets {
		if i%every == 0 {
			c.XLabels = append(c.XLabels, xLabel{X: pct(x(i)), Label: bucketLabel(b, bucket)})
		}
	}
	for k, s := range drawn {
		sr := series{Name: s.Name, Class: "s" + strconv.Itoa(k%maxSeries)}
		for i, b := range buckets {
			n := s.Counts[b]
			sr.Total += n
			y := strconv.Itoa(yOf(n, scaleTop))
			sr.Points = append(sr.Points, point{X: pct(x(i)), Y: y, Title: s.Name + ", " + bucketLabel(b, bucket) + ": " + formatCount(n)})
			if i > 0 {
				prev := sr.Points[i-1]
				sr.Segments = append(sr.Segments, lineSegment{X1: prev.X, Y1: prev.Y, X2: pct(x(i)), Y2: y})
			}
		}
		c.Series = append(c.Series, sr)
	}
	return c
}

// yOf is the pixel height of v on a scale up to top.
func yOf(v, top int64) int {
	if top <= 0 {
		return lineBottom
	}
	return lineBottom - int(math.Round(float64(v)/float64(top)*float64(lineBottom-lineTop)))
}

// niceScale picks the top of an axis at or above v and a round step of at most five ticks.
func niceScale(v int64) (top, step int64) {
	if v <= 4 {
		return 4, 1
	}
	raw := float64(v) / 4
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m == 2.5 && mag < 10 {
			continue // counts: whole steps only
		}
		if s := m * mag; s >= raw {
			step = int64(math.Ceil(s))
			break
		}
	}
	top = (v + step - 1) / step * step
	return top, step
}

// bucketLabel names a bucket on an axis: the day, or the hour of a day.
func bucketLabel(t time.Time, bucket time.Duration) string {
	if bucket < 24*time.Hour {
		return t.UTC().Format("01-02 15:04")
	}
	return t.UTC().Format("2006-01-02")
}

// percent is v as a percentage of of, for an SVG length.
func percent(v, of float64) string {
	if of <= 0 {
		return "0"
	}
	return pct(v / of * 100)
}

func pct(p float64) string { return strconv.FormatFloat(p, 'f', 2, 64) + "%" }

// bucketTimes lists every bucket start from the one holding from to the one holding to.
func bucketTimes(from, to time.Time, b bucketSpec) []time.Time {
	var out []time.Time
	for t := b.floor(from); !t.After(to) && len(out) < 2000; t = b.next(t) {
		out = append(out, t)
	}
	return out
}

// bucketSpec is a stats bucket size: hour, day or week (starting on Monday), in UTC.
type bucketSpec string

func (b bucketSpec) floor(t time.Time) time.Time {
	t = t.UTC()
	switch b {
	case "hour":
		return t.Truncate(time.Hour)
	case "week":
		d := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
		wd := (int(d.Weekday()) + 6) % 7 // Monday 0
		return d.AddDate(0, 0, -wd)
	}
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
}

func (b bucketSpec) next(t time.Time) time.Time {
	switch b {
	case "hour":
		return t.Add(time.Hour)
	case "week":
		return t.AddDate(0, 0, 7)
	}
	return t.AddDate(0, 0, 1)
}

func (b bucketSpec) size() time.Duration {
	switch b {
	case "hour":
		return time.Hour
	case "week":
		return 7 * 24 * time.Hour
	}
	return 24 * time.Hour
}
