package jobstest

import (
	"context"
	"fmt"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	apiquery "github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// searchTests cover search and statistics over a seeded set of jobs whose answers the tests
// compute independently from the jobs themselves.
var searchTests = []test{
	{"SearchFilters", testSearchFilters},
	{"SearchPagesWhileJobsArrive", testSearchPagination},
	{"Stats", testStats},
	{"StatsDaysLongInSecondsToTheLastBit", testStatsDaysLong},
}

var seedBase = time.Date(2026, 10, 1, 0, 0, 0, 0, time.UTC)

// seed creates 72 jobs with a known spread of fields, states, crashes and durations, one an
// hour from seedBase, and returns them as stored.
func seed(t *testing.T, s *jobs.Service, b storage.Backend) []statemachine.Job {
	t.Helper()
	ctx := context.Background()
	tasks := []string{"rpmlint", "depcheck", "upgradepath"}
	var jobs []statemachine.Job
	for i := range 72 {
		created := seedBase.Add(time.Duration(i) * time.Hour)
		n := statemachine.NewJob{
			TaskName: tasks[i%3],
			Item:     fmt.Sprintf("pkg%d-1.0-1.fc45", i%10),
			ItemType: map[bool]string{true: "koji_build", false: "bodhi_update"}[i%2 == 0],
			Data:     statemachine.KeyVals{"koji_tag": {map[bool]string{true: "f45", false: "f44"}[i%5 == 0]}},
		}
		if i%4 == 0 {
			n.Arch = "x86_64"
		}
		if i%7 == 0 {
			n.Data["critpath"] = []string{"zsh", "bash"}
		}
		res, err := s.Create(ctx, n, statemachine.Meta{Origin: statemachine.OriginHTTP, ReceivedAt: created})
		if err != nil {
			t.Fatal(err)
		}
		id := res.Job.UUID
		kind := i % 6
		started := created.Add(time.Duration(i%3+1) * time.Minute)
		finished := started.Add(time.Duration(i%4+1) * 10 * time.Minute)
		later := statemachine.Meta{Origin: statemachine.OriginAMQP, ReceivedAt: finished.Add(time.Second)}
		if kind >= 1 {
			if _, err := s.Apply(ctx, id, statemachine.Event{Meta: later, Start: &statemachine.Start{StartedAt: &started}}); err != nil {
				t.Fatal(err)
			}
		}
		var end *statemachine.End
		switch kind {
		case 2:
			end = &statemachine.End{State: statemachine.Finished}
		case 3:
			end = &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: statemachine.NotifyTaskotron,
				Cause: statemachine.CauseMinion, KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {"TIMED_OUT"}}}}
		case 4:
			end = &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: statemachine.NotifyTaskotron,
				Cause: statemachine.CauseMinion, KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {"BACKING_STORE_LINKING"}}}}
		case 5:
			end = &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: statemachine.NotifyTask,
				Cause: statemachine.CauseTask, Fatal: i%12 == 5, KeyVals: statemachine.KeyVals{"reason": {"OOM"}, "tags": {"a", "b"}}}}
		}
		if end != nil {
			end.FinishedAt = &finished
			if _, err := s.Apply(ctx, id, statemachine.Event{Meta: later, End: end}); err != nil {
				t.Fatal(err)
			}
		}
		job, err := b.Job(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, job)
	}
	return jobs
}

// value returns the values a job has for a field: none when it lacks it.
func value(j statemachine.Job, f storage.Field) []string {
	if prefix, key, ok := f.Key(); ok {
		if prefix == storage.DataPrefix {
			return j.Data[key]
		}
		if j.Crash == nil {
			return nil
		}
		return j.Crash.KeyVals[key]
	}
	switch f {
	case storage.FieldState:
		return []string{string(j.State)}
	case storage.FieldTaskName:
		return []string{j.TaskName}
	case storage.FieldItem:
		return []string{j.Item}
	case storage.FieldItemType:
		return []string{j.ItemType}
	case storage.FieldArch:
		return []string{j.Arch}
	}
	if j.Crash == nil {
		return nil
	}
	switch f {
	case storage.FieldNotify:
		return []string{string(j.Crash.Notify)}
	case storage.FieldCause:
		return []string{string(j.Crash.Cause)}
	case storage.FieldFatal:
		return []string{fmt.Sprint(j.Crash.Fatal)}
	}
	panic("unknown field " + f)
}

// matches is the reference semantics of a filter.
func matches(j statemachine.Job, f storage.Filter) bool {
	if f.Since != nil && j.CreatedAt.Before(*f.Since) || f.Until != nil && !j.CreatedAt.Before(*f.Until) {
		return false
	}
	for _, c := range f.Conditions {
		hit := false
		for _, have := range value(j, c.Field) {
			for _, want := range c.Match.Values {
				if c.Match.Like {
					re := "^" + strings.ReplaceAll(regexp.QuoteMeta(want), `\*`, ".*") + "$"
					hit = hit || regexp.MustCompile(re).MatchString(have)
				} else {
					hit = hit || have == want
				}
			}
		}
		if !hit {
			return false
		}
	}
	return true
}

func parseFilter(t *testing.T, s *jobs.Service, query string) storage.Filter {
	t.Helper()
	params, err := url.ParseQuery(query)
	if err != nil {
		t.Fatal(err)
	}
	f, err := apiquery.ParseFilter(params, s.Now())
	if err != nil {
		t.Fatalf("parse %q: %v", query, err)
	}
	return f
}

// walk reads every page of a search.
func walk(t *testing.T, s *jobs.Service, f storage.Filter, limit int, between func()) []statemachine.Job {
	t.Helper()
	var all []statemachine.Job
	page := storage.Page{Limit: limit}
	for range 1000 {
		jobs, next, err := s.Search(context.Background(), f, page)
		if err != nil {
			t.Fatalf("search: %v", err)
		}
		if len(jobs) > limit {
			t.Fatalf("got a page of %d, limit %d", len(jobs), limit)
		}
		all = append(all, jobs...)
		if next == nil {
			return all
		}
		if between != nil {
			between()
		}
		page.After = next
	}
	t.Fatal("pagination does not end")
	return nil
}

func uuids(jobs []statemachine.Job) []string {
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.UUID.String())
	}
	return ids
}

func testSearchFilters(t *testing.T, open env) {
	s, b := newStore(t, open)
	jobs := seed(t, s, b)
	queries := []string{
		"",
		"state=CRASHED",
		"state=RUNNING,SCHEDULED",
		"state=RUNNING&state=FINISHED",
		"taskname=rpmlint",
		"item=pkg3-1.0-1.fc45",
		"item:like=pkg1*",
		"item:like=*fc45",
		"item:like=PKG1*", // case-sensitive: nothing
		"item_type=bodhi_update",
		"arch=x86_64",
		"arch=noarch&taskname=depcheck",
		"notify=task",
		"cause=minion",
		"cause=minion,task&notify=taskotron",
		"fatal=true",
		"fatal=false",
		"kv.reason=TIMED_OUT",
		"kv.step=MINION_CREATION&kv.reason=BACKING_STORE_LINKING",
		"kv.reason:like=*_*",
		"kv.tags=b",
		"kv.missing=x",
		"data.koji_tag=f45",
		"data.critpath=bash&state=CRASHED",
		"since=2026-10-02T00:00:00Z",
		"since=2026-10-02T00:00:00Z&until=2026-10-02T12:00:00Z",
		"state=CRASHED&cause=minion&kv.step=MINION_CREATION&since=2026-10-02T06:00:00Z",
	}
	for _, query := range queries {
		t.Run(query, func(t *testing.T) {
			f := parseFilter(t, s, query)
			var want []statemachine.Job
			for _, j := range jobs {
				if matches(j, f) {
					want = append(want, j)
				}
			}
			sort.Slice(want, func(i, k int) bool { return want[i].CreatedAt.After(want[k].CreatedAt) })
			got := walk(t, s, f, 7, nil)
			if g, w := strings.Join(uuids(got), " "), strings.Join(uuids(want), " "); g != w {
				t.Errorf("got %d jobs, want %d (newest first)\n got %s\nwant %s", len(got), len(want), g, w)
			}
			if query == "" && len(got) != 72 {
				t.Errorf("got %d jobs unfiltered, want 72", len(got))
			}
		})
	}
	// Full jobs come back, key-values included.
	got, _, err := s.Search(context.Background(), parseFilter(t, s, "kv.tags=a"), storage.Page{Limit: 1})
	if err != nil || len(got) != 1 || len(got[0].Crash.KeyVals["tags"]) != 2 || got[0].Data["koji_tag"] == nil {
		t.Errorf("got %+v %v, want one job with its data and crash keyvals", got, err)
	}
}

// testSearchPagination walks every page while new jobs arrive: each seeded job comes exactly
// once and in order; jobs created after the walk began do not come.
func testSearchPagination(t *testing.T, open env) {
	s, b := newStore(t, open)
	jobs := seed(t, s, b)
	added := 0
	got := walk(t, s, storage.Filter{}, 7, func() {
		added++
		at := seedBase.Add(time.Duration(1000+added) * time.Hour)
		if _, err := s.Create(context.Background(), newJob(), statemachine.Meta{Origin: statemachine.OriginHTTP, ReceivedAt: at}); err != nil {
			t.Fatal(err)
		}
	})
	seen := map[uuid.UUID]int{}
	for _, j := range got {
		seen[j.UUID]++
	}
	for _, j := range jobs {
		if seen[j.UUID] != 1 {
			t.Errorf("job %s came %d times, want once", j.UUID, seen[j.UUID])
		}
	}
	if len(got) != len(jobs) || added != 10 {
		t.Errorf("got %d jobs over %d pages, want %d over 11", len(got), added+1, len(jobs))
	}
	for i := 1; i < len(got); i++ {
		if got[i].CreatedAt.After(got[i-1].CreatedAt) {
			t.Fatalf("job %d is newer than job %d", i, i-1)
		}
	}
}

// testStatsDaysLong: a duration of days comes out in seconds the same on every backend, to the
// last bit: the microseconds within the day / 10^6 + the days × 86,400, in float64, as
// PostgreSQL's date_part('epoch', interval) computes it (µs / 10^6 alone differs in the last
// bit for these two).
func testStatsDaysLong(t *testing.T, open env) {
	s, _ := newStore(t, open)
	ctx := context.Background()
	created := seedBase
	started := created.Add(265_099_994_691 * time.Microsecond)  // 3 days 1:38:19.994691
	finished := started.Add(247_078_678_714 * time.Microsecond) // 2 days 20:37:58.678714
	res, err := s.Create(ctx, newJob(), statemachine.Meta{Origin: statemachine.OriginHTTP, ReceivedAt: created})
	if err != nil {
		t.Fatal(err)
	}
	meta := statemachine.Meta{Origin: statemachine.OriginHTTP, ReceivedAt: finished}
	apply(t, s, res.Job.UUID, statemachine.Event{Meta: meta, Start: &statemachine.Start{StartedAt: &started}})
	apply(t, s, res.Job.UUID, statemachine.Event{Meta: meta, End: &statemachine.End{State: statemachine.Finished, FinishedAt: &finished}})
	got, err := s.Stats(ctx, storage.StatsQuery{GroupBy: []storage.Field{"state"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Rows) != 1 || got.Rows[0].QueueWait == nil || got.Rows[0].RunTime == nil {
		t.Fatalf("one finished job: got %s", js(got))
	}
	if w, r := got.Rows[0].QueueWait.P50, got.Rows[0].RunTime.Max; w != 265099.99469099997 || r != 247078.67871399998 {
		t.Errorf("queue wait %.17g, run time %.17g: want 265099.99469099997 and 247078.67871399998", w, r)
	}
}

// expectedStats is the reference semantics of stats.
func expectedStats(jobs []statemachine.Job, q storage.StatsQuery) storage.StatsResult {
	type acc struct {
		row       storage.StatsRow
		wait, run []float64
	}
	groups := map[string]*acc{}
	var order []string
	var total int64
	for _, j := range jobs {
		if !matches(j, q.Filter) {
			continue
		}
		total++
		combos := []map[storage.Field]*string{{}}
		for _, f := range q.GroupBy {
			vals := value(j, f)
			var next []map[storage.Field]*string
			for _, c := range combos {
				if len(vals) == 0 {
					m := clone(c)
					m[f] = nil
					next = append(next, m)
				}
				for _, v := range vals {
					m := clone(c)
					m[f] = &v
					next = append(next, m)
				}
			}
			combos = next
		}
		for _, c := range combos {
			var bucket *time.Time
			if q.Bucket != storage.BucketNone {
				b := truncate(j.CreatedAt, q.Bucket)
				bucket = &b
			}
			key := fmt.Sprint(deref(c, q.GroupBy), bucket)
			a := groups[key]
			if a == nil {
				a = &acc{row: storage.StatsRow{Group: c, Bucket: bucket}}
				groups[key] = a
				order = append(order, key)
			}
			a.row.Count++
			if j.State.Terminal() && j.StartedAt != nil {
				a.wait = append(a.wait, seconds(j.StartedAt.Sub(j.CreatedAt)))
				if j.FinishedAt != nil {
					a.run = append(a.run, seconds(j.FinishedAt.Sub(*j.StartedAt)))
				}
			}
		}
	}
	res := storage.StatsResult{Total: total, Rows: []storage.StatsRow{}}
	for _, k := range order {
		a := groups[k]
		a.row.Share = float64(a.row.Count) / float64(total)
		a.row.QueueWait, a.row.RunTime = summary(a.wait), summary(a.run)
		res.Rows = append(res.Rows, a.row)
	}
	storage.SortStatsRows(res.Rows, q.GroupBy)
	return res
}

// seconds is d in seconds as testStatsDaysLong states it.
func seconds(d time.Duration) float64 {
	us := d.Microseconds()
	return float64(us%86_400_000_000)/1e6 + float64(us/86_400_000_000)*86_400
}

func clone(m map[storage.Field]*string) map[storage.Field]*string {
	c := make(map[storage.Field]*string, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}

func deref(m map[storage.Field]*string, fields []storage.Field) []string {
	var out []string
	for _, f := range fields {
		if m[f] == nil {
			out = append(out, "<nil>")
		} else {
			out = append(out, *m[f])
		}
	}
	return out
}

func truncate(t time.Time, b storage.Bucket) time.Time {
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	switch b {
	case storage.BucketHour:
		return t.Truncate(time.Hour)
	case storage.BucketWeek:
		return day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	}
	return day
}

func summary(xs []float64) *storage.Durations {
	if len(xs) == 0 {
		return nil
	}
	sort.Float64s(xs)
	return &storage.Durations{P50: storage.Percentile(xs, 0.5), P90: storage.Percentile(xs, 0.9), Max: xs[len(xs)-1]}
}

func testStats(t *testing.T, open env) {
	s, b := newStore(t, open)
	jobs := seed(t, s, b)
	cases := []struct {
		filter  string
		groupBy []storage.Field
		bucket  storage.Bucket
	}{
		{"", nil, ""},
		{"", []storage.Field{"state"}, ""},
		{"state=CRASHED", []storage.Field{"cause"}, ""},
		{"state=CRASHED&cause=minion&kv.step=MINION_CREATION", []storage.Field{"kv.reason"}, ""},
		{"", []storage.Field{"kv.reason"}, ""},
		{"state=CRASHED", []storage.Field{"kv.tags", "fatal"}, ""},
		{"", []storage.Field{"taskname", "arch"}, ""},
		{"", []storage.Field{"data.critpath"}, ""},
		{"", []storage.Field{"notify", "cause"}, storage.BucketDay},
		{"state=FINISHED", nil, storage.BucketHour},
		{"", []storage.Field{"state"}, storage.BucketWeek},
		{"kv.missing=x", []storage.Field{"state"}, ""},
		// Fields of fixed values, NULL among them (jobs that never crashed), asked without
		// GROUP BY on PostgreSQL; with more combinations than it asks that way, with it.
		{"", []storage.Field{"notify", "cause"}, ""},
		{"", []storage.Field{"fatal"}, ""},
		{"taskname=rpmlint", []storage.Field{"state", "fatal"}, ""},
		{"", []storage.Field{"state", "notify", "cause"}, ""},
	}
	for _, tc := range cases {
		name := fmt.Sprintf("%s group_by=%v bucket=%s", tc.filter, tc.groupBy, tc.bucket)
		t.Run(name, func(t *testing.T) {
			q := storage.StatsQuery{Filter: parseFilter(t, s, tc.filter), GroupBy: tc.groupBy, Bucket: tc.bucket}
			got, err := s.Stats(context.Background(), q)
			if err != nil {
				t.Fatal(err)
			}
			want := expectedStats(jobs, q)
			if g, w := js(got), js(want); g != w {
				t.Errorf("got  %s\nwant %s", g, w)
			}
		})
	}
	// The question of CONTRACT section 6, answered with known numbers: 12 jobs each.
	q := storage.StatsQuery{Filter: parseFilter(t, s, "state=CRASHED&cause=minion&kv.step=MINION_CREATION"), GroupBy: []storage.Field{"kv.reason"}}
	got, _ := s.Stats(context.Background(), q)
	if len(got.Rows) != 2 || got.Total != 24 || got.Rows[0].Count != 12 || got.Rows[1].Count != 12 || *got.Rows[0].Group["kv.reason"] != "BACKING_STORE_LINKING" {
		t.Errorf("minion creation failures by reason: got %s, want 12 BACKING_STORE_LINKING and 12 TIMED_OUT of 24", js(got))
	}
}
