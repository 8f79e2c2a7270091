// Package clienttest is an in-memory imitation of the ExecDB HTTP API (CONTRACT section 6) for
// testing clients: the client package and the execdb client commands. It decodes bodies with the
// same schemas package and decides with the same state machine as the real server, answers in
// the contract's shapes, and can be told to fail (5xx before or after applying a request) to
// exercise retries. It is not the server: no storage, no bus, no watchdog, and search and stats
// know only exact filters.
package clienttest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/client"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// Fault is an injected failure: the next request is answered with Status. With Apply the
// request takes effect first, as if the answer had been lost on its way back.
type Fault struct {
	Status int
	Apply  bool
}

// Request is a request the API received.
type Request struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
}

// API is the imitation. Its zero value is not ready; use New. It is safe for concurrent use.
type API struct {
	// Token, when set, is required as "Authorization: Bearer <Token>" on writes.
	Token string
	// Now is the clock; nil means time.Now.
	Now func() time.Time

	mux *http.ServeMux

	mu       sync.Mutex
	jobs     map[uuid.UUID]statemachine.Job
	order    []uuid.UUID // creation order
	byKey    map[string]uuid.UUID
	history  map[uuid.UUID][]client.HistoryEntry
	nextID   int64
	faults   []Fault
	requests []Request
}

// New makes an empty API.
func New() *API {
	a := &API{
		jobs:    map[uuid.UUID]statemachine.Job{},
		byKey:   map[string]uuid.UUID{},
		history: map[uuid.UUID][]client.HistoryEntry{},
		mux:     http.NewServeMux(),
	}
	a.mux.HandleFunc("POST /api/v1/jobs", a.create)
	a.mux.HandleFunc("GET /api/v1/jobs", a.search)
	a.mux.HandleFunc("GET /api/v1/jobs/{uuid}", a.get)
	a.mux.HandleFunc("GET /api/v1/jobs/{uuid}/events", a.events)
	a.mux.HandleFunc("POST /api/v1/jobs/{uuid}/start", a.start)
	a.mux.HandleFunc("POST /api/v1/jobs/{uuid}/finish", a.finish)
	a.mux.HandleFunc("POST /api/v1/jobs/{uuid}/reschedule", a.reschedule)
	a.mux.HandleFunc("GET /api/v1/stats", a.stats)
	return a
}

// Inject queues failures for the next requests, one request each.
func (a *API) Inject(faults ...Fault) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.faults = append(a.faults, faults...)
}

// Requests lists the requests received so far, oldest first.
func (a *API) Requests() []Request {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Request(nil), a.requests...)
}

// Jobs lists the jobs, oldest first.
func (a *API) Jobs() []statemachine.Job {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]statemachine.Job, 0, len(a.order))
	for _, id := range a.order {
		out = append(out, a.jobs[id])
	}
	return out
}

// ServeHTTP answers r as the contract says.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		writeError(w, http.StatusRequestEntityTooLarge, "body larger than 1 MiB", "")
		return
	}
	a.mu.Lock()
	a.requests = append(a.requests, Request{
		Method: r.Method, Path: r.URL.Path, Query: r.URL.RawQuery, Header: r.Header.Clone(), Body: body,
	})
	var fault *Fault
	if len(a.faults) > 0 {
		f := a.faults[0]
		a.faults = a.faults[1:]
		fault = &f
	}
	a.mu.Unlock()
	if fault != nil && !fault.Apply {
		writeError(w, fault.Status, "injected failure", "")
		return
	}
	if r.Method == http.MethodPost && a.Token != "" {
		auth := r.Header.Get("Authorization")
		if auth == "" {
			writeError(w, http.StatusUnauthorized, "missing token", "")
			return
		}
		if auth != "Bearer "+a.Token {
			writeError(w, http.StatusForbidden, "wrong token", "")
			return
		}
	}
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	if fault != nil {
		a.mux.ServeHTTP(discard{header: http.Header{}}, r)
		writeError(w, fault.Status, "injected failure after applying", "")
		return
	}
	a.mux.ServeHTTP(w, r)
}

func (a *API) now() time.Time {
	if a.Now != nil {
		return a.Now().UTC()
	}
	return time.Now().UTC()
}

func (a *API) create(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	t, err := schemas.DecodeTrigger(body, schemas.Strict)
	if err != nil {
		writeDecodeError(w, err)
		return
	}
	key := t.RequestID
	if key == "" {
		key = r.Header.Get("Idempotency-Key")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if key != "" {
		if id, ok := a.byKey[key]; ok {
			a.record(id, statemachine.EventCreate, statemachine.Duplicate, a.jobs[id].State, a.jobs[id].State, body)
			writeJSON(w, http.StatusOK, a.jobs[id])
			return
		}
	}
	id := t.UUID
	if id == uuid.Nil {
		id = uuid.Must(uuid.NewV7())
	} else if _, taken := a.jobs[id]; taken {
		writeError(w, http.StatusConflict, "uuid already used by another request", "uuid")
		return
	}
	if key == "" {
		key = id.String()
	}
	job, _ := statemachine.Create(statemachine.NewJob{
		UUID: id, TaskName: t.TaskName, Item: t.Item, ItemType: t.ItemType, Arch: t.Arch,
		Data: t.Data, Source: t.Source, RequestID: key,
	}, a.now())
	a.jobs[id] = job
	a.order = append(a.order, id)
	a.byKey[key] = id
	a.record(id, statemachine.EventCreate, statemachine.Applied, "", job.State, body)
	writeJSON(w, http.StatusCreated, job)
}

func (a *API) start(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	s, err := schemas.DecodeStart(body, schemas.Strict, false)
	if err != nil {
		writeDecodeError(w, err)
		return
	}
	a.apply(w, r, statemachine.Event{Start: &s.Start}, body)
}

func (a *API) finish(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	e, err := schemas.DecodeEnd(body, schemas.Strict, false)
	if err != nil {
		writeDecodeError(w, err)
		return
	}
	a.apply(w, r, statemachine.Event{End: &e.End}, body)
}

func (a *API) apply(w http.ResponseWriter, r *http.Request, ev statemachine.Event, body []byte) {
	id, ok := pathUUID(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	job, ok := a.jobs[id]
	if !ok {
		writeError(w, http.StatusNotFound, "no job "+id.String(), "")
		return
	}
	ev.Meta = statemachine.Meta{Origin: statemachine.OriginHTTP, ReceivedAt: a.now()}
	d := statemachine.Apply(job, ev)
	if d.Changed {
		a.jobs[id] = d.Job
	}
	a.record(id, ev.Kind(), d.Verdict, job.State, d.Job.State, body)
	switch d.Verdict {
	case statemachine.Late:
		writeConflict(w, "job already ended: start is late", d.Job)
	case statemachine.Conflict:
		writeConflict(w, fmt.Sprintf("job already ended as %s: report recorded as a conflict", job.State), d.Job)
	default:
		writeJSON(w, http.StatusOK, d.Job)
	}
}

func (a *API) reschedule(w http.ResponseWriter, r *http.Request) {
	id, ok := pathUUID(w, r)
	if !ok {
		return
	}
	var req struct {
		Force bool `json:"force"`
	}
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil && err != io.EOF {
		writeError(w, http.StatusBadRequest, "invalid body: "+err.Error(), "")
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	job, ok := a.jobs[id]
	switch {
	case !ok:
		writeError(w, http.StatusNotFound, "no job "+id.String(), "")
		return
	case job.RescheduledTo != nil:
		writeJSON(w, http.StatusOK, a.jobs[*job.RescheduledTo])
		return
	case job.State != statemachine.Crashed:
		writeError(w, http.StatusConflict, "only a crashed job can be rescheduled", "")
		return
	case job.Crash != nil && job.Crash.Fatal && !req.Force:
		writeError(w, http.StatusConflict, "the crash is fatal: force to reschedule anyway", "force")
		return
	}
	nid := uuid.Must(uuid.NewV7())
	from := id
	next, _ := statemachine.Create(statemachine.NewJob{
		UUID: nid, TaskName: job.TaskName, Item: job.Item, ItemType: job.ItemType, Arch: job.Arch,
		Data: job.Data, Source: job.Source, RequestID: "reschedule:" + id.String(),
		Attempt: job.Attempt + 1, RescheduledFrom: &from,
	}, a.now())
	a.jobs[nid] = next
	a.order = append(a.order, nid)
	job.RescheduledTo = &nid
	a.jobs[id] = job
	a.record(id, statemachine.EventReschedule, statemachine.Applied, job.State, job.State, nil)
	a.record(nid, statemachine.EventCreate, statemachine.Applied, "", next.State, nil)
	writeJSON(w, http.StatusCreated, next)
}

func (a *API) get(w http.ResponseWriter, r *http.Request) {
	id, ok := pathUUID(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	job, ok := a.jobs[id]
	if !ok {
		writeError(w, http.StatusNotFound, "no job "+id.String(), "")
		return
	}
	writeJSON(w, http.StatusOK, job)
}

func (a *API) events(w http.ResponseWriter, r *http.Request) {
	id, ok := pathUUID(w, r)
	if !ok {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if _, ok := a.jobs[id]; !ok {
		writeError(w, http.StatusNotFound, "no job "+id.String(), "")
		return
	}
	h := a.history[id]
	if h == nil {
		h = []client.HistoryEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": h})
}

// search answers GET /jobs with the jobs matching every exact filter, newest first, one page.
func (a *API) search(w http.ResponseWriter, r *http.Request) {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := []statemachine.Job{}
	for i := len(a.order) - 1; i >= 0; i-- {
		job := a.jobs[a.order[i]]
		if matches(job, r.URL.Query()) {
			out = append(out, job)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": out, "next": nil})
}

// stats answers GET /stats with counts of the matching jobs, grouped by group_by.
func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var groupBy []string
	if g := q.Get("group_by"); g != "" {
		groupBy = strings.Split(g, ",")
	}
	q.Del("group_by")
	q.Del("bucket")
	a.mu.Lock()
	defer a.mu.Unlock()
	type row struct {
		Group map[string]string `json:"group"`
		Count int               `json:"count"`
		Share float64           `json:"share"`
	}
	rows := map[string]*row{}
	total := 0
	for _, id := range a.order {
		job := a.jobs[id]
		if !matches(job, q) {
			continue
		}
		total++
		g := map[string]string{}
		var key []string
		for _, f := range groupBy {
			v := strings.Join(values(job, f), ",")
			g[f] = v
			key = append(key, v)
		}
		k := strings.Join(key, "\x00")
		if rows[k] == nil {
			rows[k] = &row{Group: g}
		}
		rows[k].Count++
	}
	out := []row{}
	for _, r := range rows {
		r.Share = float64(r.Count) / float64(total)
		out = append(out, *r)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Count > out[j].Count })
	writeJSON(w, http.StatusOK, map[string]any{"data": out, "total": total})
}

// matches reports whether job has, for every filter in q, one of the comma-separated values.
func matches(job statemachine.Job, q map[string][]string) bool {
	for f, wants := range q {
		have := values(job, f)
		ok := false
		for _, want := range wants {
			for _, w := range strings.Split(want, ",") {
				for _, h := range have {
					ok = ok || h == w
				}
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

// values is what job has for a filter or group field.
func values(job statemachine.Job, field string) []string {
	crash := statemachine.NormalizeCrash(job.Crash)
	switch {
	case field == "state":
		return []string{string(job.State)}
	case field == "taskname":
		return []string{job.TaskName}
	case field == "item":
		return []string{job.Item}
	case field == "item_type":
		return []string{job.ItemType}
	case field == "arch":
		return []string{job.Arch}
	case field == "notify" && job.Crash != nil:
		return []string{string(crash.Notify)}
	case field == "cause" && job.Crash != nil:
		return []string{string(crash.Cause)}
	case field == "fatal" && job.Crash != nil:
		return []string{fmt.Sprint(crash.Fatal)}
	case strings.HasPrefix(field, "kv.") && job.Crash != nil:
		return crash.KeyVals[strings.TrimPrefix(field, "kv.")]
	case strings.HasPrefix(field, "data."):
		return job.Data[strings.TrimPrefix(field, "data.")]
	}
	return nil
}

// record appends a history entry; the caller holds mu.
func (a *API) record(id uuid.UUID, kind statemachine.EventKind, v statemachine.Verdict, from, to statemachine.State, detail []byte) {
	a.nextID++
	var d json.RawMessage
	if json.Valid(detail) {
		d = append(json.RawMessage(nil), detail...)
	}
	a.history[id] = append(a.history[id], client.HistoryEntry{
		ID: a.nextID, JobUUID: id, Kind: kind, Verdict: v, Source: statemachine.OriginHTTP,
		StateFrom: from, StateTo: to, Detail: d, RecordedAt: a.now(),
	})
}

func pathUUID(w http.ResponseWriter, r *http.Request) (uuid.UUID, bool) {
	id, err := uuid.Parse(r.PathValue("uuid"))
	if err != nil {
		writeError(w, http.StatusNotFound, "no such job", "")
		return uuid.Nil, false
	}
	return id, true
}

func writeDecodeError(w http.ResponseWriter, err error) {
	var fe *schemas.FieldError
	if errors.As(err, &fe) {
		writeError(w, http.StatusBadRequest, fe.Message, fe.Field)
		return
	}
	writeError(w, http.StatusBadRequest, err.Error(), "")
}

func writeError(w http.ResponseWriter, status int, msg, field string) {
	e := map[string]any{"status": status, "message": msg}
	if field != "" {
		e["field"] = field
	}
	writeJSON(w, status, map[string]any{"error": e})
}

func writeConflict(w http.ResponseWriter, msg string, job statemachine.Job) {
	writeJSON(w, http.StatusConflict, map[string]any{
		"error": map[string]any{"status": http.StatusConflict, "message": msg},
		"job":   job,
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// discard is a ResponseWriter that forgets what is written: the answer of a request whose
// answer an injected fault replaces.
type discard struct{ header http.Header }

func (d discard) Header() http.Header         { return d.header }
func (d discard) Write(b []byte) (int, error) { return len(b), nil }
func (d discard) WriteHeader(int)             {}
