//go:build drills

package drills

import (
	"context"
	"syscall"
	"testing"
	"time"
)

// The drills, in the order they run. Each has a fresh database and queue; the private
// PostgreSQL and RabbitMQ are shared and outlive the drills that kill them.

// TestDrill1ServeKill9: one serve process consumes job lives from AMQP and is killed with
// SIGKILL at a third and at two thirds of the jobs ended, and started again each time.
func TestDrill1ServeKill9(t *testing.T) {
	d := newDrill(t, "serve-kill9", "1. serve kill -9 (twice)")
	lv := newLives(cfg.jobs)
	exp := &expect{}
	exp.add(lv)
	s := d.serve("serve-1")
	s.waitConsumer(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	pub, published := d.publish(ctx, lv.messages(d.prefix))
	d.at(len(lv)/3, "kill -9 serve-1, start serve-2", func() { s.kill9(); s = d.serve("serve-2") })
	d.at(2*len(lv)/3, "kill -9 serve-2, start serve-3", func() { s.kill9(); s = d.serve("serve-3") })
	d.published(pub, published)
	d.settle(exp, 5*time.Minute)
	d.finish(exp)
}

// TestDrill2BrokerKill9: the broker is killed with SIGKILL at a third of the jobs ended and
// started again 3 s later; the publisher publishes again what the broker had not confirmed,
// with the same message ids, and serve and the collector reconnect.
func TestDrill2BrokerKill9(t *testing.T) {
	d := newDrill(t, "broker-kill9", "2. broker kill -9")
	lv := newLives(cfg.jobs)
	exp := &expect{}
	exp.add(lv)
	s := d.serve("serve-1")
	s.waitConsumer(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	pub, published := d.publish(ctx, lv.messages(d.prefix))
	d.at(len(lv)/3, "kill -9 the broker", func() {
		if err := d.rmq.kill9(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if err := d.rmq.start(); err != nil {
			t.Fatal(err)
		}
		d.note("broker started again")
	})
	d.published(pub, published)
	d.settle(exp, 5*time.Minute)
	d.note("serve's AMQP consumer connected %d times", s.consumers.Load())
	d.finish(exp)
}

// TestDrill3DatabaseImmediateStop: PostgreSQL is stopped with pg_ctl -m immediate (every
// backend killed, crash recovery at the next start) at a third of the jobs ended and started
// again 3 s later.
func TestDrill3DatabaseImmediateStop(t *testing.T) {
	d := newDrill(t, "db-stop", "3. database immediate stop")
	lv := newLives(cfg.jobs)
	exp := &expect{}
	exp.add(lv)
	s := d.serve("serve-1")
	s.waitConsumer(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	pub, published := d.publish(ctx, lv.messages(d.prefix))
	d.at(len(lv)/3, "pg_ctl stop -m immediate", func() {
		if err := d.pg.stopImmediate(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(3 * time.Second)
		if err := d.pg.start(); err != nil {
			t.Fatal(err)
		}
		d.note("database started again")
	})
	d.published(pub, published)
	d.settle(exp, 5*time.Minute)
	if !s.running() {
		t.Errorf("serve-1 exited during the database outage: %v (log %s)", s.exitErr, s.logPath)
	}
	d.finish(exp)
}

// TestDrill4HTTPKill9: concurrent HTTP clients (the Go client package, which retries
// connection errors and 5xx) drive job lives while serve is killed with SIGKILL twice and
// started again on the same port. Every write answered 2xx must be in the database, and every
// life completes. Serve has AMQP, so the announcements are checked too.
func TestDrill4HTTPKill9(t *testing.T) {
	runHTTPDrill(t)
}

// TestDrill5HostileFlood: valid job lives interleaved with about a thousand hostile messages
// (hostile message ids, bodies that break the text rule, are not JSON, break the schema, or
// are 1–4 MiB large). Every valid life is applied exactly, every hostile body rejected with
// its reason, and the peak RSS stays under 150 MB.
func TestDrill5HostileFlood(t *testing.T) {
	runFlood(t)
}

// TestDrill6TwoConsumers: two serve processes on one database and one queue (a single active
// consumer); the active one is killed with SIGKILL at a third of the jobs ended (and started
// again, standing by), the other at two thirds. The result must be that of one process: no
// late start, nothing applied twice, every announcement in order.
func TestDrill6TwoConsumers(t *testing.T) {
	d := newDrill(t, "two-consumers", "6. two consumers, kill -9 each")
	lv := newLives(cfg.jobs)
	exp := &expect{}
	exp.add(lv)
	a := d.serve("serve-a")
	a.waitConsumer(t, 1)
	b := d.serve("serve-b")
	b.waitConsumer(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	pub, published := d.publish(ctx, lv.messages(d.prefix))
	d.at(len(lv)/3, "kill -9 serve-a (the active consumer), start serve-a2", func() { a.kill9(); d.serve("serve-a2") })
	d.at(2*len(lv)/3, "kill -9 serve-b (the active consumer since)", func() { b.kill9() })
	d.published(pub, published)
	d.settle(exp, 5*time.Minute)
	d.finish(exp)
}

// TestDrill7StuckSubscriberQueue: a quorum queue of another subscriber, bound to ExecDB's
// announcements, stops answering at a third of the jobs ended (its process suspended, as a
// queue whose leader did not come back after a broker crash, seen in drill 2): the broker
// confirms nothing routed to it. Serve is then stopped with SIGTERM, which must end it within a
// minute (docs/bus.md: at shutdown the relay publishes what committed "at most 10 s" and
// stops); the queue is resumed and a new serve process finishes the work.
func TestDrill7StuckSubscriberQueue(t *testing.T) {
	d := newDrill(t, "stuck-queue", "7. subscriber queue stops answering")
	lv := newLives(cfg.jobs)
	exp := &expect{}
	exp.add(lv)
	stuck := d.queue + "-stuck"
	declareWatch(t, d.rmq.url(), "amq.topic", stuck, d.prefix+".execdb.job.#")
	t.Cleanup(func() {
		d.rmq.resumeQueue(stuck)
		deleteQueues(d.rmq.url(), []string{stuck}, nil)
	})
	s := d.serve("serve-1")
	s.waitConsumer(t, 1)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	pub, published := d.publish(ctx, lv.messages(d.prefix))
	d.at(len(lv)/3, "suspend the subscriber queue "+stuck, func() {
		if err := d.rmq.suspendQueue(stuck); err != nil {
			t.Fatal(err)
		}
		// One more job's life over HTTP, so that there is something to announce for sure.
		extra := newLives(1)[0]
		extra.n = len(lv)
		exp.add(lives{extra})
		httpLife(t, s.url, extra)
		time.Sleep(15 * time.Second)
		checks, _, err := readyz(s.url)
		d.note("15 s later: /readyz publisher %q (err %v)", checks["publisher"], err)
		began := time.Now()
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.done:
			d.note("serve-1 exited %s after SIGTERM: %v", time.Since(began).Round(100*time.Millisecond), s.exitErr)
		case <-time.After(time.Minute):
			t.Errorf("serve-1 did not exit within a minute of SIGTERM while a bound queue confirmed nothing (log %s)", s.logPath)
			d.note("serve-1 still running a minute after SIGTERM: killed -9")
			s.kill9()
		}
		if err := d.rmq.resumeQueue(stuck); err != nil {
			t.Fatal(err)
		}
		d.note("queue resumed; starting serve-2")
		s = d.serve("serve-2")
	})
	d.published(pub, published)
	d.settle(exp, 5*time.Minute)
	d.finish(exp)
}

// published waits for the publisher and notes what it did.
func (d *drill) published(p *publisher, done <-chan error) {
	d.t.Helper()
	if err := <-done; err != nil {
		d.t.Errorf("publisher: %v", err)
	}
	d.note("publisher: %d messages confirmed, %d published again after the broker did not confirm them, %d reconnections",
		p.published.Load(), p.republished.Load(), p.reconnects.Load())
}
