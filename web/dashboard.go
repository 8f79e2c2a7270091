package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"

	apiquery "github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"go.uber.org/zap"
)

// The dashboard's figures are counted by the same stats queries as the API's, each over a
// bounded window, but together they take longer than a page may (a third of a second for a
// month of crashes on a million jobs): they are counted at most once a dashboardMaxAge, in the
// background while the previous count is recent enough to show, and the page says when.
const (
	dashboardMaxAge  = time.Minute
	dashboardStale   = 10 * time.Minute // older figures are not shown: the page waits for new ones
	dashboardTimeout = 30 * time.Second
	// nearTimeout is how close to the watchdog's timeout a job counts as stuck.
	nearTimeout = 0.8
	// rejectedScan is how many of the newest rejected messages the dashboard looks at for the
	// last day's.
	rejectedScan = 500
	topN         = 10
)

// figure is a number on the dashboard and the list it counts.
type figure struct {
	Label string
	N     int64
	Href  string
	Class string
}

// crashRow is a cause or notify value with its crashes in the last day and week.
type crashRow struct {
	Name      string
	Day, Week figure
}

// topRow is an entry of a top list.
type topRow struct {
	Label string
	N     int64
	Href  string
	Share float64
}

// question is a ready-made question, a link to the page that answers it.
type question struct {
	Text string
	Href string
}

// dashboardData is what the dashboard shows.
type dashboardData struct {
	AsOf         time.Time
	MaxAge       time.Duration
	Now          []figure // scheduled, running now; finished, crashed in the last day
	ByCause      []crashRow
	ByNotify     []crashRow
	CrashesDay   figure
	CrashesWeek  figure
	Chart        *lineChart
	ChartHref    string
	TopTasks     []topRow
	TopReasons   []topRow
	TasksHref    string
	ReasonsHref  string
	Stuck        []figure
	RunNear      time.Duration
	ScheduleNear time.Duration
	RunTimeout   time.Duration
	SchedTimeout time.Duration
	Outbox       storage.OutboxStats
	OutboxAge    time.Duration
	Rejected     figure
	RejectedMore bool
	RejectedBy   []topRow
	Questions    []question
}

// dashboardCache keeps the last count of the dashboard's figures.
type dashboardCache struct {
	mu         sync.Mutex
	data       *dashboardData
	refreshing bool
	wait       chan struct{} // closed when a count in progress ends
	err        error         // of the last count, for those who waited for it
	wg         sync.WaitGroup
	ctx        context.Context
	cancel     context.CancelFunc
}

// dashboard serves /: the state of ExecDB at a glance.
func (s *site) dashboard(w http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		if _, err := parseQuery(r); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	d, err := s.dashboardData(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.render(w, r, http.StatusOK, "dashboard", page{Title: "Dashboard", Section: "dashboard", Data: d})
}

// dashboardData returns the figures: the last count while it is fresh (dashboardMaxAge); the
// last count while a new one is made in the background when it is older, up to
// dashboardStale; or else a new count, which concurrent requests wait for together.
func (s *site) dashboardData(ctx context.Context) (*dashboardData, error) {
	c := s.dash
	c.mu.Lock()
	if d := c.data; d != nil {
		age := s.read.Now().Sub(d.AsOf)
		if age >= dashboardMaxAge && !c.refreshing {
			c.startLocked(s)
		}
		if age < dashboardStale {
			c.mu.Unlock()
			return d, nil
		}
	}
	if !c.refreshing {
		c.startLocked(s)
	}
	wait := c.wait
	c.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.err != nil {
		return nil, c.err
	}
	return c.data, nil
}

// startLocked starts a count in the background; c.mu is held. The count belongs to the site:
// Close cancels it and waits for it.
func (c *dashboardCache) startLocked(s *site) {
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithCancel(context.Background())
	}
	if c.ctx.Err() != nil {
		c.err = fmt.Errorf("the pages are closed: %w", c.ctx.Err())
		c.wait = make(chan struct{})
		close(c.wait)
		return
	}
	c.refreshing = true
	c.wait = make(chan struct{})
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		ctx, cancel := context.WithTimeout(c.ctx, dashboardTimeout)
		defer cancel()
		d, err := s.countDashboard(ctx)
		if err != nil {
			s.log.Warn("count the dashboard's figures", zap.Error(err))
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		c.refreshing = false
		c.err = err
		if err == nil {
			c.data = d
		}
		close(c.wait)
	}()
}

// close cancels a count in progress and waits for it to end.
func (c *dashboardCache) close() {
	c.mu.Lock()
	if c.ctx == nil {
		c.ctx, c.cancel = context.WithCancel(context.Background())
	}
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
}

// statsOf parses a stats question written as the API's query string; the dashboard's figures
// are defined so, and link to the list they count with the same string.
func statsOf(raw string, now time.Time, groupBy ...storage.Field) (storage.StatsQuery, query, error) {
	v, err := url.ParseQuery(raw)
	if err == nil {
		var f storage.Filter
		if f, err = apiquery.ParseFilter(v, now); err == nil {
			return storage.StatsQuery{Filter: f, GroupBy: groupBy}, query(v), nil
		}
	}
	return storage.StatsQuery{}, nil, fmt.Errorf("dashboard question %q: %w", raw, err)
}

// countDashboard asks every question of the dashboard, at the same time.
func (s *site) countDashboard(ctx context.Context) (*dashboardData, error) {
	now := s.read.Now().UTC()
	d := &dashboardData{AsOf: now, MaxAge: dashboardMaxAge, RunTimeout: s.runTimeout, SchedTimeout: s.scheduleTimeout}
	d.RunNear = time.Duration(float64(s.runTimeout) * nearTimeout).Truncate(time.Minute)
	d.ScheduleNear = time.Duration(float64(s.scheduleTimeout) * nearTimeout).Truncate(time.Minute)
	if d.RunNear <= 0 {
		d.RunNear = time.Duration(float64(s.runTimeout) * nearTimeout).Truncate(time.Second)
	}
	if d.ScheduleNear <= 0 {
		d.ScheduleNear = time.Duration(float64(s.scheduleTimeout) * nearTimeout).Truncate(time.Second)
	}

	type ask struct {
		q   storage.StatsQuery
		raw query
		res storage.StatsResult
	}
	asks := map[string]*ask{}
	var badQuestion error
	add := func(name, raw string, groupBy ...storage.Field) {
		q, v, err := statsOf(raw, now, groupBy...)
		if err != nil {
			badQuestion = err // a timeout too long for a relative time, say
		}
		asks[name] = &ask{q: q, raw: v}
	}
	add("active", "state=SCHEDULED,RUNNING", storage.FieldState)
	add("day", "since=24h", storage.FieldState, storage.FieldCause, storage.FieldNotify)
	add("week", "state=CRASHED&since=7d", storage.FieldCause, storage.FieldNotify, storage.FieldTaskName)
	add("reasons", "state=CRASHED&since=7d", "kv.reason")
	add("chart", "state=CRASHED&since=30d", storage.FieldCause)
	asks["chart"].q.Bucket = storage.BucketDay
	add("stuckRun", "state=RUNNING&until="+relative(d.RunNear))
	add("stuckSched", "state=SCHEDULED&until="+relative(d.ScheduleNear))
	if badQuestion != nil {
		return nil, badQuestion
	}

	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	fail := func(what string, err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", what, err)
		}
	}
	for name, a := range asks {
		wg.Go(func() {
			res, err := s.read.Stats(ctx, a.q)
			if err != nil {
				fail(name, err)
			}
			a.res = res
		})
	}
	var rejected []storage.RejectedMessage
	wg.Go(func() {
		var err error
		if d.Outbox, err = s.read.OutboxStats(ctx); err != nil {
			fail("outbox", err)
		}
	})
	wg.Go(func() {
		var err error
		if rejected, err = s.read.Rejected(ctx, storage.RejectedQuery{Limit: rejectedScan + 1}); err != nil {
			fail("rejected", err)
		}
	})
	wg.Wait()
	if firstErr != nil {
		return nil, firstErr
	}

	jobs := func(v query) string { return s.link("/jobs", v) }
	// Now: the jobs waiting and running, and the last day's ends.
	active := map[string]int64{}
	for _, row := range asks["active"].res.Rows {
		active[val(row.Group[storage.FieldState])] += row.Count
	}
	day := asks["day"]
	ended := map[string]int64{}
	dayCause, dayNotify := map[string]int64{}, map[string]int64{}
	for _, row := range day.res.Rows {
		st := val(row.Group[storage.FieldState])
		ended[st] += row.Count
		if st == string(statemachine.Crashed) {
			dayCause[val(row.Group[storage.FieldCause])] += row.Count
			dayNotify[val(row.Group[storage.FieldNotify])] += row.Count
		}
	}
	d.Now = []figure{
		{Label: "scheduled", N: active["SCHEDULED"], Href: jobs(query{"state": {"SCHEDULED"}}), Class: "scheduled"},
		{Label: "running", N: active["RUNNING"], Href: jobs(query{"state": {"RUNNING"}}), Class: "running"},
		{Label: "finished in the last 24 h", N: ended["FINISHED"], Href: jobs(day.raw.with("state", "FINISHED")), Class: "finished"},
		{Label: "crashed in the last 24 h", N: ended["CRASHED"], Href: jobs(day.raw.with("state", "CRASHED")), Class: "crashed"},
	}

	// Crashes by cause and notify, the last day and week, and the top tasks of the week.
	week := asks["week"]
	weekCause, weekNotify, weekTask := map[string]int64{}, map[string]int64{}, map[string]int64{}
	for _, row := range week.res.Rows {
		weekCause[val(row.Group[storage.FieldCause])] += row.Count
		weekNotify[val(row.Group[storage.FieldNotify])] += row.Count
		weekTask[val(row.Group[storage.FieldTaskName])] += row.Count
	}
	dayCrashed := day.raw.with("state", "CRASHED")
	for _, c := range statemachine.Causes {
		d.ByCause = append(d.ByCause, crashRow{Name: string(c),
			Day:  figure{N: dayCause[string(c)], Href: jobs(dayCrashed.with("cause", string(c)))},
			Week: figure{N: weekCause[string(c)], Href: jobs(week.raw.with("cause", string(c)))},
		})
	}
	for _, n := range statemachine.Notifies {
		d.ByNotify = append(d.ByNotify, crashRow{Name: string(n),
			Day:  figure{N: dayNotify[string(n)], Href: jobs(dayCrashed.with("notify", string(n)))},
			Week: figure{N: weekNotify[string(n)], Href: jobs(week.raw.with("notify", string(n)))},
		})
	}
	d.CrashesDay = figure{N: ended["CRASHED"], Href: jobs(dayCrashed)}
	d.CrashesWeek = figure{N: week.res.Total, Href: jobs(week.raw)}
	d.TopTasks = top(weekTask, week.res.Total, func(v string) string { return jobs(week.raw.with("taskname", v)) })
	d.TasksHref = s.link("/stats", week.raw.with("group_by", "taskname"))

	reasons := asks["reasons"]
	byReason := map[string]int64{}
	for _, row := range reasons.res.Rows {
		if v := row.Group["kv.reason"]; v != nil {
			byReason[*v] += row.Count
		}
	}
	d.TopReasons = top(byReason, reasons.res.Total, func(v string) string { return jobs(reasons.raw.with("kv.reason", v)) })
	d.ReasonsHref = s.link("/stats", reasons.raw.with("group_by", "kv.reason"))

	// Crashes a day by cause over a month.
	chart := asks["chart"]
	perCause := map[string]map[time.Time]int64{}
	for _, row := range chart.res.Rows {
		c := val(row.Group[storage.FieldCause])
		if perCause[c] == nil {
			perCause[c] = map[time.Time]int64{}
		}
		if row.Bucket != nil {
			perCause[c][row.Bucket.UTC()] += row.Count
		}
	}
	var series []timeSeries
	for _, c := range statemachine.Causes {
		series = append(series, timeSeries{Name: string(c), Counts: perCause[string(c)]})
	}
	buckets := bucketTimes(*chart.q.Filter.Since, now, bucketSpec(storage.BucketDay))
	d.Chart = newLineChart("Crashes a day by cause, the last 30 days", buckets, series, 24*time.Hour)
	for i := range d.Chart.Series {
		d.Chart.Series[i].Href = jobs(chart.raw.with("cause", d.Chart.Series[i].Name))
	}
	d.ChartHref = s.link("/stats", chart.raw.with("group_by", "cause").with("bucket", "day"))

	// Jobs close to the watchdog's timeouts.
	d.Stuck = []figure{
		{Label: "running", N: asks["stuckRun"].res.Total, Href: jobs(asks["stuckRun"].raw), Class: "running"},
		{Label: "scheduled", N: asks["stuckSched"].res.Total, Href: jobs(asks["stuckSched"].raw), Class: "scheduled"},
	}

	if d.Outbox.Oldest != nil {
		d.OutboxAge = since(now, *d.Outbox.Oldest)
	}

	// Rejected bus messages of the last day, among the newest.
	dayAgo := now.Add(-24 * time.Hour)
	reasonsRejected := map[string]int64{}
	var n int64
	for i, m := range rejected {
		if i == rejectedScan {
			d.RejectedMore = true
			break
		}
		if m.RejectedAt.Before(dayAgo) {
			break
		}
		n++
		reasonsRejected[string(m.Reason)]++
	}
	d.Rejected = figure{Label: "rejected", N: n, Href: s.link("/rejected", nil)}
	d.RejectedBy = top(reasonsRejected, n, func(v string) string { return s.link("/rejected", query{"reason": {v}}) })

	d.Questions = s.questions()
	return d, nil
}

// questions are the ready-made questions of the dashboard and the stats page.
func (s *site) questions() []question {
	return []question{
		{Text: "How often did minion creation fail last month, by reason?", Href: s.link("/stats", query{
			"state": {"CRASHED"}, "cause": {"minion"}, "kv.step": {"MINION_CREATION"}, "since": {"30d"}, "group_by": {"kv.reason"}})},
		{Text: "Crashes of the last week by cause and whose problem they are", Href: s.link("/stats", query{
			"state": {"CRASHED"}, "since": {"7d"}, "group_by": {"cause,notify"}})},
		{Text: "Jobs of the last week by task and state", Href: s.link("/stats", query{"since": {"7d"}, "group_by": {"taskname,state"}})},
		{Text: "Crashes a day by task, the last two weeks", Href: s.link("/stats", query{
			"state": {"CRASHED"}, "since": {"14d"}, "group_by": {"taskname"}, "bucket": {"day"}})},
		{Text: "Do retries help? Rescheduled crashes of the last month by cause and reason", Href: s.link("/stats/retries", query{
			"state": {"CRASHED"}, "since": {"30d"}, "group_by": {"cause,kv.reason"}})},
	}
}

// top lists the largest counts, at most topN, largest first, then by name.
func top(counts map[string]int64, total int64, href func(string) string) []topRow {
	var rows []topRow
	for k, n := range counts {
		if n == 0 || k == "" {
			continue
		}
		r := topRow{Label: k, N: n}
		if exact(k) {
			r.Href = href(k)
		}
		if total > 0 {
			r.Share = float64(n) / float64(total)
		}
		rows = append(rows, r)
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].N != rows[j].N {
			return rows[i].N > rows[j].N
		}
		return rows[i].Label < rows[j].Label
	})
	if len(rows) > topN {
		rows = rows[:topN]
	}
	return rows
}

// exact reports whether a filter can match v exactly: a comma in a value means OR.
func exact(v string) bool { return v != "" && !strings.Contains(v, ",") }

// val is a group value, empty for none.
func val(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
