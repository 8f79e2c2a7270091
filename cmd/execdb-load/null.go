package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/consumer"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/google/uuid"
	amqp "github.com/rabbitmq/amqp091-go"
)

// nullPipeline stands in for ExecDB on the bus: it consumes the input topics from a queue of
// its own, declared and bound as ExecDB declares its queue (rabbitmq.Declare: quorum, single
// active consumer, dead-letter queue, the same prefetch), and for each message publishes the
// job-state message ExecDB would announce, in ExecDB's wire format, on a confirm channel of a
// second connection; a delivery is acknowledged once the broker confirmed its announcement.
// No database, no batching beyond what confirms and acks allow: the broker's ceiling for the
// same traffic.
type nullPipeline struct {
	sub, pub *amqp.Connection
	cch      *amqp.Channel
	topo     rabbitmq.Topology
	cancel   context.CancelFunc
	wg       sync.WaitGroup

	mu     sync.Mutex
	err    error
	onFail func(error)
}

// startNull starts the stand-in; onFail is called with its first error.
func startNull(ctx context.Context, url, exchange, prefix, queue string, onFail func(error)) (*nullPipeline, error) {
	n := &nullPipeline{topo: rabbitmq.Topology{Exchange: exchange, Queue: queue, Bindings: consumer.Topics(prefix)}, onFail: onFail}
	var err error
	if n.sub, err = rabbitmq.Dial(ctx, url, "execdb-load null pipeline consumer"); err != nil {
		return nil, err
	}
	if n.pub, err = rabbitmq.Dial(ctx, url, "execdb-load null pipeline publisher"); err != nil {
		n.sub.Close()
		return nil, err
	}
	fail := func(err error) (*nullPipeline, error) {
		n.sub.Close()
		n.pub.Close()
		return nil, fmt.Errorf("null pipeline: %w", err)
	}
	if _, err := rabbitmq.Declare(n.sub, n.topo); err != nil {
		return fail(err)
	}
	cch, err := n.sub.Channel()
	if err != nil {
		return fail(err)
	}
	n.cch = cch
	if err := cch.Qos(rabbitmq.DefaultPrefetch, 0, false); err != nil {
		return fail(err)
	}
	deliveries, err := cch.Consume(queue, "execdb-load-null", false, false, false, false, nil)
	if err != nil {
		return fail(err)
	}
	pch, err := n.pub.Channel()
	if err != nil {
		return fail(err)
	}
	if err := pch.Confirm(false); err != nil {
		return fail(err)
	}

	ctx, n.cancel = context.WithCancel(ctx)
	type unacked struct {
		dc  *amqp.DeferredConfirmation
		tag uint64
	}
	pending := make(chan unacked, rabbitmq.DefaultPrefetch)
	n.wg.Go(func() {
		defer close(pending)
		for {
			var d amqp.Delivery
			var ok bool
			select {
			case <-ctx.Done():
				return
			case d, ok = <-deliveries:
				if !ok {
					n.fail(errors.New("the broker closed the consumer"))
					return
				}
			}
			topic, msg := announcement(prefix, d)
			dc, err := pch.PublishWithDeferredConfirmWithContext(ctx, exchange, topic, false, false, msg)
			if err != nil {
				n.fail(fmt.Errorf("publish: %w", err))
				return
			}
			pending <- unacked{dc, d.DeliveryTag}
		}
	})
	// Acknowledge in delivery order once each announcement is confirmed, several at a time
	// (multiple) while more wait, as a consumer acknowledging its batch does.
	n.wg.Go(func() {
		since := 0
		for u := range pending {
			ok, err := u.dc.WaitContext(ctx)
			if err != nil {
				if ctx.Err() == nil {
					n.fail(fmt.Errorf("wait for a confirm: %w", err))
				}
				return
			}
			if !ok {
				n.fail(fmt.Errorf("the broker refused announcement %d", u.dc.DeliveryTag))
				return
			}
			if since++; since >= 256 || len(pending) == 0 {
				if err := cch.Ack(u.tag, true); err != nil {
					n.fail(fmt.Errorf("ack: %w", err))
					return
				}
				since = 0
			}
		}
	})
	return n, nil
}

func (n *nullPipeline) fail(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.err == nil {
		n.err = err
		n.onFail(fmt.Errorf("null pipeline: %w", err))
	}
}

// stop ends the pipeline and deletes its queues and dead-letter exchange.
func (n *nullPipeline) stop() error {
	n.cancel()
	n.wg.Wait()
	n.mu.Lock()
	err := n.err
	n.mu.Unlock()
	n.pub.Close()
	n.cch.Close() // hands back what was not acknowledged
	defer n.sub.Close()
	ch, cerr := n.sub.Channel()
	if cerr != nil {
		return errors.Join(err, fmt.Errorf("delete %s: %w", n.topo.Queue, cerr))
	}
	defer ch.Close()
	// The names rabbitmq.Declare gives the dead-letter queue and exchange.
	for _, q := range []string{n.topo.Queue, n.topo.Queue + ".rejected"} {
		if _, derr := ch.QueueDelete(q, false, false, false); derr != nil {
			return errors.Join(err, fmt.Errorf("delete queue %s: %w", q, derr))
		}
	}
	if derr := ch.ExchangeDelete(n.topo.Queue+".dlx", false, false); derr != nil {
		err = errors.Join(err, fmt.Errorf("delete exchange %s.dlx: %w", n.topo.Queue, derr))
	}
	return err
}

// announced is the job as ExecDB announces it (jobs.Service.outboxMessage): the fields a
// message names, and for the rest what the load tool's jobs have, so that the announcement
// has the size and shape of ExecDB's.
type announced struct {
	UUID            string              `json:"uuid"`
	State           string              `json:"state"`
	TaskName        string              `json:"taskname"`
	Item            string              `json:"item"`
	ItemType        string              `json:"item_type"`
	Arch            string              `json:"arch"`
	Data            map[string][]string `json:"data"`
	Source          *json.RawMessage    `json:"source"`
	RequestID       string              `json:"request_id"`
	Runner          *json.RawMessage    `json:"runner"`
	ArtifactsURL    *string             `json:"artifacts_url"`
	LogURL          *string             `json:"log_url"`
	Crash           *json.RawMessage    `json:"crash"`
	Attempt         int                 `json:"attempt"`
	RescheduledFrom *string             `json:"rescheduled_from"`
	RescheduledTo   *string             `json:"rescheduled_to"`
	CreatedAt       time.Time           `json:"created_at"`
	StartedAt       *time.Time          `json:"started_at"`
	FinishedAt      *time.Time          `json:"finished_at"`
	UpdatedAt       time.Time           `json:"updated_at"`
	Href            string              `json:"href"`
	PreviousState   *string             `json:"previous_state"`
}

// announcement is what ExecDB would publish about the effect of delivery d.
func announcement(prefix string, d amqp.Delivery) (string, amqp.Publishing) {
	var in struct {
		UUID     string           `json:"uuid"`
		TaskName string           `json:"taskname"`
		Item     string           `json:"item"`
		ItemType string           `json:"item_type"`
		Runner   *json.RawMessage `json:"runner"`
		State    string           `json:"state"`
		LogURL   *string          `json:"log_url"`
		Crash    *json.RawMessage `json:"crash"`
	}
	_ = json.Unmarshal(d.Body, &in)
	now := time.Now().UTC()
	a := announced{UUID: in.UUID, TaskName: "rpmlint", Item: "load-" + in.UUID, ItemType: "koji_build", Arch: "noarch",
		Data: map[string][]string{"koji_tag": {"f45-updates"}}, RequestID: in.UUID, Attempt: 1,
		CreatedAt: now, UpdatedAt: now, Href: "/api/v1/jobs/" + in.UUID}
	var suffix, prev string
	switch {
	case strings.HasSuffix(d.RoutingKey, "."+consumer.SuffixTrigger):
		a.State, suffix = "SCHEDULED", "scheduled"
		if in.TaskName != "" {
			a.TaskName, a.Item, a.ItemType = in.TaskName, in.Item, in.ItemType
		}
	case strings.HasSuffix(d.RoutingKey, "."+consumer.SuffixStart):
		a.State, suffix, prev = "RUNNING", "running", "SCHEDULED"
		a.Runner, a.StartedAt = in.Runner, &now
	default:
		a.State, suffix, prev = in.State, "finished", "RUNNING"
		a.Runner, a.StartedAt, a.FinishedAt, a.LogURL = in.Runner, &now, &now, in.LogURL
		if in.State == "CRASHED" {
			a.Crash, suffix = in.Crash, "crashed.taskotron.minion"
		}
	}
	if prev != "" {
		a.PreviousState = &prev
	}
	body, _ := json.Marshal(a)
	severity := "20"
	if a.State == "CRASHED" {
		severity = "30"
	}
	pkg := a.Item
	if i := strings.IndexByte(pkg, '-'); i > 0 {
		pkg = pkg[:i]
	}
	m := bus.Message{ID: uuid.NewString(), Topic: prefix + ".execdb.job." + suffix, Body: body,
		Headers: map[string]string{
			"fedora_messaging_schema":         "execdb.job.v1",
			"fedora_messaging_schema_package": "execdb-messages",
			"fedora_messaging_severity":       severity,
			"execdb_state":                    a.State,
			"fedora_messaging_rpm_" + pkg:     "true",
		}}
	return m.Topic, rabbitmq.Publishing(m, now)
}
