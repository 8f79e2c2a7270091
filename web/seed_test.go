package web_test

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/web"
	"github.com/google/uuid"
)

// The job service is what serve gives the pages to read.
var _ web.Reader = (*jobs.Service)(nil)

// seeded names the jobs seed made that tests look at.
type seeded struct {
	store *jobs.Service
	now   time.Time
	// crashed is a minion crash with keyvals, trigger data, a runner, log and artifacts.
	crashed statemachine.Job
	// chain is a job rescheduled twice: crashed, crashed again, finished.
	chain [3]uuid.UUID
	// fatal is a fatal crash nobody rescheduled.
	fatal   statemachine.Job
	stuck   statemachine.Job // running for 4 hours
	running statemachine.Job // running for 5 minutes
	// all is every job, newest first.
	all       int
	rejected  int
	crashes   int            // CRASHED jobs
	byTask    map[string]int // jobs by task
	unknownID uuid.UUID      // the job an unknown_job rejection names
	hostile   statemachine.Job
}

// seed fills a fresh SQLite database with jobs of every kind over the last month, rejected
// messages and reschedules, as a person would find them.
func seed(t testing.TB) *seeded {
	t.Helper()
	ctx := context.Background()
	store := jobs.New(testenv.SQLite(t, ""), jobs.Config{})
	now := time.Now().UTC()
	s := &seeded{store: store, now: now, byTask: map[string]int{}}
	meta := func(id string, at time.Time) statemachine.Meta {
		return statemachine.Meta{Origin: statemachine.OriginHTTP, MessageID: id, Actor: "seed", ReceivedAt: at}
	}
	n := 0
	create := func(task, item string, at time.Time, data statemachine.KeyVals) statemachine.Job {
		t.Helper()
		n++
		res, err := store.Create(ctx, statemachine.NewJob{TaskName: task, Item: item, ItemType: "koji_build", Arch: "x86_64",
			Data: data, RequestID: fmt.Sprintf("seed-%d", n),
			Source: &statemachine.Source{MsgID: fmt.Sprintf("2026-%d", n), Topic: "org.fedoraproject.prod.buildsys.build.state.change"}},
			meta(fmt.Sprintf("create-%d", n), at))
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		s.all++
		s.byTask[task]++
		return res.Job
	}
	apply := func(id uuid.UUID, ev statemachine.Event) statemachine.Job {
		t.Helper()
		res, err := store.Apply(ctx, id, ev)
		if err != nil {
			t.Fatalf("apply: %v", err)
		}
		return res.Job
	}
	start := func(j statemachine.Job, at time.Time) statemachine.Job {
		return apply(j.UUID, statemachine.Event{Meta: meta("start-"+j.UUID.String(), at), Start: &statemachine.Start{
			Runner: &statemachine.Runner{Name: "buildbot", JobID: "all/" + j.UUID.String()[:4], Worker: "taskotron-client10-3", URL: "https://taskotron.example/builds/" + j.UUID.String()[:4]}}})
	}
	end := func(j statemachine.Job, at time.Time, c *statemachine.Crash) statemachine.Job {
		e := &statemachine.End{State: statemachine.Finished, LogURL: "https://taskotron.example/logs/" + j.UUID.String(),
			ArtifactsURL: "https://taskotron.example/artifacts/" + j.UUID.String()}
		if c != nil {
			e.State, e.Crash = statemachine.Crashed, c
			s.crashes++
		}
		return apply(j.UUID, statemachine.Event{Meta: meta("end-"+j.UUID.String(), at), End: e})
	}
	minion := func(reason string) *statemachine.Crash {
		return &statemachine.Crash{Notify: statemachine.NotifyTaskotron, Cause: statemachine.CauseMinion,
			KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {reason}}}
	}
	tasks := []string{"rpmlint", "depcheck", "abicheck", "rpmdeplint"}
	// Finished and crashed jobs over the last 30 days.
	for i := range 48 {
		at := now.Add(-time.Duration(30*24-i*15) * time.Hour)
		task := tasks[i%len(tasks)]
		j := create(task, fmt.Sprintf("pkg%d-1.0-%d.fc45", i%7, i), at, statemachine.KeyVals{"koji_tag": {"f45-updates-testing"}})
		j = start(j, at.Add(time.Duration(10+i)*time.Second))
		switch {
		case i%6 == 1:
			end(j, at.Add(3*time.Minute), minion([]string{"TIMED_OUT", "NO_SPACE", "BACKING_STORE_LINKING"}[i/6%3]))
		case i%6 == 3:
			end(j, at.Add(2*time.Minute), &statemachine.Crash{Notify: statemachine.NotifyTask, Cause: statemachine.CauseNetwork,
				KeyVals: statemachine.KeyVals{"reason": {"DNS"}}})
		default:
			end(j, at.Add(time.Duration(60+i)*time.Second), nil)
		}
	}
	// The crash a ResultsDB link points to.
	at := now.Add(-26 * time.Hour)
	j := create("rpmlint", "htop-3.3.0-1.fc45", at, statemachine.KeyVals{"koji_tag": {"f45-updates-testing"}, "critpath_pkgs": {"htop", "ncurses"}})
	j = start(j, at.Add(12*time.Second))
	s.crashed = end(j, at.Add(5*time.Minute), minion("TIMED_OUT"))
	// A job rescheduled twice: crashed, crashed again, finished.
	at = now.Add(-10 * time.Hour)
	j = create("depcheck", "python-requests-2.31.0-3.fc45", at, nil)
	j = end(start(j, at.Add(time.Second)), at.Add(time.Minute), &statemachine.Crash{Notify: statemachine.NotifyTaskotron,
		Cause: statemachine.CauseNetwork, KeyVals: statemachine.KeyVals{"reason": {"CONNECTION_RESET"}}})
	s.chain[0] = j.UUID
	for k := 1; k < 3; k++ {
		res, err := store.Reschedule(ctx, s.chain[k-1], jobs.RescheduleOptions{Reason: "network outage"}, meta(fmt.Sprintf("reschedule-%d", k), at.Add(time.Duration(k)*time.Hour)))
		if err != nil {
			t.Fatalf("reschedule: %v", err)
		}
		s.all++
		s.byTask["depcheck"]++
		s.chain[k] = res.Successor.UUID
		succ := start(res.Successor, at.Add(time.Duration(k)*time.Hour+time.Minute))
		if k == 1 {
			end(succ, at.Add(time.Duration(k)*time.Hour+3*time.Minute), &statemachine.Crash{Notify: statemachine.NotifyTaskotron,
				Cause: statemachine.CauseNetwork, KeyVals: statemachine.KeyVals{"reason": {"CONNECTION_RESET"}}})
		} else {
			end(succ, at.Add(time.Duration(k)*time.Hour+4*time.Minute), nil)
		}
	}
	// A fatal crash of the task.
	at = now.Add(-3 * time.Hour)
	j = create("abicheck", "glibc-2.40-1.fc45", at, nil)
	s.fatal = end(start(j, at.Add(time.Second)), at.Add(time.Minute), &statemachine.Crash{Notify: statemachine.NotifyTask,
		Cause: statemachine.CauseTask, Fatal: true, KeyVals: statemachine.KeyVals{"reason": {"OOM"}, "exit_code": {"137"}}})
	// Running: one for four hours (near the 3h run timeout… past it: the watchdog is not
	// running here), one for five minutes; scheduled: one for 22 hours, one just now.
	s.stuck = start(create("rpmlint", "kernel-6.12.0-1.fc45", now.Add(-4*time.Hour), nil), now.Add(-4*time.Hour+time.Minute))
	s.running = start(create("rpmlint", "bash-5.2.37-1.fc45", now.Add(-5*time.Minute), nil), now.Add(-4*time.Minute))
	create("depcheck", "vim-9.1.0-1.fc45", now.Add(-22*time.Hour), nil)
	create("depcheck", "zsh-5.9-1.fc45", now.Add(-time.Minute), nil)
	// A job whose fields are markup: the pages must show it as text.
	s.hostile = create(`<script>alert("task")</script>`, `"><img src=x onerror=alert(1)>`, now.Add(-2*time.Hour), nil)

	// Rejected bus messages: one about a known job, one about a job ExecDB never got, one
	// undecodable, one from fedmsg.
	s.unknownID = uuid.MustParse("0193a5c3-7c1e-7abc-8def-0123456789ab")
	rejects := []jobs.BusMessage{
		{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: "rej-schema", ReceivedAt: now.Add(-2 * time.Hour)},
			Topic: "org.fedoraproject.dev.taskotron.runtask.end",
			Body:  []byte(`{"uuid":"` + s.crashed.UUID.String() + `","state":"CRASHED","crash":{"cause":"cosmic-rays"}}`),
			Reject: &jobs.Rejection{Reason: storage.RejectSchema, Field: "crash.cause", Detail: `must be one of minion, task, network, libtaskotron, unknown, got "cosmic-rays"`,
				JobUUID: &s.crashed.UUID, Kind: statemachine.EventEnd}},
		{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: "rej-unknown", ReceivedAt: now.Add(-90 * time.Minute)},
			Topic: "org.fedoraproject.dev.taskotron.runtask.start", Body: []byte(`{"uuid":"` + s.unknownID.String() + `"}`),
			Reject: &jobs.Rejection{Reason: storage.RejectUnknownJob, Detail: "no job after 1h", JobUUID: &s.unknownID, Kind: statemachine.EventStart}},
		{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: "rej-garbage", ReceivedAt: now.Add(-time.Hour)},
			Topic: "org.fedoraproject.dev.taskotron.runtask.end", Body: []byte{0xff, 0xfe, '<', 'b', '>'},
			Reject: &jobs.Rejection{Reason: storage.RejectUndecodable, Detail: "not JSON"}},
		{Meta: statemachine.Meta{Origin: statemachine.OriginFedmsg, MessageID: "2026-rej-fedmsg", ReceivedAt: now.Add(-30 * time.Minute)},
			Topic: "org.fedoraproject.dev.taskotron.job.tigger", Body: []byte(`{"taskname":"<b>rpmlint</b>"}`),
			Reject: &jobs.Rejection{Reason: storage.RejectUnknownTopic}},
	}
	for i := range 8 {
		rejects = append(rejects, jobs.BusMessage{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: fmt.Sprintf("rej-old-%d", i),
			ReceivedAt: now.Add(-time.Duration(48+i) * time.Hour)}, Topic: "org.fedoraproject.dev.taskotron.runtask.end", Body: []byte("{}"),
			Reject: &jobs.Rejection{Reason: storage.RejectSchema, Field: "uuid", Detail: "required"}})
	}
	// Oldest first, as they would have arrived.
	slices.SortFunc(rejects, func(a, b jobs.BusMessage) int { return a.Meta.ReceivedAt.Compare(b.Meta.ReceivedAt) })
	for i := range rejects {
		if _, err := store.ApplyBus(ctx, rejects[i:i+1]); err != nil {
			t.Fatalf("reject: %v", err)
		}
	}
	s.rejected = len(rejects)
	return s
}
