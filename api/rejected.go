package api

import "net/http"

// listRejected answers GET /api/v1/rejected: rejected bus messages, newest first.
func (a *API) listRejected(w http.ResponseWriter, r *http.Request) {
	writeError(w, &httpError{status: http.StatusNotImplemented, message: "rejected messages are listed once the bus consumers exist"})
}
