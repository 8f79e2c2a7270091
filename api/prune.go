package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"time"

	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/schemas"
)

// prunePause is the wait between a prune's batches: writers get the database between them.
const prunePause = 20 * time.Millisecond

// prune answers POST /api/v1/prune, body optional {"dry_run": bool, "retention": "FINISHED=90d,…"}
// (admin): it applies the retention now, the server's (EXECDB_RETENTION) unless the body names
// one, and answers what it removed, or would remove in a dry run, and what it kept and why.
// Without a retention at all it is a 400 naming retention.
func (a *API) prune(w http.ResponseWriter, r *http.Request, req writeRequest) error {
	obj := map[string]json.RawMessage{}
	var err error
	if len(bytes.TrimSpace(req.body)) > 0 {
		if obj, err = schemas.DecodeObject(req.body, "", schemas.Strict, "dry_run", "retention"); err != nil {
			return err
		}
	}
	dryRun, err := optionalBool(obj, "dry_run", "")
	if err != nil {
		return err
	}
	retention := a.retention
	if raw, ok := schemas.Present(obj, "retention"); ok {
		var spec string
		if err := json.Unmarshal(raw, &spec); err != nil {
			return &schemas.FieldError{Field: "retention", Message: "must be a string such as FINISHED=90d,CRASHED=365d,rejected=30d"}
		}
		if retention, err = jobs.ParseRetention(spec); err != nil {
			return &schemas.FieldError{Field: "retention", Message: err.Error()}
		}
	}
	if retention.IsZero() {
		return &schemas.FieldError{Field: "retention", Message: "the server has no retention (EXECDB_RETENTION) and the request names none"}
	}
	res, err := a.store.Prune(r.Context(), retention, dryRun, prunePause)
	if a.onPrune != nil {
		a.onPrune(res)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, res)
	return nil
}
