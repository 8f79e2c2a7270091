package rabbitmq

import (
	"errors"
	"fmt"
	"strings"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Topology is what the consumer needs on the broker: a durable queue bound to the exchange with
// the topics it consumes, whose rejected messages go to a dead-letter exchange and queue.
//
// The queue has a single active consumer (x-single-active-consumer): however many ExecDB
// processes consume it, the broker delivers to one of them at a time and fails over to
// another when it goes, so that one job's messages are applied in the order they were queued
// (CONTRACT section 2, v1.1). As a quorum queue it also has a delivery limit
// (x-delivery-limit): a message delivered that often without being settled (a message that
// makes every consumer crash, say) is dead-lettered by the broker, the last line of defence.
type Topology struct {
	// Exchange is the topic exchange messages arrive on, e.g. amq.topic.
	Exchange string
	// Queue is the consumer's own durable queue.
	Queue string
	// Bindings are the routing keys bound from Exchange to Queue.
	Bindings []string
	// DeadLetterExchange receives what the consumer rejects; empty means Queue + ".dlx".
	DeadLetterExchange string
	// DeadLetterQueue keeps it; empty means Queue + ".rejected".
	DeadLetterQueue string
}

func (t Topology) dlx() string {
	if t.DeadLetterExchange != "" {
		return t.DeadLetterExchange
	}
	return t.Queue + ".dlx"
}

func (t Topology) dlq() string {
	if t.DeadLetterQueue != "" {
		return t.DeadLetterQueue
	}
	return t.Queue + ".rejected"
}

// QueueType is the type of queue Declare ended up with.
type QueueType string

// The queue types.
const (
	Quorum  QueueType = "quorum"
	Classic QueueType = "classic"
)

// Declare declares the topology on conn: exchanges, the queue and its dead-letter queue as quorum
// queues (classic queues when the broker refuses quorum queues, e.g. an old RabbitMQ or a queue
// declared classic before), and the bindings. Declaring what exists changes nothing.
func Declare(conn *amqp.Connection, t Topology) (QueueType, error) {
	if t.Exchange == "" || t.Queue == "" {
		return "", errors.New("declare topology: exchange and queue are required")
	}
	ch, err := conn.Channel()
	if err != nil {
		return "", fmt.Errorf("declare topology: %w", err)
	}
	defer ch.Close()
	if err := declareExchange(ch, t.Exchange, amqp.ExchangeTopic); err != nil {
		return "", err
	}
	if err := declareExchange(ch, t.dlx(), amqp.ExchangeFanout); err != nil {
		return "", err
	}
	// Nothing consumes the dead letters but people: the queue keeps the newest ones and drops
	// the oldest, so that it can never fill the broker's disk (every rejection is also kept in
	// ExecDB's database and listed by GET /api/v1/rejected).
	qt, err := declareQueue(conn, t.dlq(), amqp.Table{"x-max-length": DeadLetterMaxLength, "x-overflow": "drop-head"}, nil)
	if err != nil {
		return "", err
	}
	if err := ch.QueueBind(t.dlq(), "", t.dlx(), false, nil); err != nil {
		return "", fmt.Errorf("bind %s to %s: %w", t.dlq(), t.dlx(), err)
	}
	args := amqp.Table{"x-dead-letter-exchange": t.dlx(), "x-single-active-consumer": true}
	if qt, err = declareQueue(conn, t.Queue, args, amqp.Table{"x-delivery-limit": DeliveryLimit}); err != nil {
		return "", err
	}
	for _, key := range t.Bindings {
		if err := ch.QueueBind(t.Queue, key, t.Exchange, false, nil); err != nil {
			return "", fmt.Errorf("bind %s to %s with %s: %w", t.Queue, t.Exchange, key, err)
		}
	}
	return qt, nil
}

// declareExchange declares a durable exchange; the broker's own amq.* exchanges, which may not
// be declared, are checked passively.
func declareExchange(ch *amqp.Channel, name, kind string) error {
	var err error
	if strings.HasPrefix(name, "amq.") {
		err = ch.ExchangeDeclarePassive(name, kind, true, false, false, false, nil)
	} else {
		err = ch.ExchangeDeclare(name, kind, true, false, false, false, nil)
	}
	if err != nil {
		return fmt.Errorf("declare exchange %s: %w", name, err)
	}
	return nil
}

// DeadLetterMaxLength bounds the dead-letter queue.
const DeadLetterMaxLength = 100_000

// DeliveryLimit is how often a quorum queue delivers a message that is never settled before the
// broker dead-letters it. ExecDB hands a message back only when it stops while the database
// fails, so only a message that makes every consumer crash comes near it.
const DeliveryLimit = 20

// declareQueue declares a durable quorum queue with args and quorumArgs, or a classic one with
// args alone when the broker cannot have a quorum queue (too old to know the type, or a
// classic queue of that name exists). Any other refusal is an error, retried with the
// connection, rather than a classic queue for good. Each attempt has its own channel: a
// refused declaration closes the channel.
func declareQueue(conn *amqp.Connection, name string, args, quorumArgs amqp.Table) (QueueType, error) {
	try := func(qt QueueType) error {
		ch, err := conn.Channel()
		if err != nil {
			return err
		}
		defer ch.Close()
		a := amqp.Table{}
		for k, v := range args {
			a[k] = v
		}
		if qt == Quorum {
			a["x-queue-type"] = "quorum"
			for k, v := range quorumArgs {
				a[k] = v
			}
		}
		_, err = ch.QueueDeclare(name, true, false, false, false, a)
		return err
	}
	quorumErr := try(Quorum)
	if quorumErr == nil {
		return Quorum, nil
	}
	var amqpErr *amqp.Error
	if !errors.As(quorumErr, &amqpErr) || conn.IsClosed() || !quorumUnavailable(amqpErr) {
		return "", declareError(name, quorumErr)
	}
	if err := try(Classic); err != nil {
		return "", fmt.Errorf("declare queue %s: as a quorum queue: %v; as a classic queue: %w", name, quorumErr, declareError(name, err))
	}
	return Classic, nil
}

// declareError explains a refused declaration; a queue that exists with other arguments (one
// declared by an ExecDB before 1.1, without a single active consumer) needs a person.
func declareError(name string, err error) error {
	var amqpErr *amqp.Error
	if errors.As(err, &amqpErr) && amqpErr.Code == amqp.PreconditionFailed && strings.Contains(amqpErr.Reason, "inequivalent arg") {
		return fmt.Errorf("declare queue %s: it exists with other arguments than ExecDB declares (%s); "+
			"a queue declared by ExecDB before 1.1 lacks x-single-active-consumer: stop ExecDB, let the queue drain, "+
			"delete it and start ExecDB again, or use a new EXECDB_AMQP_QUEUE (docs/upgrading.md): %w", name, amqpErr.Reason, err)
	}
	return fmt.Errorf("declare queue %s: %w", name, err)
}

// quorumUnavailable reports whether a refused quorum declaration means the broker cannot have
// one: it does not know x-queue-type, or the queue exists with another type.
func quorumUnavailable(err *amqp.Error) bool {
	return err.Code == amqp.NotImplemented ||
		err.Code == amqp.PreconditionFailed && strings.Contains(err.Reason, "x-queue-type")
}
