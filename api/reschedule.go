package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"

	"github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"go.uber.org/zap"
)

// maxReasonBytes bounds the free-text reason of a reschedule request.
const maxReasonBytes = 1024

// rescheduleJob answers POST /api/v1/jobs/{uuid}/reschedule, body optional
// {"force": bool, "reason": "…"}: 201 with the new job, 200 with the successor an earlier
// reschedule made, 409 with the job for a job that is not CRASHED or whose crash is fatal
// without force.
func (a *API) rescheduleJob(w http.ResponseWriter, r *http.Request, req writeRequest) error {
	id, err := pathUUID(r)
	if err != nil {
		return err
	}
	obj := map[string]json.RawMessage{} // the body is optional
	if len(bytes.TrimSpace(req.body)) > 0 {
		if obj, err = schemas.DecodeObject(req.body, "", schemas.Strict, "force", "reason"); err != nil {
			return err
		}
	}
	var opts jobs.RescheduleOptions
	if opts.Force, err = optionalBool(obj, "force", ""); err != nil {
		return err
	}
	if opts.Reason, err = optionalReason(obj, ""); err != nil {
		return err
	}
	res, err := a.store.Reschedule(r.Context(), id, opts, req.meta)
	var refused *jobs.RefusedError
	if errors.As(err, &refused) {
		field := ""
		if refused.Reason == statemachine.SkipFatal {
			field = "force"
		}
		return &httpError{status: http.StatusConflict, message: refused.Error(), field: field, job: &refused.Job}
	}
	if err != nil {
		return err
	}
	status := http.StatusOK
	if res.Created {
		status = http.StatusCreated
		w.Header().Set("Location", res.Successor.Href())
	}
	writeJSON(w, status, res.Successor)
	return nil
}

// rescheduleBulk answers POST /api/v1/reschedule, body
// {"filter": {name: value or [values]}, "dry_run": bool, "force": bool, "reason": "…"}: every
// job the filter (the search filters of GET /jobs) matches is rescheduled or skipped, and the
// answer says which and why.
func (a *API) rescheduleBulk(w http.ResponseWriter, r *http.Request, req writeRequest) error {
	obj, err := schemas.DecodeObject(req.body, "", schemas.Strict, "filter", "dry_run", "force", "reason")
	if err != nil {
		return err
	}
	raw, ok := schemas.Present(obj, "filter")
	if !ok {
		return &schemas.FieldError{Field: "filter", Message: `required, e.g. {"state": "CRASHED", "cause": "minion", "since": "1d"}`}
	}
	params, err := filterParams(raw)
	if err != nil {
		return err
	}
	f, err := query.ParseFilter(params, a.store.Now())
	if err != nil {
		var fe *schemas.FieldError
		if errors.As(err, &fe) {
			return &schemas.FieldError{Field: "filter." + fe.Field, Message: fe.Message}
		}
		return err
	}
	var opts jobs.RescheduleOptions
	dryRun, err := optionalBool(obj, "dry_run", "")
	if err != nil {
		return err
	}
	if opts.Force, err = optionalBool(obj, "force", ""); err != nil {
		return err
	}
	if opts.Reason, err = optionalReason(obj, ""); err != nil {
		return err
	}
	res, err := a.store.RescheduleBulk(r.Context(), f, dryRun, opts, req.meta)
	if err != nil {
		return err
	}
	a.log.Info("bulk reschedule",
		zap.Bool("dry_run", dryRun), zap.Bool("force", opts.Force), zap.Int("matched", res.Matched),
		zap.Int("rescheduled", res.Rescheduled), zap.Int("skipped", res.Skipped),
		zap.String("filter", params.Encode()), zap.String("message_id", req.meta.MessageID),
		zap.String("actor", req.meta.Actor))
	writeJSON(w, http.StatusOK, res)
	return nil
}

// retryStatsResponse is the body of GET /api/v1/stats/retries.
type retryStatsResponse struct {
	Total   int64                   `json:"total"`
	GroupBy []storage.Field         `json:"group_by"`
	Bucket  storage.Bucket          `json:"bucket,omitempty"`
	Data    []storage.RetryStatsRow `json:"data"`
}

// retryStats answers GET /api/v1/stats/retries: for the rescheduled crashed jobs matching the
// filters, how many successors finished, crashed again or are pending, grouped by group_by and
// bucketed by bucket, as /stats.
func (a *API) retryStats(w http.ResponseWriter, r *http.Request) {
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
	res, err := a.store.RetryStats(r.Context(), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, retryStatsResponse{Total: res.Total, GroupBy: q.GroupBy, Bucket: q.Bucket, Data: res.Rows})
}

// optionalBool reads obj[key] as a boolean; absent or null is false.
func optionalBool(obj map[string]json.RawMessage, key, prefix string) (bool, error) {
	raw, ok := schemas.Present(obj, key)
	if !ok {
		return false, nil
	}
	var v bool
	if err := json.Unmarshal(raw, &v); err != nil {
		return false, &schemas.FieldError{Field: prefix + key, Message: "want true or false"}
	}
	return v, nil
}

// optionalReason reads obj["reason"], free text of at most maxReasonBytes; absent or null is "".
func optionalReason(obj map[string]json.RawMessage, prefix string) (string, error) {
	raw, ok := schemas.Present(obj, "reason")
	if !ok {
		return "", nil
	}
	var v string
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", &schemas.FieldError{Field: prefix + "reason", Message: "want a string"}
	}
	if len(v) > maxReasonBytes {
		return "", &schemas.FieldError{Field: prefix + "reason", Message: fmt.Sprintf("longer than %d bytes", maxReasonBytes)}
	}
	return v, nil
}

// filterParams turns a bulk request's filter object into the query parameters of a search:
// each value a string (a comma means OR), a list of strings, or a boolean or number (for fatal,
// say) in its string form.
func filterParams(raw json.RawMessage) (url.Values, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil || obj == nil {
		return nil, &schemas.FieldError{Field: "filter", Message: `want an object of search filters, e.g. {"state": "CRASHED", "since": "1d"}`}
	}
	if len(obj) == 0 {
		return nil, &schemas.FieldError{Field: "filter", Message: "give at least one filter: an empty one would match every job"}
	}
	params := url.Values{}
	for name, v := range obj {
		field := "filter." + name
		var list []json.RawMessage
		if json.Unmarshal(v, &list) != nil || string(bytes.TrimSpace(v)) == "null" {
			list = []json.RawMessage{v}
		}
		if len(list) == 0 {
			return nil, &schemas.FieldError{Field: field, Message: "empty list"}
		}
		for _, item := range list {
			s, err := filterValue(item)
			if err != nil {
				return nil, &schemas.FieldError{Field: field, Message: err.Error()}
			}
			params.Add(name, s)
		}
	}
	return params, nil
}

func filterValue(raw json.RawMessage) (string, error) {
	if string(bytes.TrimSpace(raw)) == "null" {
		return "", errors.New("want a string, a list of strings, a boolean or a number")
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var b bool
	if json.Unmarshal(raw, &b) == nil {
		return strconv.FormatBool(b), nil
	}
	var n json.Number
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&n) == nil {
		return n.String(), nil
	}
	return "", errors.New("want a string, a list of strings, a boolean or a number")
}
