package main

import (
	"fmt"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	"github.com/google/uuid"
)

// TestServeBus runs `execdb serve` with AMQP and a fedmsg PUB socket, as a new user would: job
// lives and garbage go in over AMQP, the API shows the outcome and a bound queue the job-state
// messages; SIGTERM stops it cleanly.
func TestServeBus(t *testing.T) {
	url := rabbitmqtest.URL(t)
	db := testenv.PostgresSchema(t)
	name := rabbitmqtest.Name("execdb-e2e")
	prefix := "org.example." + strings.ReplaceAll(name, "-", "")
	exchange := name + "-x"
	// The watcher's queue, bound to everything ExecDB says.
	rabbitmqtest.Watch(t, url, exchange, name+"-watch", "#.execdb.job.#")
	rabbitmqtest.Cleanup(t, url, []string{name, name + ".rejected"}, []string{name + ".dlx"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fedmsgAddr := ln.Addr().String()
	ln.Close()
	s := startServer(t, db, "--amqp-url", url, "--amqp-exchange", exchange, "--amqp-queue", name,
		"--topic-prefix", prefix, "--fedmsg-bind", "tcp://"+fedmsgAddr, "--park-ttl", "1s")

	eventually := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("gave up waiting for %s\n%s", what, s.logs)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	eventually("ready", func() bool { code, _ := httpDo(t, "GET", s.url+"/readyz", ""); return code == 200 })
	code, body := httpDo(t, "GET", s.url+"/readyz", "")
	for _, check := range []string{`"amqp":"ok"`, `"publisher":"ok"`} {
		if !strings.Contains(body, check) {
			t.Errorf("readyz %d: got %s, want %s", code, body, check)
		}
	}

	id := uuid.New()
	orphan := uuid.New()
	rabbitmqtest.Publish(t, url, exchange,
		rabbitmqtest.JSON(prefix+".taskotron.job.trigger", uuid.NewString(), fmt.Sprintf(`{"taskname":"rpmlint","item":"foo-1-1","item_type":"koji_build","uuid":%q}`, id)),
		rabbitmqtest.JSON(prefix+".taskotron.runtask.start", uuid.NewString(), fmt.Sprintf(`{"uuid":%q}`, id)),
		rabbitmqtest.JSON(prefix+".taskotron.runtask.end", uuid.NewString(), fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"notify":"task","cause":"task"}}`, id)),
		rabbitmqtest.JSON(prefix+".taskotron.runtask.end", "garbage-1", `{"uuid":`),
		rabbitmqtest.JSON(prefix+".taskotron.runtask.end", "orphan-1", fmt.Sprintf(`{"uuid":%q,"state":"FINISHED"}`, orphan)),
	)
	eventually("the job crashed", func() bool {
		code, body := httpDo(t, "GET", s.url+"/api/v1/jobs/"+id.String(), "")
		return code == 200 && strings.Contains(body, `"state":"CRASHED"`)
	})
	eventually("garbage and orphan rejected", func() bool {
		_, body := httpDo(t, "GET", s.url+"/api/v1/rejected", "")
		return strings.Contains(body, `"message_id":"garbage-1"`) && strings.Contains(body, `"reason":"undecodable"`) &&
			strings.Contains(body, `"message_id":"orphan-1"`) && strings.Contains(body, `"reason":"unknown_job"`)
	})
	for _, topic := range []string{"scheduled", "running", "crashed.task.task"} {
		var got string
		eventually("a job-state message", func() bool {
			d, ok := rabbitmqtest.Get(t, url, name+"-watch")
			got = d.RoutingKey
			return ok
		})
		if got != prefix+".execdb.job."+topic {
			t.Errorf("got %s, want %s", got, topic)
		}
	}
	_, metrics := httpDo(t, "GET", s.url+"/metrics", "")
	for _, want := range []string{`execdb_bus_rejected_total{reason="undecodable",transport="amqp"} 1`,
		`execdb_crashes_total{cause="task",notify="task"} 1`, `execdb_outbox_backlog 0`, `execdb_relay_active 1`, `execdb_bus_queue_messages{queue="` + name + `"} 0`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("exit: %v\n%s", err, s.logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not stop on SIGTERM\n%s", s.logs)
	}
	if rabbitmqtest.QueueLen(t, url, name) != 0 {
		t.Errorf("the queue did not drain")
	}
}
