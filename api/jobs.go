package api

import (
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// writeRequest is what every write handler gets after authentication and body reading.
type writeRequest struct {
	body []byte
	meta statemachine.Meta
}

// write wraps a write handler that needs scope: it authenticates, reads the body (413 above
// MaxBodyBytes) and names the request with X-Request-ID (echoed back; generated when absent),
// which becomes the message id in the job's history.
func (a *API) write(scope Scope, h func(w http.ResponseWriter, r *http.Request, req writeRequest) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		actor, herr := a.auth.identify(r, scope)
		if herr != nil {
			writeError(w, herr)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBodyBytes))
		if err != nil {
			var tooBig *http.MaxBytesError
			if errors.As(err, &tooBig) {
				writeError(w, &httpError{status: http.StatusRequestEntityTooLarge, message: "request body larger than 1 MiB"})
				return
			}
			writeError(w, &httpError{status: http.StatusBadRequest, message: "reading request body: " + err.Error()})
			return
		}
		requestID := r.Header.Get("X-Request-ID")
		if err := checkHeader(requestID, "X-Request-ID"); err != nil {
			a.fail(w, r, err)
			return
		}
		if requestID == "" {
			requestID = uuid.NewString()
		}
		w.Header().Set("X-Request-ID", requestID)
		meta := statemachine.Meta{Origin: statemachine.OriginHTTP, MessageID: requestID, Actor: actor}
		if err := h(w, r, writeRequest{body: body, meta: meta}); err != nil {
			a.fail(w, r, err)
		}
	}
}

func (a *API) createJob(w http.ResponseWriter, r *http.Request, req writeRequest) error {
	t, err := schemas.DecodeTrigger(req.body, schemas.Strict)
	if err != nil {
		return err
	}
	if key := r.Header.Get("Idempotency-Key"); key != "" {
		if err := checkHeader(key, "Idempotency-Key"); err != nil {
			return err
		}
		if err := schemas.CheckRequestID(key, "Idempotency-Key"); err != nil {
			return err
		}
		if t.RequestID != "" && t.RequestID != key {
			return &schemas.FieldError{Field: "request_id", Message: "differs from the Idempotency-Key header"}
		}
		t.RequestID = key
	}
	res, err := a.store.Create(r.Context(), NewJob(t), req.meta)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		w.Header().Set("Location", res.Job.Href())
	}
	writeJSON(w, status, res.Job)
	return nil
}

// NewJob turns a decoded trigger into what the store creates.
func NewJob(t schemas.Trigger) statemachine.NewJob {
	return statemachine.NewJob{
		UUID: t.UUID, TaskName: t.TaskName, Item: t.Item, ItemType: t.ItemType, Arch: t.Arch,
		Data: t.Data, Source: t.Source, RequestID: t.RequestID,
	}
}

func (a *API) startJob(w http.ResponseWriter, r *http.Request, req writeRequest) error {
	id, err := pathUUID(r)
	if err != nil {
		return err
	}
	body, err := schemas.DecodeStart(req.body, schemas.Strict, false)
	if err != nil {
		return err
	}
	if err := sameUUID(id, body.UUID); err != nil {
		return err
	}
	return a.apply(w, r, id, statemachine.Event{Meta: req.meta, Start: &body.Start})
}

func (a *API) finishJob(w http.ResponseWriter, r *http.Request, req writeRequest) error {
	id, err := pathUUID(r)
	if err != nil {
		return err
	}
	body, err := schemas.DecodeEnd(req.body, schemas.Strict, false)
	if err != nil {
		return err
	}
	if err := sameUUID(id, body.UUID); err != nil {
		return err
	}
	return a.apply(w, r, id, statemachine.Event{Meta: req.meta, End: &body.End})
}

// apply runs an event and answers: 200 with the job when applied or a duplicate, 409 with the
// current job when late or conflicting.
func (a *API) apply(w http.ResponseWriter, r *http.Request, id uuid.UUID, ev statemachine.Event) error {
	res, err := a.store.Apply(r.Context(), id, ev)
	if err != nil {
		return err
	}
	switch res.Verdict {
	case statemachine.Late:
		return &httpError{status: http.StatusConflict, job: &res.Job,
			message: "job already " + string(res.Job.State) + ": the start is recorded as late and the state is unchanged"}
	case statemachine.Conflict:
		return &httpError{status: http.StatusConflict, job: &res.Job,
			message: "job already " + string(res.Job.State) + " with another outcome: the report is recorded as a conflict"}
	}
	writeJSON(w, http.StatusOK, res.Job)
	return nil
}

func (a *API) getJob(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	job, err := a.store.Job(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, job)
}

func (a *API) jobEvents(w http.ResponseWriter, r *http.Request) {
	id, err := pathUUID(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	entries, err := a.store.History(r.Context(), id)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	if entries == nil {
		entries = []storage.HistoryEntry{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": entries})
}

func pathUUID(r *http.Request) (uuid.UUID, error) {
	s := r.PathValue("uuid")
	id, err := uuid.Parse(s)
	if err != nil || len(s) != 36 {
		return uuid.Nil, &schemas.FieldError{Field: "uuid", Message: "not a UUID: " + quote(s)}
	}
	return id, nil
}

func sameUUID(path, body uuid.UUID) error {
	if body != uuid.Nil && body != path {
		return &schemas.FieldError{Field: "uuid", Message: "differs from the job in the path"}
	}
	return nil
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return `"` + s + `"`
}

// maxHeaderIDBytes bounds X-Request-ID, which becomes the message id in a job's history.
const maxHeaderIDBytes = 255

// checkHeader holds an id header to the text rule and a length.
func checkHeader(value, name string) error {
	if err := schemas.CheckText(value, name); err != nil {
		return err
	}
	if len(value) > maxHeaderIDBytes && name == "X-Request-ID" {
		return &schemas.FieldError{Field: name, Message: "longer than " + strconv.Itoa(maxHeaderIDBytes) + " bytes"}
	}
	return nil
}
