package server

import (
	"context"
	"errors"
	"math"
	"sync"
	"time"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/consumer"
	"github.com/fedora-qa/execdb/fedmsg"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/publisher"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"
)

// busDeps is what the bus side of serve is built from.
type busDeps struct {
	cfg      Config
	store    *jobs.Service
	backend  storage.Backend // the outbox the relay publishes
	log      *zap.Logger
	registry *prometheus.Registry
}

// busRuntime is the running bus side: consumers and the publisher relay.
type busRuntime struct {
	// checks are added to /readyz, by name.
	checks map[string]api.Check
	// wait blocks until every bus goroutine stopped; they stop when the serve context is done.
	wait func()
}

// startBus starts the consumers (AMQP, fedmsg), the sweeper of parked events and the outbox
// relay that cfg asks for. When ctx ends the consumers stop taking messages and finish or hand
// back what they hold; then the relay publishes what committed and stops.
func startBus(ctx context.Context, d busDeps) (*busRuntime, error) {
	cfg, log := d.cfg, d.log
	backend := d.backend
	consumerMetrics := consumer.NewMetrics(d.registry)
	relayMetrics := publisher.NewMetrics(d.registry, backend)
	checks := map[string]api.Check{}
	topics := consumer.Topics(cfg.TopicPrefix)

	// What can fail at start first, so that nothing runs when it does.
	var sinks []publisher.Sink
	var fedmsgPub *fedmsg.Publisher
	if cfg.FedmsgBind != "" {
		var err error
		if fedmsgPub, err = fedmsg.NewPublisher(fedmsg.PublisherConfig{Bind: cfg.FedmsgBind}); err != nil {
			return nil, errors.New("EXECDB_FEDMSG_BIND: " + err.Error())
		}
		sinks = append(sinks, publisher.Sink{Name: string(statemachine.OriginFedmsg), Publisher: fedmsgPub})
		log.Info("publishing job-state messages on fedmsg", zap.String("bind", cfg.FedmsgBind))
	}
	type source struct {
		origin statemachine.Origin
		sub    interface {
			bus.Subscriber
			Ready(context.Context) error
		}
	}
	var sources []source
	if endpoints := cfg.FedmsgConnect; len(endpoints) > 0 {
		sub, err := fedmsg.NewSubscriber(fedmsg.SubscriberConfig{Endpoints: endpoints, Topics: topics,
			Log: log.With(zap.String("component", "fedmsg")), MaxBodyBytes: consumer.MaxBodyBytes})
		if err != nil {
			if fedmsgPub != nil {
				fedmsgPub.Close()
			}
			return nil, errors.New("EXECDB_FEDMSG_CONNECT: " + err.Error())
		}
		sources = append(sources, source{statemachine.OriginFedmsg, sub})
		log.Info("consuming from fedmsg", zap.Strings("endpoints", endpoints), zap.Strings("topics", topics))
	}
	var amqpPub *rabbitmq.Publisher
	if cfg.AMQPURL != "" {
		sub := rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: cfg.AMQPURL, Log: log.With(zap.String("component", "amqp")),
			Topology:     rabbitmq.Topology{Exchange: cfg.AMQPExchange, Queue: cfg.AMQPQueue, Bindings: topics},
			MaxBodyBytes: consumer.MaxBodyBytes})
		sources = append(sources, source{statemachine.OriginAMQP, sub})
		d.registry.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name:        "execdb_bus_queue_messages",
			Help:        "Messages waiting in ExecDB's AMQP queue (not counting those delivered and unacknowledged); NaN while disconnected.",
			ConstLabels: prometheus.Labels{"queue": cfg.AMQPQueue},
		}, func() float64 {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			defer cancel()
			n, err := sub.Depth(ctx)
			if err != nil {
				return math.NaN()
			}
			return float64(n)
		}))
		amqpPub = rabbitmq.NewPublisher(rabbitmq.PublisherConfig{URL: cfg.AMQPURL, Exchange: cfg.AMQPExchange,
			Log: log.With(zap.String("component", "amqp"))})
		sinks = append(sinks, publisher.Sink{Name: string(statemachine.OriginAMQP), Publisher: amqpPub})
		log.Info("consuming from and publishing to AMQP", zap.String("broker", rabbitmq.Redact(cfg.AMQPURL)),
			zap.String("exchange", cfg.AMQPExchange), zap.String("queue", cfg.AMQPQueue))
	}
	if len(sinks) == 0 {
		log.Info("no bus to publish to (EXECDB_AMQP_URL, EXECDB_FEDMSG_BIND): job-state messages are left to a process that has one, and dropped after a day")
	}

	relay := publisher.New(publisher.Config{Outbox: backend, Sinks: sinks, Metrics: relayMetrics,
		Log: log.With(zap.String("component", "relay"))})
	if len(sinks) > 0 {
		checks["publisher"] = func(ctx context.Context) error {
			// A degraded relay names the publish error; the publisher's own check (it can
			// connect) only adds something while the relay is fine.
			err := relay.Ready(ctx)
			if err == nil && amqpPub != nil {
				err = amqpPub.Ready(ctx)
			}
			return err
		}
	}

	var consumers, all sync.WaitGroup
	for _, s := range sources {
		c := consumer.New(consumer.Config{Store: d.store, Origin: s.origin, Prefix: cfg.TopicPrefix,
			Log: log.With(zap.String("component", "consumer")), Metrics: consumerMetrics})
		// Ready while connected and while no worker is stuck with messages it cannot settle.
		checks[string(s.origin)] = func(ctx context.Context) error {
			return errors.Join(s.sub.Ready(ctx), c.Ready(ctx))
		}
		consumers.Add(1)
		go func() {
			defer consumers.Done()
			if err := c.Run(ctx, s.sub); err != nil {
				log.Error("consumer stopped", zap.String("transport", string(s.origin)), zap.Error(err))
			}
			s.sub.Close() // hands back what was not acknowledged
		}()
	}
	sweeper := consumer.NewSweeper(consumer.SweeperConfig{Store: d.store, ParkTTL: cfg.ParkTTL, Metrics: consumerMetrics,
		Log: log.With(zap.String("component", "sweeper"))})
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	all.Add(3)
	go func() {
		defer all.Done()
		sweeper.Run(ctx)
	}()
	go func() {
		defer all.Done()
		if len(sinks) == 0 {
			publisher.Expire(relayCtx, publisher.ExpireConfig{Outbox: backend, Log: log.With(zap.String("component", "relay"))})
			return
		}
		if err := relay.Run(relayCtx); err != nil {
			log.Error("outbox relay stopped", zap.Error(err))
		}
		for _, s := range sinks {
			s.Publisher.Close()
		}
	}()
	go func() {
		defer all.Done()
		<-ctx.Done()
		consumers.Wait() // what the consumers committed last goes out too
		stopRelay()
	}()
	return &busRuntime{checks: checks, wait: func() {
		consumers.Wait()
		all.Wait()
	}}, nil
}
