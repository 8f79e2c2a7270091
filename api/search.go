package api

import "net/http"

// searchJobs answers GET /api/v1/jobs.
func (a *API) searchJobs(w http.ResponseWriter, r *http.Request) {
	writeError(w, &httpError{status: http.StatusNotImplemented, message: "search is not implemented yet"})
}

// stats answers GET /api/v1/stats.
func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	writeError(w, &httpError{status: http.StatusNotImplemented, message: "stats are not implemented yet"})
}
