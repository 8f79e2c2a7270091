package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"go.uber.org/zap"
)

// httpError is an error with the status and field the client is told.
type httpError struct {
	status  int
	message string
	field   string
	job     *statemachine.Job // the current job, sent along with a 409
}

func (e *httpError) Error() string { return e.message }

type errorBody struct {
	Error struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
		Field   string `json:"field,omitempty"`
	} `json:"error"`
	Job *statemachine.Job `json:"job,omitempty"`
}

// fail maps any error onto a response, in one place: validation errors are 400 naming the
// field, unknown jobs 404, taken keys 409, a database that cannot be reached 503; anything else
// is logged and shown as "internal error".
func (a *API) fail(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	var fe *schemas.FieldError
	switch {
	case errors.As(err, &he):
	case errors.As(err, &fe):
		he = &httpError{status: http.StatusBadRequest, message: fe.Message, field: fe.Field}
	case errors.Is(err, storage.ErrNotFound):
		he = &httpError{status: http.StatusNotFound, message: "job not found"}
	case errors.Is(err, storage.ErrPruneBusy):
		he = &httpError{status: http.StatusConflict, message: "another process is pruning the database right now; try again later"}
	case errors.Is(err, storage.ErrConflict):
		he = &httpError{status: http.StatusConflict, message: strings.TrimSuffix(err.Error(), ": "+storage.ErrConflict.Error())}
	case errors.Is(err, r.Context().Err()) && r.Context().Err() != nil:
		he = &httpError{status: http.StatusServiceUnavailable, message: "request cancelled"}
	case errors.Is(err, storage.ErrUnavailable):
		// A client's retry will do (execdb's client commands retry 5xx answers).
		a.log.Warn("database unavailable", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		w.Header().Set("Retry-After", "5")
		he = &httpError{status: http.StatusServiceUnavailable, message: "database unavailable; try again shortly"}
	default:
		a.log.Error("internal error", zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.Error(err))
		he = &httpError{status: http.StatusInternalServerError, message: "internal error"}
	}
	writeError(w, he)
}

func writeError(w http.ResponseWriter, he *httpError) {
	var body errorBody
	body.Error.Status = he.status
	body.Error.Message = he.message
	body.Error.Field = he.field
	body.Job = he.job
	writeJSON(w, he.status, body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.Encode(v) //nolint:errcheck // the client went away
}
