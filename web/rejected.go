package web

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// Page sizes of /rejected: the API's.
const (
	defaultRejectedLimit = 50
	maxRejectedLimit     = 500
)

// rejectReasons are the reasons a message is rejected, for the filter (late only for
// rejections stored before v1.1).
var rejectReasons = []storage.RejectReason{storage.RejectUndecodable, storage.RejectSchema, storage.RejectUnknownTopic,
	storage.RejectTopicMismatch, storage.RejectUnknownJob, storage.RejectConflict, storage.RejectUnprocessable, storage.RejectLate}

// rejectedView is a rejected message as the list shows it.
type rejectedView struct {
	storage.RejectedMessage
	JobHref     string // the job's page, when ExecDB has the job
	JobFilter   string // the rejected messages about the same job
	BodyText    string // the body as text when it is UTF-8
	BodyBase64  string // else base64
	ReasonClass string
}

// rejectedData is what /rejected shows.
type rejectedData struct {
	Q         query
	Reasons   []string
	Messages  []rejectedView
	Next      string
	First     string
	APIHref   string
	Error     *pageError
	Filtered  bool
	Limit     int
	Transport []string
}

// rejected serves /rejected: the bus messages ExecDB did not apply, newest first, filterable
// by reason, transport, message id and job, a page at a time (before, as the API pages).
func (s *site) rejected(w http.ResponseWriter, r *http.Request) {
	q, err := parseQuery(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	q, redirected, err := s.redirectCanonical(w, r, "/rejected", q)
	if redirected {
		return
	}
	d := rejectedData{Q: q, Transport: []string{string(statemachine.OriginAMQP), string(statemachine.OriginFedmsg)}}
	for _, reason := range rejectReasons {
		d.Reasons = append(d.Reasons, string(reason))
	}
	d.APIHref = s.link("/api/v1/rejected", q)
	if err == nil {
		err = s.listRejected(r, q, &d)
	}
	if err != nil {
		e := s.pageErrorOf(r, err)
		if e.Status != http.StatusBadRequest {
			s.errorPage(w, r, e)
			return
		}
		d.Error = e
		s.render(w, r, e.Status, "rejected", page{Title: "Rejected messages", Section: "rejected", Data: d})
		return
	}
	s.render(w, r, http.StatusOK, "rejected", page{Title: "Rejected messages", Section: "rejected", Data: d})
}

// rejectedQuery reads the parameters of /rejected as the API does.
func rejectedQuery(q query) (storage.RejectedQuery, error) {
	rq := storage.RejectedQuery{Limit: defaultRejectedLimit}
	for name, values := range q {
		value := values[len(values)-1]
		bad := func(msg string) error { return &schemas.FieldError{Field: name, Message: msg} }
		switch name {
		case "limit":
			n, err := strconv.Atoi(value)
			if err != nil || n < 1 || n > maxRejectedLimit {
				return rq, bad("want a whole number from 1 to " + strconv.Itoa(maxRejectedLimit) + ", got " + strconv.Quote(value))
			}
			rq.Limit = n
		case "before":
			n, err := strconv.ParseInt(value, 10, 64)
			if err != nil || n < 1 {
				return rq, bad("want the id of a rejected message, got " + strconv.Quote(value))
			}
			rq.BeforeID = n
		case "reason":
			ok := false
			for _, r := range rejectReasons {
				ok = ok || string(r) == value
			}
			if !ok {
				return rq, bad("unknown reason " + strconv.Quote(value))
			}
			rq.Reason = storage.RejectReason(value)
		case "transport":
			if value != string(statemachine.OriginAMQP) && value != string(statemachine.OriginFedmsg) {
				return rq, bad("want amqp or fedmsg, got " + strconv.Quote(value))
			}
			rq.Transport = statemachine.Origin(value)
		case "message_id":
			rq.MessageID, _ = bus.StorableID(value)
		case "job":
			id, err := uuid.Parse(value)
			if err != nil || len(value) != 36 {
				return rq, bad("not a UUID: " + strconv.Quote(value))
			}
			rq.JobUUID = &id
		default:
			return rq, bad("unknown parameter; the filters are reason, transport, message_id and job")
		}
	}
	return rq, nil
}

func (s *site) listRejected(r *http.Request, q query, d *rejectedData) error {
	rq, err := rejectedQuery(q)
	if err != nil {
		return err
	}
	d.Limit = rq.Limit
	d.Filtered = rq.Reason != "" || rq.Transport != "" || rq.MessageID != "" || rq.JobUUID != nil
	want := rq.Limit
	rq.Limit++ // one more tells whether there is a following page
	msgs, err := s.read.Rejected(r.Context(), rq)
	if err != nil {
		return err
	}
	if len(msgs) > want {
		msgs = msgs[:want]
		d.Next = s.link("/rejected", q.with("before", strconv.FormatInt(msgs[len(msgs)-1].ID, 10)))
	}
	if rq.BeforeID != 0 {
		d.First = s.link("/rejected", q.clone("before"))
	}
	// Link a job's page only when the job exists: a message may name a job ExecDB never got.
	known := map[uuid.UUID]bool{}
	for _, m := range msgs {
		if m.JobUUID == nil {
			continue
		}
		if _, done := known[*m.JobUUID]; done {
			continue
		}
		_, err := s.read.Job(r.Context(), *m.JobUUID)
		switch {
		case err == nil:
			known[*m.JobUUID] = true
		case errors.Is(err, storage.ErrNotFound):
			known[*m.JobUUID] = false
		default:
			return err
		}
	}
	for _, m := range msgs {
		v := rejectedView{RejectedMessage: m, ReasonClass: strings.ReplaceAll(string(m.Reason), "_", "-")}
		if m.JobUUID != nil {
			if known[*m.JobUUID] {
				v.JobHref = s.basePath + "/jobs/" + m.JobUUID.String()
			}
			v.JobFilter = s.link("/rejected", query{"job": {m.JobUUID.String()}})
		}
		if utf8.Valid(m.Body) {
			v.BodyText = string(m.Body)
		} else {
			v.BodyBase64 = base64.StdEncoding.EncodeToString(m.Body)
		}
		d.Messages = append(d.Messages, v)
	}
	return nil
}
