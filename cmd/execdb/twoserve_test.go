package main

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	"github.com/google/uuid"
)

// TestServeProcessesShareAQueue: several `execdb serve` processes on one database and one AMQP
// queue give the same jobs, history and announcements as one process would (CONTRACT section
// 2, v1.1), also when the process consuming is killed with SIGKILL twice while job lives
// stream in: every start is applied before its end, no event is applied twice, nothing is
// rejected, and every job is announced scheduled, running, then finished or crashed.
func TestServeProcessesShareAQueue(t *testing.T) {
	url := rabbitmqtest.URL(t)
	db := testenv.PostgresSchema(t)
	name := rabbitmqtest.Name("execdb-e2e-shared")
	prefix := "org.example." + strings.ReplaceAll(name, "-", "")
	exchange := name + "-x"
	rabbitmqtest.Watch(t, url, exchange, name+"-watch", "#.execdb.job.#")
	rabbitmqtest.Cleanup(t, url, []string{name, name + ".rejected"}, []string{name + ".dlx"})
	announced := rabbitmqtest.Collect(t, url, name+"-watch")
	serve := func() *serveProcess {
		return startServer(t, db, "--amqp-url", url, "--amqp-exchange", exchange, "--amqp-queue", name, "--topic-prefix", prefix)
	}
	a := serve()
	b := serve()
	waitFor(t, "both consumers connected", func() bool {
		return strings.Count(a.logs.String()+b.logs.String(), "amqp consumer connected") == 2
	})

	const jobs = 400
	ids := make([]uuid.UUID, jobs)
	var msgs []rabbitmqtest.Raw
	for i := range ids {
		ids[i] = uuid.New()
		end := `{"uuid":%q,"state":"FINISHED","log_url":"http://logs/%d"}`
		if i%2 == 1 {
			end = `{"uuid":%q,"state":"CRASHED","crash":{"notify":"taskotron","cause":"minion","keyvals":{"step":"MINION_CREATION","n":"%d"}}}`
		}
		msgs = append(msgs,
			rabbitmqtest.JSON(prefix+".taskotron.job.trigger", fmt.Sprint("t", i), fmt.Sprintf(`{"taskname":"rpmlint","item":"foo-%d-1.fc45","item_type":"koji_build","uuid":%q}`, i, ids[i])),
			rabbitmqtest.JSON(prefix+".taskotron.runtask.start", fmt.Sprint("s", i), fmt.Sprintf(`{"uuid":%q,"runner":{"name":"buildbot","jobid":"all/%d"}}`, ids[i], i)),
			rabbitmqtest.JSON(prefix+".taskotron.runtask.end", fmt.Sprint("e", i), fmt.Sprintf(end, ids[i], i)))
	}
	ended := func(s *serveProcess) int {
		_, body := httpDo(t, "GET", s.url+"/api/v1/stats?group_by=state&state=FINISHED,CRASHED", "")
		var stats struct{ Total int }
		json.Unmarshal([]byte(body), &stats)
		return stats.Total
	}
	go rabbitmqtest.Publish(t, url, exchange, msgs...)

	// Kill the consumer twice while the messages flow; a new process joins after the first.
	waitFor(t, "a third of the jobs ended", func() bool { return ended(b) >= jobs/3 })
	a.kill9(t)
	c := serve()
	waitFor(t, "two thirds of the jobs ended", func() bool { return ended(c) >= 2*jobs/3 })
	b.kill9(t)
	waitFor(t, "every job ended", func() bool { return ended(c) == jobs })

	if _, body := httpDo(t, "GET", c.url+"/api/v1/rejected", ""); !strings.Contains(body, `"data":[]`) {
		t.Errorf("messages were rejected: %s", body)
	}
	for i, id := range ids {
		_, body := httpDo(t, "GET", c.url+"/api/v1/jobs/"+id.String()+"/events", "")
		var events struct {
			Data []struct {
				Kind      string `json:"kind"`
				Verdict   string `json:"verdict"`
				MessageID string `json:"message_id"`
			} `json:"data"`
		}
		if err := json.Unmarshal([]byte(body), &events); err != nil {
			t.Fatalf("job %d events: %v: %s", i, err, body)
		}
		var got []string
		for _, e := range events.Data {
			if e.Kind != "auto_reschedule" { // the automatic rescheduler's decision about a crash
				got = append(got, e.Kind+":"+e.Verdict+":"+e.MessageID)
			}
		}
		want := []string{fmt.Sprintf("create:applied:t%d", i), fmt.Sprintf("start:applied:s%d", i), fmt.Sprintf("end:applied:e%d", i)}
		if !slices.Equal(got, want) {
			t.Errorf("job %d: history %v, want %v", i, got, want)
		}
	}

	// Every job announced scheduled, running, then its end, each once (a re-send after a
	// crash keeps its message id and counts once).
	byJob := map[string][]string{}
	seen := map[string]bool{}
	waitFor(t, "every announcement", func() bool {
		clear(byJob)
		clear(seen)
		for _, d := range announced.Messages() {
			if seen[d.MessageId] {
				continue
			}
			seen[d.MessageId] = true
			var job struct{ UUID string }
			json.Unmarshal(d.Body, &job)
			byJob[job.UUID] = append(byJob[job.UUID], strings.TrimPrefix(d.RoutingKey, prefix+".execdb.job."))
		}
		return len(seen) >= 3*jobs
	})
	for i, id := range ids {
		end := "finished"
		if i%2 == 1 {
			end = "crashed.taskotron.minion"
		}
		if got := byJob[id.String()]; !slices.Equal(got, []string{"scheduled", "running", end}) {
			t.Errorf("job %d announced %v, want scheduled, running, %s", i, got, end)
		}
	}
}

// waitFor polls cond until it holds, for at most two minutes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
