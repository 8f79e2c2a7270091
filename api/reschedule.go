package api

import "net/http"

// rescheduleJob answers POST /api/v1/jobs/{uuid}/reschedule.
func (a *API) rescheduleJob(w http.ResponseWriter, r *http.Request, req writeRequest) error {
	return &httpError{status: http.StatusNotImplemented, message: "rescheduling is not implemented yet"}
}

// rescheduleBulk answers POST /api/v1/reschedule.
func (a *API) rescheduleBulk(w http.ResponseWriter, r *http.Request, req writeRequest) error {
	return &httpError{status: http.StatusNotImplemented, message: "rescheduling is not implemented yet"}
}

// retryStats answers GET /api/v1/stats/retries.
func (a *API) retryStats(w http.ResponseWriter, r *http.Request) {
	writeError(w, &httpError{status: http.StatusNotImplemented, message: "retry statistics are not implemented yet"})
}
