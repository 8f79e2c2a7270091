package api

import (
	"encoding/base64"
	"net/http"
	"net/url"
	"strconv"
	"unicode/utf8"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// Page sizes of GET /api/v1/rejected.
const (
	defaultRejectedLimit = 50
	maxRejectedLimit     = 500
)

// rejectedJSON is one rejected bus message on the wire: the raw body as a string when it is
// UTF-8, else base64.
type rejectedJSON struct {
	storage.RejectedMessage
	Body       *string `json:"body"`
	BodyBase64 *string `json:"body_base64,omitempty"`
}

// listRejected answers GET /api/v1/rejected: rejected bus messages, newest first, in pages of
// `limit` (default 50, at most 500); `before` continues after an id; `reason`, `transport`,
// `message_id` (as sent, or as stored: an id ExecDB could not store as it came is matched by
// its sha256: form) and `job` (a uuid) filter. Unknown parameters are refused like everywhere
// in the API.
func (a *API) listRejected(w http.ResponseWriter, r *http.Request) {
	q := storage.RejectedQuery{Limit: defaultRejectedLimit}
	params, err := queryParams(r)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	for name, values := range params {
		value := values[len(values)-1]
		bad := func(msg string) {
			writeError(w, &httpError{status: http.StatusBadRequest, field: name, message: msg})
		}
		switch name {
		case "limit":
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 || n > maxRejectedLimit {
				bad("want a whole number from 1 to " + strconv.Itoa(maxRejectedLimit) + ", got " + strconv.Quote(value))
				return
			}
			q.Limit = n
		case "before":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 1 {
				bad("want the id of a rejected message, got " + strconv.Quote(value))
				return
			}
			q.BeforeID = n
		case "reason":
			if !validReason(storage.RejectReason(value)) {
				bad("unknown reason " + strconv.Quote(value))
				return
			}
			q.Reason = storage.RejectReason(value)
		case "transport":
			if value != string(statemachine.OriginAMQP) && value != string(statemachine.OriginFedmsg) {
				bad("want amqp or fedmsg, got " + strconv.Quote(value))
				return
			}
			q.Transport = statemachine.Origin(value)
		case "message_id":
			if value == "" {
				bad("empty value")
				return
			}
			q.MessageID, _ = bus.StorableID(value)
		case "job":
			id, err := uuid.Parse(value)
			if err != nil || len(value) != 36 {
				bad("not a UUID: " + strconv.Quote(value))
				return
			}
			q.JobUUID = &id
		default:
			bad("unknown parameter")
			return
		}
	}
	want := q.Limit
	q.Limit++ // one more tells whether there is a next page
	msgs, err := a.store.Rejected(r.Context(), q)
	if err != nil {
		a.fail(w, r, err)
		return
	}
	var next *string
	if len(msgs) > want {
		msgs = msgs[:want]
		v := url.Values{}
		for name, values := range params {
			v[name] = values
		}
		v.Set("before", strconv.FormatInt(msgs[len(msgs)-1].ID, 10))
		v.Set("limit", strconv.Itoa(want))
		u := a.baseURL + "/api/v1/rejected?" + v.Encode() // a path without a base URL
		next = &u
	}
	data := make([]rejectedJSON, len(msgs))
	for i, m := range msgs {
		data[i] = rejectedJSON{RejectedMessage: m}
		if utf8.Valid(m.Body) {
			s := string(m.Body)
			data[i].Body = &s
		} else {
			s := base64.StdEncoding.EncodeToString(m.Body)
			data[i].BodyBase64 = &s
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"data": data, "next": next})
}

func validReason(r storage.RejectReason) bool {
	switch r {
	case storage.RejectUndecodable, storage.RejectSchema, storage.RejectUnknownTopic, storage.RejectTopicMismatch,
		storage.RejectUnknownJob, storage.RejectConflict, storage.RejectLate, storage.RejectUnprocessable:
		return true
	}
	return false
}
