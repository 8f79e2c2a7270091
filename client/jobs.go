package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// CreateJobRequest asks for a new job (the body of POST /api/v1/jobs, as the trigger message).
type CreateJobRequest struct {
	TaskName string               // required
	Item     string               // required
	ItemType string               // required
	Arch     string               // empty: the server's default, noarch
	Data     statemachine.KeyVals // Trigger-parsed data kept for rescheduling
	UUID     uuid.UUID            // uuid.Nil: the server issues one
	// RequestID is the idempotency key stored with the job; empty leaves it to the server.
	RequestID string
	Source    *statemachine.Source // the message that made Trigger ask for the job
	// IdempotencyKey is sent as the Idempotency-Key header, so that a create repeated after a
	// lost answer returns the job the first one made; the server keeps it as the job's
	// request_id, so it must equal RequestID when both are set. Empty: RequestID when set, else
	// a random UUID made once per CreateJob call and kept across its retries.
	IdempotencyKey string
}

type createJobBody struct {
	TaskName  string               `json:"taskname"`
	Item      string               `json:"item"`
	ItemType  string               `json:"item_type"`
	Arch      string               `json:"arch,omitempty"`
	Data      statemachine.KeyVals `json:"data,omitempty"`
	UUID      string               `json:"uuid,omitempty"`
	RequestID string               `json:"request_id,omitempty"`
	Source    *statemachine.Source `json:"source,omitempty"`
}

// JobResponse is an answer that carries a job.
type JobResponse struct {
	Job    statemachine.Job
	Status int    // 201 for a job just made, 200 otherwise
	Body   []byte // the answer's body as sent
}

// Created reports that the call made a new job (201), rather than finding the one an earlier
// identical request made.
func (r *JobResponse) Created() bool { return r.Status == http.StatusCreated }

// HistoryEntry is one event in a job's history (GET /api/v1/jobs/{uuid}/events): applied,
// duplicate, late or conflicting.
type HistoryEntry struct {
	ID        int64                  `json:"id"`
	JobUUID   uuid.UUID              `json:"job_uuid"`
	Kind      statemachine.EventKind `json:"kind"`
	Verdict   statemachine.Verdict   `json:"verdict"`
	Source    statemachine.Origin    `json:"source"` // http, amqp, fedmsg, watchdog, reschedule
	MessageID string                 `json:"message_id"`
	Actor     string                 `json:"actor"`      // the token name of an HTTP write
	StateFrom statemachine.State     `json:"state_from"` // empty for a create
	StateTo   statemachine.State     `json:"state_to"`
	Detail    json.RawMessage        `json:"detail"` // the event's payload as received
	// RecordedAt is when ExecDB received the event.
	RecordedAt time.Time `json:"recorded_at"`
}

// EventsResponse is a job's history, oldest first.
type EventsResponse struct {
	Events []HistoryEntry
	Body   []byte // the answer's body as sent
}

// CreateJob asks for a new SCHEDULED job. Repeating the same request (same idempotency key)
// returns the job the first one made, with Created false. The key is IdempotencyKey, else
// RequestID, else the UUID the request names, else a new random one for this call (its retries
// reuse it).
func (c *Client) CreateJob(ctx context.Context, req CreateJobRequest) (*JobResponse, error) {
	key := req.IdempotencyKey
	if key == "" {
		key = req.RequestID
	}
	if key == "" && req.UUID != uuid.Nil {
		key = req.UUID.String() // what the server defaults the request id to: a re-run is a repeat
	}
	if key == "" {
		key = c.newKey()
	}
	body := createJobBody{
		TaskName: req.TaskName, Item: req.Item, ItemType: req.ItemType, Arch: req.Arch,
		Data: req.Data, RequestID: req.RequestID, Source: req.Source,
	}
	if req.UUID != uuid.Nil {
		body.UUID = req.UUID.String()
	}
	h := http.Header{"Idempotency-Key": {key}, "X-Request-Id": {key}}
	resp, err := c.post(ctx, "/jobs", body, h)
	if err != nil {
		return nil, err
	}
	return jobResponse(resp)
}

// StartJob reports that the job began running. A start for a job that already ended is late:
// the server answers 409 and the *APIError carries the job.
func (c *Client) StartJob(ctx context.Context, id uuid.UUID, start statemachine.Start) (*JobResponse, error) {
	resp, err := c.post(ctx, jobPath(id, "/start"), start, nil)
	if err != nil {
		return nil, err
	}
	return jobResponse(resp)
}

// FinishJob reports how the job ended: end.State is statemachine.Finished or Crashed, the
// latter with end.Crash (nil means notify and cause unknown). Repeating the same report is
// harmless; a report that disagrees with the recorded outcome is a conflict: the server answers
// 409 and the *APIError carries the job as it stands.
func (c *Client) FinishJob(ctx context.Context, id uuid.UUID, end statemachine.End) (*JobResponse, error) {
	if end.State == statemachine.Crashed {
		end.Crash = statemachine.NormalizeCrash(end.Crash)
	}
	resp, err := c.post(ctx, jobPath(id, "/finish"), end, nil)
	if err != nil {
		return nil, err
	}
	return jobResponse(resp)
}

// RescheduleJob asks for a successor of a crashed job, made from its stored trigger data. A
// fatal crash needs force. The answer is the new job (201), or the successor an earlier
// reschedule made (200).
func (c *Client) RescheduleJob(ctx context.Context, id uuid.UUID, force bool) (*JobResponse, error) {
	body := struct {
		Force bool `json:"force"`
	}{force}
	resp, err := c.post(ctx, jobPath(id, "/reschedule"), body, nil)
	if err != nil {
		return nil, err
	}
	return jobResponse(resp)
}

// Job reads a job; an unknown job is an *APIError with status 404.
func (c *Client) Job(ctx context.Context, id uuid.UUID) (*JobResponse, error) {
	resp, err := c.Get(ctx, jobPath(id, ""), nil)
	if err != nil {
		return nil, err
	}
	return jobResponse(resp)
}

// Events reads a job's history, oldest first.
func (c *Client) Events(ctx context.Context, id uuid.UUID) (*EventsResponse, error) {
	resp, err := c.Get(ctx, jobPath(id, "/events"), nil)
	if err != nil {
		return nil, err
	}
	var page struct {
		Data []HistoryEntry `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &page); err != nil {
		return nil, fmt.Errorf("decode events of job %s: %w", id, err)
	}
	return &EventsResponse{Events: page.Data, Body: resp.Body}, nil
}

func jobPath(id uuid.UUID, suffix string) string {
	return "/jobs/" + id.String() + suffix
}

func jobResponse(resp *Response) (*JobResponse, error) {
	var job statemachine.Job
	if err := json.Unmarshal(resp.Body, &job); err != nil {
		return nil, fmt.Errorf("decode job: %w", err)
	}
	return &JobResponse{Job: job, Status: resp.Status, Body: resp.Body}, nil
}

func newIdempotencyKey() string {
	return uuid.NewString()
}
