package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	apiquery "github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
)

// Page size of /jobs: the API's default (a keyval search walks newest first until the page is
// full, so a larger page costs more than its rows).
const defaultJobsLimit = storage.DefaultLimit

// jobView is a job as the lists and the job page show it.
type jobView struct {
	statemachine.Job
	Href  string
	State string // the state in lower case, for its colour
	// Took is how long the job ran (finished or crashed), has been running, or has been
	// waiting to start; TookLabel says which.
	Took      time.Duration
	TookLabel string
}

func (s *site) jobView(j statemachine.Job, now time.Time) jobView {
	v := jobView{Job: j, Href: s.basePath + "/jobs/" + j.UUID.String(), State: strings.ToLower(string(j.State))}
	switch {
	case j.State.Terminal() && j.StartedAt != nil && j.FinishedAt != nil:
		v.Took, v.TookLabel = j.FinishedAt.Sub(*j.StartedAt), "ran"
	case j.State.Terminal() && j.FinishedAt != nil:
		v.Took, v.TookLabel = j.FinishedAt.Sub(j.CreatedAt), "ended after (never started)"
	case j.State == statemachine.Running && j.StartedAt != nil:
		v.Took, v.TookLabel = since(now, *j.StartedAt), "running for"
	default:
		v.Took, v.TookLabel = since(now, j.CreatedAt), "waiting for"
	}
	if v.Took < 0 {
		v.Took = 0
	}
	return v
}

// jobsData is what /jobs shows.
type jobsData struct {
	Form      filterForm
	Jobs      []jobView
	Searched  bool
	Next      string // the following page, or empty on the last
	First     string // the first page, when this is a following one
	APIHref   string // the same search in the API
	StatsHref string // the same filters on /stats
	Error     *pageError
	Query     string // the search as the API's query string
}

// jobs serves /jobs: the search form and a page of the jobs it matches, newest first.
func (s *site) jobs(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q, redirected, err := s.redirectCanonical(w, r, "/jobs", q)
	if redirected {
		return
	}
	d := jobsData{Form: newFilterForm(q, "limit", "after"), Query: q.clone("after").encode()}
	d.APIHref = s.link("/api/v1/jobs", q)
	d.StatsHref = s.link("/stats", q.clone("limit", "after"))
	if err != nil {
		s.jobsError(w, r, d, err)
		return
	}
	now := s.read.Now()
	f, err := apiquery.ParseFilter(url.Values(q), now, "limit", "after")
	if err != nil {
		s.jobsError(w, r, d, err)
		return
	}
	pg, err := parsePage(q, defaultJobsLimit, storage.MaxLimit)
	if err != nil {
		s.jobsError(w, r, d, err)
		return
	}
	jobs, next, err := s.read.Search(r.Context(), f, storage.Page{Limit: pg.limit, After: pg.after})
	if err != nil {
		s.jobsError(w, r, d, err)
		return
	}
	d.Searched = true
	for _, j := range jobs {
		d.Jobs = append(d.Jobs, s.jobView(j, now))
	}
	if next != nil {
		d.Next = s.link("/jobs", absoluteWindow(q, f).with("after", next.String()))
	}
	if pg.after != nil {
		d.First = s.link("/jobs", q.clone("after"))
	}
	s.render(w, r, http.StatusOK, "jobs", page{Title: "Jobs", Section: "jobs", Data: d})
}

// jobsError shows the search form with what is wrong with it (400 naming the field), or the
// error page for anything but bad input.
func (s *site) jobsError(w http.ResponseWriter, r *http.Request, d jobsData, err error) {
	e := s.pageErrorOf(r, err)
	if e.Status != http.StatusBadRequest {
		s.errorPage(w, r, e)
		return
	}
	d.Error = e
	s.render(w, r, e.Status, "jobs", page{Title: "Jobs", Section: "jobs", Data: d})
}

// pageParams are the paging parameters of a list.
type pageParams struct {
	limit int
	after *storage.Cursor
}

// parsePage reads limit and after as the API does.
func parsePage(q query, def, maxLimit int) (pageParams, error) {
	p := pageParams{limit: def}
	if vs, ok := q["limit"]; ok {
		n, err := strconv.Atoi(strings.Join(vs, ","))
		if err != nil || n < 1 || n > maxLimit {
			return p, &schemas.FieldError{Field: "limit", Message: "want a whole number from 1 to " + strconv.Itoa(maxLimit)}
		}
		p.limit = n
	}
	if vs, ok := q["after"]; ok {
		c, err := storage.ParseCursor(strings.Join(vs, ","))
		if err != nil {
			return p, &schemas.FieldError{Field: "after", Message: "not a cursor from a previous page's next link"}
		}
		p.after = &c
	}
	return p, nil
}
