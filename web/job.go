package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// maxLineage bounds the walk along a job's lineage, each way.
const maxLineage = 20

// kvRow is a key and its values, each value with the search for jobs that share it.
type kvRow struct {
	Key    string
	Values []kvValue
}

type kvValue struct {
	Value string
	Href  string // empty when no filter can match the value (it has a comma)
}

// lineageEntry is an attempt in a job's chain of reschedules.
type lineageEntry struct {
	UUID    uuid.UUID
	Href    string
	Attempt int
	State   string
	Created time.Time
	Current bool
	Missing bool // the job is gone (pruned) or unknown
}

// historyView is an entry of a job's history as the timeline shows it.
type historyView struct {
	storage.HistoryEntry
	VerdictClass string
	Detail       string // the detail, indented JSON
}

// retryView tells how to reschedule a crashed job: the pages do not write.
type retryView struct {
	Server    string // EXECDB_SERVER to export, when the pages know it
	CLI       string
	Curl      string
	Fatal     bool
	Successor *lineageEntry
}

// jobData is what /jobs/{uuid} shows.
type jobData struct {
	Job          jobView
	TaskHref     string
	ItemHref     string
	QueueWait    *time.Duration
	RunTime      *time.Duration
	InState      time.Duration // by ExecDB's clock, for the watchdog
	Timeout      time.Duration // the watchdog's for the job's state; 0 for an ended job
	Crash        *statemachine.Crash
	CrashHref    string // crashes alike (cause and notify)
	KeyVals      []kvRow
	Data         []kvRow
	Runner       *statemachine.Runner
	RunnerURL    string
	LogURL       string
	ArtifactsURL string
	ResultsURL   string
	APIHref      string
	EventsHref   string
	RejectedHref string
	Lineage      []lineageEntry
	LineageMore  bool // the chain is longer than the pages walk
	History      []historyView
	Retry        *retryView
}

// job serves /jobs/{uuid}: everything ExecDB knows about a job.
func (s *site) job(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("uuid")
	id, err := uuid.Parse(raw)
	if err != nil || len(raw) != 36 {
		s.errorPage(w, r, &pageError{Status: http.StatusNotFound, Message: "There is no page at " + r.URL.Path + ": a job's page is /jobs/ and its uuid, 36 characters with hyphens.", Field: "uuid"})
		return
	}
	ctx := r.Context()
	j, err := s.read.Job(ctx, id)
	if errors.Is(err, storage.ErrNotFound) {
		s.errorPage(w, r, &pageError{Status: http.StatusNotFound, Message: "ExecDB knows no job " + id.String() + ". It may have been pruned by the retention, or never created."})
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	history, err := s.read.History(ctx, id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	now := s.read.Now()
	d := jobData{
		Job:          s.jobView(j, now),
		TaskHref:     s.searchHref("taskname", j.TaskName),
		ItemHref:     s.searchHref("item", j.Item),
		Crash:        j.Crash,
		Runner:       j.Runner,
		LogURL:       externalURL(j.LogURL),
		ArtifactsURL: externalURL(j.ArtifactsURL),
		APIHref:      s.basePath + "/api/v1/jobs/" + id.String(),
		EventsHref:   s.basePath + "/api/v1/jobs/" + id.String() + "/events",
		RejectedHref: s.link("/rejected", query{"job": {id.String()}}),
	}
	if j.StartedAt != nil {
		w := since(j.StartedAt.UTC(), j.CreatedAt)
		d.QueueWait = &w
		if j.FinishedAt != nil {
			r := since(j.FinishedAt.UTC(), *j.StartedAt)
			d.RunTime = &r
		}
	}
	if !j.StateEnteredAt.IsZero() {
		d.InState = since(now, j.StateEnteredAt)
	}
	switch j.State {
	case statemachine.Running:
		d.Timeout = s.runTimeout
	case statemachine.Scheduled:
		d.Timeout = s.scheduleTimeout
	}
	if j.Runner != nil {
		d.RunnerURL = externalURL(j.Runner.URL)
	}
	if s.resultsDB != "" {
		d.ResultsURL = s.resultsDB + "/results?groups=" + url.QueryEscape(id.String())
	}
	if c := j.Crash; c != nil {
		d.CrashHref = s.link("/jobs", query{"state": {"CRASHED"}, "cause": {string(c.Cause)}, "notify": {string(c.Notify)}})
		d.KeyVals = s.kvRows(c.KeyVals, "kv.", query{"state": {"CRASHED"}})
	}
	d.Data = s.kvRows(j.Data, "data.", nil)
	for _, h := range history {
		d.History = append(d.History, historyView{HistoryEntry: h, VerdictClass: string(h.Verdict), Detail: indentJSON(h.Detail)})
	}
	if d.Lineage, d.LineageMore, err = s.lineage(r, j); err != nil {
		s.fail(w, r, err)
		return
	}
	if j.State == statemachine.Crashed {
		d.Retry = s.retry(j, d.Lineage)
	}
	title := j.TaskName + " on " + j.Item
	s.render(w, r, http.StatusOK, "job", page{Title: title, Section: "jobs", Data: d})
}

// searchHref is the search for jobs whose field has the value, or empty when no filter can
// match it exactly.
func (s *site) searchHref(field, value string) string {
	if !exact(value) {
		return ""
	}
	return s.link("/jobs", query{field: {value}})
}

// kvRows lists a key-value map sorted by key, each value linked to the search for it.
func (s *site) kvRows(kv statemachine.KeyVals, prefix string, base query) []kvRow {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var rows []kvRow
	for _, k := range keys {
		row := kvRow{Key: k}
		for _, v := range kv[k] {
			kv := kvValue{Value: v}
			if exact(v) {
				kv.Href = s.link("/jobs", base.with(prefix+k, v))
			}
			row.Values = append(row.Values, kv)
		}
		rows = append(rows, row)
	}
	return rows
}

// lineage walks the job's chain of attempts back along rescheduled_from and forward along
// rescheduled_to, at most maxLineage jobs each way.
func (s *site) lineage(r *http.Request, j statemachine.Job) ([]lineageEntry, bool, error) {
	if j.RescheduledFrom == nil && j.RescheduledTo == nil {
		return nil, false, nil
	}
	entry := func(j statemachine.Job) lineageEntry {
		return lineageEntry{UUID: j.UUID, Href: s.basePath + "/jobs/" + j.UUID.String(), Attempt: j.Attempt,
			State: strings.ToLower(string(j.State)), Created: j.CreatedAt}
	}
	seen := map[uuid.UUID]bool{j.UUID: true}
	more := false
	step := func(next *uuid.UUID, link func(statemachine.Job) *uuid.UUID) ([]lineageEntry, error) {
		var out []lineageEntry
		for next != nil {
			if len(out) == maxLineage {
				more = true
				break
			}
			if seen[*next] {
				break
			}
			seen[*next] = true
			k, err := s.read.Job(r.Context(), *next)
			if errors.Is(err, storage.ErrNotFound) {
				out = append(out, lineageEntry{UUID: *next, Missing: true})
				break
			}
			if err != nil {
				return nil, err
			}
			out = append(out, entry(k))
			next = link(k)
		}
		return out, nil
	}
	back, err := step(j.RescheduledFrom, func(k statemachine.Job) *uuid.UUID { return k.RescheduledFrom })
	if err != nil {
		return nil, false, err
	}
	forward, err := step(j.RescheduledTo, func(k statemachine.Job) *uuid.UUID { return k.RescheduledTo })
	if err != nil {
		return nil, false, err
	}
	var chain []lineageEntry
	for i := len(back) - 1; i >= 0; i-- {
		chain = append(chain, back[i])
	}
	cur := entry(j)
	cur.Current = true
	chain = append(chain, cur)
	chain = append(chain, forward...)
	return chain, more, nil
}

// retry tells how to reschedule a crashed job from the command line, with execdb and with
// curl; the pages themselves do not write (writes need tokens).
func (s *site) retry(j statemachine.Job, chain []lineageEntry) *retryView {
	v := &retryView{Server: s.baseURL, Fatal: j.Crash != nil && j.Crash.Fatal}
	if j.RescheduledTo != nil {
		for i, e := range chain {
			if e.UUID == *j.RescheduledTo {
				v.Successor = &chain[i]
			}
		}
		if v.Successor == nil {
			v.Successor = &lineageEntry{UUID: *j.RescheduledTo, Missing: true}
		}
		return v
	}
	id := j.UUID.String()
	v.CLI = "execdb job reschedule " + id
	v.Curl = `curl -sS -X POST "$EXECDB_SERVER/api/v1/jobs/` + id + `/reschedule" \` + "\n" +
		`  -H "Authorization: Bearer $EXECDB_TOKEN"`
	if v.Fatal {
		v.CLI += " --force"
		v.Curl += ` -d '{"force": true}'`
	}
	return v
}

// externalURL is u when it is an http or https URL, the only kind the pages link to; else
// empty, and the page shows it as text.
func externalURL(u string) string {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return ""
	}
	return u
}

// indentJSON indents a history entry's detail for reading.
func indentJSON(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var b bytes.Buffer
	if err := json.Indent(&b, raw, "", "  "); err != nil {
		return string(raw)
	}
	return b.String()
}
