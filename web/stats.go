package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	apiquery "github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/storage"
)

// maxChartRows is how many groups a bar chart draws; the table has them all.
const maxChartRows = 25

// statsCell is a group value in a stats table.
type statsCell struct {
	Value string
	None  bool // the jobs lack the field (a crash keyval of jobs that have none)
}

// statsRowView is a row of the stats table.
type statsRowView struct {
	Groups []statsCell
	Bucket *time.Time
	Count  int64
	Href   string // the jobs the row counts; empty when no filter can select them
	Share  float64
	Wait   *storage.Durations
	Run    *storage.Durations
}

// retryRowView is a row of the retry stats table.
type retryRowView struct {
	Groups      []statsCell
	Bucket      *time.Time
	Rescheduled int64
	Finished    int64
	Crashed     int64
	Pending     int64
	SuccessRate *float64
}

// statsData is what /stats and /stats/retries show.
type statsData struct {
	Form      filterForm
	GroupBy   string
	Bucket    string
	Asked     bool
	Fields    []string // the group_by fields, the table's first columns
	Total     int64
	Rows      []statsRowView
	Retries   []retryRowView
	Bars      *barChart
	Lines     *lineChart
	More      int // groups the bar chart leaves out
	APIHref   string
	JobsHref  string
	OtherHref string // the same question on the other stats page
	Questions []question
	Error     *pageError
	Took      time.Duration
	Query     string // the question as the API's query string
	Headline  string // the question in words, when it is one of the ready-made ones
}

// statsQuery reads the filters, group_by and bucket of a stats question as the API does.
func statsQuery(q query, now time.Time) (storage.StatsQuery, error) {
	f, err := apiquery.ParseFilter(url.Values(q), now, "group_by", "bucket")
	if err != nil {
		return storage.StatsQuery{}, err
	}
	sq := storage.StatsQuery{Filter: f, GroupBy: []storage.Field{}}
	for _, raw := range q["group_by"] {
		for _, name := range strings.Split(raw, ",") {
			field, err := apiquery.ParseField(strings.TrimSpace(name))
			if err != nil {
				return sq, &schemas.FieldError{Field: "group_by", Message: strconv.Quote(name) + ": " + err.Error()}
			}
			sq.GroupBy = append(sq.GroupBy, field)
		}
	}
	if sq.Bucket, err = apiquery.ParseBucket(strings.Join(q["bucket"], ",")); err != nil {
		return sq, &schemas.FieldError{Field: "bucket", Message: err.Error()}
	}
	return sq, nil
}

// statsPage reads and answers a stats question for /stats (retries false) or /stats/retries.
func (s *site) statsPage(w http.ResponseWriter, r *http.Request, retries bool) {
	path, api, other, name, title := "/stats", "/api/v1/stats", "/stats/retries", "stats", "Statistics"
	if retries {
		path, api, other, name, title = "/stats/retries", "/api/v1/stats/retries", "/stats", "retries", "Retries"
	}
	q, err := parseQuery(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q, redirected, err := s.redirectCanonical(w, r, path, q)
	if redirected {
		return
	}
	d := statsData{
		Form: newFilterForm(q, "group_by", "bucket"), GroupBy: q.Get("group_by"), Bucket: q.Get("bucket"),
		Questions: s.questions(), Query: q.encode(),
	}
	show := func(status int) {
		s.render(w, r, status, name, page{Title: title, Section: "stats", Data: d})
	}
	fail := func(err error) {
		e := s.pageErrorOf(r, err)
		if e.Status != http.StatusBadRequest {
			s.errorPage(w, r, e)
			return
		}
		d.Error = e
		show(e.Status)
	}
	if err != nil {
		fail(err)
		return
	}
	if len(q) == 0 {
		// No question yet: the form and the ready-made questions. An empty form asks about
		// every job there is; that is a question to ask on purpose (group_by=state, say).
		show(http.StatusOK)
		return
	}
	d.Asked = true
	for _, qu := range d.Questions {
		if qu.Href == s.link(path, q) {
			d.Headline = qu.Text
		}
	}
	d.APIHref = s.link(api, q)
	d.OtherHref = s.link(other, q)
	d.JobsHref = s.link("/jobs", q.clone("group_by", "bucket"))
	now := s.read.Now()
	sq, err := statsQuery(q, now)
	if err != nil {
		fail(err)
		return
	}
	for _, f := range sq.GroupBy {
		d.Fields = append(d.Fields, string(f))
	}
	start := time.Now()
	if retries {
		res, err := s.read.RetryStats(r.Context(), sq)
		if err != nil {
			fail(err)
			return
		}
		d.Took = time.Since(start)
		s.retryView(&d, q, sq, res, now)
	} else {
		res, err := s.read.Stats(r.Context(), sq)
		if err != nil {
			fail(err)
			return
		}
		d.Took = time.Since(start)
		s.statsView(&d, q, sq, res, now)
	}
	show(http.StatusOK)
}

func (s *site) stats(w http.ResponseWriter, r *http.Request)   { s.statsPage(w, r, false) }
func (s *site) retries(w http.ResponseWriter, r *http.Request) { s.statsPage(w, r, true) }

// groupCells are a row's group values in group_by order, and its label for a chart.
func groupCells(groupBy []storage.Field, group map[storage.Field]*string) ([]statsCell, string) {
	var cells []statsCell
	var label []string
	for _, f := range groupBy {
		v := group[f]
		if v == nil {
			cells = append(cells, statsCell{None: true})
			label = append(label, "(none)")
			continue
		}
		cells = append(cells, statsCell{Value: *v})
		label = append(label, *v)
	}
	if len(label) == 0 {
		return cells, "all"
	}
	return cells, strings.Join(label, " · ")
}

// rowHref is the list of the jobs a row counts: the question's filters, each group field set
// to the row's value, and the bucket's window. A group of jobs that lack the field, or a value
// no filter can match exactly, has none.
func (s *site) rowHref(q query, sq storage.StatsQuery, group map[storage.Field]*string, bucket *time.Time) string {
	v := q.clone("group_by", "bucket")
	for _, f := range sq.GroupBy {
		val := group[f]
		if val == nil || !exact(*val) {
			return ""
		}
		v = v.with(string(f), *val)
	}
	if bucket != nil {
		from, to := bucket.UTC(), bucketSpec(sq.Bucket).next(bucket.UTC())
		if sq.Filter.Since != nil && sq.Filter.Since.After(from) {
			from = *sq.Filter.Since
		}
		if sq.Filter.Until != nil && sq.Filter.Until.Before(to) {
			to = *sq.Filter.Until
		}
		v = v.with("since", from.Format(time.RFC3339Nano)).with("until", to.Format(time.RFC3339Nano))
	}
	return s.link("/jobs", v)
}

func (s *site) statsView(d *statsData, q query, sq storage.StatsQuery, res storage.StatsResult, now time.Time) {
	d.Total = res.Total
	var labels []string
	var counts []int64
	var lines lineCollector
	for _, row := range res.Rows {
		cells, label := groupCells(sq.GroupBy, row.Group)
		d.Rows = append(d.Rows, statsRowView{Groups: cells, Bucket: row.Bucket, Count: row.Count,
			Href: s.rowHref(q, sq, row.Group, row.Bucket), Share: row.Share, Wait: row.QueueWait, Run: row.RunTime})
		switch {
		case row.Bucket != nil:
			lines.add(label, *row.Bucket, row.Count)
		case len(labels) < maxChartRows:
			labels = append(labels, label)
			counts = append(counts, row.Count)
		default:
			d.More++
		}
	}
	if len(counts) > 0 {
		d.Bars = newBarChart("Jobs by "+strings.Join(d.Fields, ", "), labels, counts)
	}
	title := "Jobs a " + string(sq.Bucket)
	if len(d.Fields) > 0 {
		title += " by " + strings.Join(d.Fields, ", ")
	}
	d.Lines = lines.chart(title, sq, now)
}

func (s *site) retryView(d *statsData, q query, sq storage.StatsQuery, res storage.RetryStatsResult, now time.Time) {
	d.Total = res.Total
	var rows []stackedRow
	var lines lineCollector
	for _, row := range res.Rows {
		cells, label := groupCells(sq.GroupBy, row.Group)
		d.Retries = append(d.Retries, retryRowView{Groups: cells, Bucket: row.Bucket, Rescheduled: row.Rescheduled,
			Finished: row.Finished, Crashed: row.Crashed,
			Pending: row.Pending, SuccessRate: row.SuccessRate})
		switch {
		case row.Bucket != nil:
			lines.add(label, *row.Bucket, row.Rescheduled)
		case len(rows) < maxChartRows:
			value := formatCount(row.Rescheduled) + " rescheduled"
			if row.SuccessRate != nil {
				value += ", " + formatShare(*row.SuccessRate) + " cured"
			}
			rows = append(rows, stackedRow{Label: label, Value: value, Parts: []stackedPart{
				{Class: "finished", Name: "finished", N: row.Finished},
				{Class: "crashed", Name: "crashed again", N: row.Crashed},
				{Class: "pending", Name: "pending", N: row.Pending},
			}})
		default:
			d.More++
		}
	}
	if len(rows) > 0 {
		d.Bars = newStackedChart("Successors of rescheduled crashes: finished, crashed again, pending", rows)
	}
	d.Lines = lines.chart("Rescheduled crashes a "+string(sq.Bucket), sq, now)
}

// lineCollector gathers the rows of a bucketed answer into one series a group.
type lineCollector struct {
	series      map[string]*timeSeries
	order       []string
	first, last time.Time
}

func (c *lineCollector) add(label string, bucket time.Time, n int64) {
	if c.series == nil {
		c.series = map[string]*timeSeries{}
	}
	ts := c.series[label]
	if ts == nil {
		ts = &timeSeries{Name: label, Counts: map[time.Time]int64{}}
		c.series[label] = ts
		c.order = append(c.order, label)
	}
	b := bucket.UTC()
	ts.Counts[b] += n
	if c.first.IsZero() || b.Before(c.first) {
		c.first = b
	}
	if b.After(c.last) {
		c.last = b
	}
}

// chart draws the series over the question's window: from since (or the first bucket) to
// until (or now), unless that is far longer than the buckets with jobs span.
func (c *lineCollector) chart(title string, sq storage.StatsQuery, now time.Time) *lineChart {
	if len(c.order) == 0 {
		return nil
	}
	b := bucketSpec(sq.Bucket)
	from, to := c.first, c.last
	if sq.Filter.Since != nil && sq.Filter.Since.Before(from) && c.last.Sub(*sq.Filter.Since) < 400*b.size() {
		from = *sq.Filter.Since
	}
	end := now
	if sq.Filter.Until != nil {
		end = sq.Filter.Until.Add(-time.Nanosecond) // until is exclusive
	}
	if end.After(to) && end.Sub(from) < 400*b.size() {
		to = end
	}
	var all []timeSeries
	for _, name := range c.order {
		all = append(all, *c.series[name])
	}
	return newLineChart(title, bucketTimes(from, to, b), all, b.size())
}
