package api

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
)

// searchJobs answers GET /api/v1/jobs: jobs matching the filters, newest first, a page at a
// time; "next" is the URL of the following page or null.
func (a *API) searchJobs(w http.ResponseWriter, r *http.Request) {
	params, err := queryParams(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	f, err := query.ParseFilter(params, a.store.Now(), "limit", "after")
	if err != nil {
		a.fail(w, r, err)
		return
	}
	page, err := parsePage(params)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	jobs, next, err := a.store.Search(r.Context(), f, page)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if jobs == nil {
		jobs = []statemachine.Job{}
	}
	var nextURL *string
	if next != nil {
		// The next page must cover the same window: relative times become absolute.
		if f.Since != nil {
			params.Set("since", f.Since.Format(time.RFC3339Nano))
		}
		if f.Until != nil {
			params.Set("until", f.Until.Format(time.RFC3339Nano))
		}
		params.Set("after", next.String())
		u := a.absoluteURL(r, r.URL.Path, params)
		nextURL = &u
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": jobs, "next": nextURL})
}

func parsePage(params url.Values) (storage.Page, error) {
	page := storage.Page{Limit: storage.DefaultLimit}
	if s := params.Get("limit"); s != "" || params.Has("limit") {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > storage.MaxLimit {
			return page, &schemas.FieldError{Field: "limit", Message: "want a whole number from 1 to " + strconv.Itoa(storage.MaxLimit)}
		}
		page.Limit = n
	}
	if s := params.Get("after"); s != "" || params.Has("after") {
		c, err := storage.ParseCursor(s)
		if err != nil {
			return page, &schemas.FieldError{Field: "after", Message: "not a cursor from a previous page's next"}
		}
		page.After = &c
	}
	return page, nil
}

// statsResponse is the body of GET /api/v1/stats.
type statsResponse struct {
	Total   int64              `json:"total"`
	GroupBy []storage.Field    `json:"group_by"`
	Bucket  storage.Bucket     `json:"bucket,omitempty"`
	Data    []storage.StatsRow `json:"data"`
}

// stats answers GET /api/v1/stats: counts, shares and durations of the jobs matching the
// filters, grouped by group_by and bucketed by bucket.
func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	params, err := queryParams(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	q, err := a.statsQuery(params)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	res, err := a.store.Stats(r.Context(), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, statsResponse{Total: res.Total, GroupBy: q.GroupBy, Bucket: q.Bucket, Data: res.Rows})
}

// statsQuery reads the filters, group_by and bucket of a stats request.
func (a *API) statsQuery(params url.Values) (storage.StatsQuery, error) {
	f, err := query.ParseFilter(params, a.store.Now(), "group_by", "bucket")
	if err != nil {
		return storage.StatsQuery{}, err
	}
	q := storage.StatsQuery{Filter: f, GroupBy: []storage.Field{}}
	for _, raw := range params["group_by"] {
		for _, name := range strings.Split(raw, ",") {
			field, err := query.ParseField(name)
			if err != nil {
				return q, &schemas.FieldError{Field: "group_by", Message: strconv.Quote(name) + ": " + err.Error()}
			}
			q.GroupBy = append(q.GroupBy, field)
		}
	}
	if q.Bucket, err = query.ParseBucket(params.Get("bucket")); err != nil {
		return q, &schemas.FieldError{Field: "bucket", Message: err.Error()}
	}
	return q, nil
}

// absoluteURL is path?params under the base URL ExecDB is served under (EXECDB_BASE_URL), or
// else on the host the client asked, so that it can be followed as is.
func (a *API) absoluteURL(r *http.Request, path string, params url.Values) string {
	if a.baseURL != "" {
		return a.baseURL + path + "?" + params.Encode()
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	if p := r.Header.Get("X-Forwarded-Proto"); p == "http" || p == "https" {
		scheme = p
	}
	u := url.URL{Scheme: scheme, Host: r.Host, Path: path, RawQuery: params.Encode()}
	return u.String()
}

// queryParams reads the query string of r strictly: an escape that is not one ("%zz") is an
// error rather than a parameter silently dropped, and every name and value keeps the text rule
// (CONTRACT section 1, v1.1: "%00" or "%FF" is refused with the parameter named).
func queryParams(r *http.Request) (url.Values, error) {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &schemas.FieldError{Message: "query string: " + err.Error()}
	}
	for name, values := range params {
		if err := schemas.CheckText(name, "query parameter "+name); err != nil {
			return nil, err
		}
		for _, v := range values {
			if err := schemas.CheckText(v, name); err != nil {
				return nil, err
			}
		}
	}
	return params, nil
}
