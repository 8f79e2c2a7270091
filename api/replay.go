package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/consumer"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"go.uber.org/zap"
)

// replayResponse is the answer of a replay: what applying the message again did.
type replayResponse struct {
	Outcome   jobs.BusOutcome      `json:"outcome"`          // applied, duplicate, late, parked or rejected
	Reason    storage.RejectReason `json:"reason,omitempty"` // when rejected again
	Detail    string               `json:"detail,omitempty"` // when rejected again
	MessageID string               `json:"message_id"`       // the replay's id in the job's history
	Job       *statemachine.Job    `json:"job"`              // the job it is about, when there is one
}

// replayRejected answers POST /api/v1/rejected/{id}/replay (admin): the stored rejected bus
// message is decoded and applied again, as if it had just arrived on its transport, once its
// cause is fixed (the job it waited for exists now, a decoder was fixed…). It is applied under
// the message id replay:<id>, which the job's history shows (with the actor), and which makes a
// second replay of the same message a duplicate. A message that still cannot be decoded is a 409
// with the reason, and nothing is stored; one whose body was cut when it was stored (over 64 KiB)
// cannot be replayed (409).
func (a *API) replayRejected(w http.ResponseWriter, r *http.Request, req writeRequest) error {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id < 1 {
		return &httpError{status: http.StatusBadRequest, field: "id", message: "want the id of a rejected message, got " + quote(r.PathValue("id"))}
	}
	found, err := a.store.Rejected(r.Context(), storage.RejectedQuery{BeforeID: id + 1, Limit: 1})
	if err != nil {
		return err
	}
	if len(found) == 0 || found[0].ID != id {
		return &httpError{status: http.StatusNotFound, message: "no rejected message " + strconv.FormatInt(id, 10)}
	}
	rej := found[0]
	if rej.BodyTruncated {
		return &httpError{status: http.StatusConflict, message: "only the beginning of this message's body was kept: it cannot be replayed"}
	}
	d := bus.Delivery{Message: bus.Message{ID: rej.MessageID, Topic: rej.Topic, Body: rej.Body}, ReceivedAt: time.Now()}
	m := consumer.Decode(d, rej.Transport, a.store.TopicPrefix())
	if m.Reject != nil {
		return &httpError{status: http.StatusConflict, field: m.Reject.Field,
			message: "still rejected, nothing applied: " + string(m.Reject.Reason) + ": " + m.Reject.Detail}
	}
	replayID, _ := bus.StorableID("replay:" + strconv.FormatInt(id, 10))
	m.Meta.MessageID, m.Meta.Actor = replayID, req.meta.Actor
	results, err := a.store.ApplyBus(r.Context(), []jobs.BusMessage{m})
	if err != nil {
		return err
	}
	res := results[0]
	out := replayResponse{Outcome: res.Outcome, Reason: res.Reason, MessageID: replayID}
	if res.Rejection != nil {
		out.Detail = res.Rejection.Detail
	}
	if res.Result.Job.UUID != [16]byte{} {
		out.Job = &res.Result.Job
	} else if m.JobUUID != [16]byte{} {
		if job, err := a.store.Job(r.Context(), m.JobUUID); err == nil {
			out.Job = &job
		} else if !errors.Is(err, storage.ErrNotFound) {
			return err
		}
	}
	a.log.Info("rejected message replayed", zap.Int64("rejected_id", id), zap.String("message_id", replayID),
		zap.String("outcome", string(res.Outcome)), zap.String("actor", req.meta.Actor))
	writeJSON(w, http.StatusOK, out)
	return nil
}
