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
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
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

// TestTwoServersEndToEnd starts two `execdb serve` processes on one database with timeouts of
// a second and automatic rescheduling on, leaves jobs alone and counts: every job crashed by
// the watchdog exactly once, one successor each, none past the attempt limit.
func TestTwoServersEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("takes seconds")
	}
	for name, db := range databases(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			dsn := db(t)
			flags := []string{"--run-timeout", "1s", "--schedule-timeout", "1s", "--auto-reschedule", "2", "--reschedule-delay", "1s"}
			a := startServer(t, dsn, flags...)
			b := startServer(t, dsn, flags...)
			const jobs = 6
			for i := range jobs {
				status, body := httpDo(t, "POST", a.url+"/api/v1/jobs", fmt.Sprintf(`{"taskname":"rpmlint","item":"pkg-%d","item_type":"koji_build"}`, i))
				if status != 201 {
					t.Fatalf("create: %d %s", status, body)
				}
				if i%2 == 0 {
					var j statemachine.Job
					json.Unmarshal([]byte(body), &j)
					// 409: on a slow machine the watchdog's schedule timeout (1 s) crashed the
					// job before its start; everything asserted below holds for it all the same.
					if status, body := httpDo(t, "POST", b.url+j.Href()+"/start", `{}`); status != 200 && status != 409 {
						t.Fatalf("start: %d %s", status, body)
					}
				}
			}
			var all []statemachine.Job
			deadline := time.Now().Add(60 * time.Second)
			for {
				_, body := httpDo(t, "GET", b.url+"/api/v1/jobs?limit=100", "")
				var page struct {
					Data []statemachine.Job `json:"data"`
				}
				json.Unmarshal([]byte(body), &page)
				all = page.Data
				settled := len(all) == 2*jobs
				for _, j := range all {
					settled = settled && j.State == statemachine.Crashed
					if j.Attempt == 2 && settled {
						settled = eventCount(t, a.url, j, "auto_reschedule") == 1
					}
				}
				if settled {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("not settled after 60s: %d jobs\nserver a:\n%s\nserver b:\n%s", len(all), a.logs, b.logs)
				}
				time.Sleep(200 * time.Millisecond)
			}
			time.Sleep(1100 * time.Millisecond) // another sweep, which must change nothing
			_, body := httpDo(t, "GET", a.url+"/api/v1/jobs?limit=100", "")
			var page struct {
				Data []statemachine.Job `json:"data"`
			}
			json.Unmarshal([]byte(body), &page)
			if len(page.Data) != 2*jobs {
				t.Fatalf("got %d jobs, want %d", len(page.Data), 2*jobs)
			}
			successors := 0
			for _, j := range page.Data {
				if j.Crash == nil || j.Crash.KeyVals["detected_by"][0] != "watchdog" {
					t.Errorf("job %s: crash %+v, want the watchdog's", j.UUID, j.Crash)
				}
				if n := eventCount(t, b.url, j, "end"); n != 1 {
					t.Errorf("job %s: %d end events, want 1", j.UUID, n)
				}
				if j.RescheduledFrom != nil {
					successors++
				}
				if j.Attempt > 2 || j.Attempt == 2 && j.RescheduledTo != nil {
					t.Errorf("job %s: attempt %d rescheduled to %v, beyond the limit", j.UUID, j.Attempt, j.RescheduledTo)
				}
			}
			if successors != jobs {
				t.Errorf("got %d successors, want %d", successors, jobs)
			}
		})
	}
}

func eventCount(t *testing.T, base string, j statemachine.Job, kind string) int {
	t.Helper()
	_, body := httpDo(t, "GET", base+j.Href()+"/events", "")
	var events struct {
		Data []storage.HistoryEntry `json:"data"`
	}
	json.Unmarshal([]byte(body), &events)
	n := 0
	for _, e := range events.Data {
		if string(e.Kind) == kind {
			n++
		}
	}
	return n
}
