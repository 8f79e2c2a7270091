//go:build drills

package drills

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/client"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// runHTTPDrill is drill 4: job lives over HTTP with the Go client while serve is killed with
// SIGKILL twice and started again on the same port.
func runHTTPDrill(t *testing.T) {
	d := newDrill(t, "http-kill9", "4. HTTP kill -9 (twice)")
	lv := newLives(cfg.jobs)
	exp := &expect{}
	exp.add(lv)
	listen := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	s := d.serveOn("serve-1", listen)

	var retries atomic.Int64
	c, err := client.New("http://"+listen, "",
		client.WithBudget(3*time.Minute),
		client.WithBackoff(100*time.Millisecond, time.Second),
		client.WithAttemptTimeout(20*time.Second),
		client.WithLogf(func(string, ...any) { retries.Add(1) }))
	if err != nil {
		t.Fatal(err)
	}

	// What the server answered 2xx, per life.
	type answers struct{ create, start, finish atomic.Bool }
	answered := make([]answers, len(lv))
	var failMu sync.Mutex
	var failures []string
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	work := make(chan int)
	var wg sync.WaitGroup
	for range cfg.clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				l := lv[i]
				id := uuid.MustParse(l.id)
				fail := func(what string, err error) {
					failMu.Lock()
					failures = append(failures, fmt.Sprintf("job %d %s: %v", i, what, err))
					failMu.Unlock()
				}
				if _, err := c.CreateJob(ctx, client.CreateJobRequest{TaskName: "rpmlint",
					Item: fmt.Sprintf("drill-%d-1.fc45", l.n), ItemType: "koji_build", UUID: id}); err != nil {
					fail("create", err)
					continue
				}
				answered[i].create.Store(true)
				runner := &statemachine.Runner{Name: "buildbot", JobID: fmt.Sprintf("all/%d", l.n), Worker: "drill-worker"}
				if _, err := c.StartJob(ctx, id, statemachine.Start{Runner: runner}); err != nil {
					fail("start", err)
					continue
				}
				answered[i].start.Store(true)
				end := statemachine.End{State: statemachine.Finished, LogURL: fmt.Sprintf("http://drill.example/logs/%d", l.n)}
				if l.crashed {
					end = statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: statemachine.NotifyTaskotron,
						Cause: statemachine.CauseMinion, KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}}}}
				}
				if _, err := c.FinishJob(ctx, id, end); err != nil {
					fail("finish", err)
					continue
				}
				answered[i].finish.Store(true)
			}
		}()
	}
	go func() {
		defer close(work)
		for i := range lv {
			select {
			case work <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	restart := func(name string) func() {
		return func() {
			s.kill9()
			time.Sleep(time.Second) // the clients meet a closed port for a while
			s = d.serveOn(name, listen)
		}
	}
	d.at(len(lv)/3, "kill -9 serve-1, start serve-2 on the same port", restart("serve-2"))
	d.at(2*len(lv)/3, "kill -9 serve-2, start serve-3 on the same port", restart("serve-3"))
	wg.Wait()
	d.note("%d clients done: %d attempts retried, %d calls failed", cfg.clients, retries.Load(), len(failures))
	for i, f := range failures {
		if i == 10 {
			t.Errorf("… and %d more failures", len(failures)-10)
			break
		}
		t.Error(f)
	}
	d.settle(exp, 10*time.Minute)

	// Every write answered 2xx is in the database.
	type stored struct {
		state   string
		started bool
	}
	jobs := map[string]stored{}
	qctx, qcancel := context.WithTimeout(context.Background(), time.Minute)
	defer qcancel()
	err = d.query(qctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT uuid::text, state, started_at IS NOT NULL FROM jobs`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id string
			var j stored
			if err := rows.Scan(&id, &j.state, &j.started); err != nil {
				return err
			}
			jobs[id] = j
		}
		return rows.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	var nCreate, nStart, nFinish, lost int
	for i, l := range lv {
		j, ok := jobs[l.id]
		if answered[i].create.Load() {
			nCreate++
			if !ok {
				lost++
			}
		}
		if answered[i].start.Load() {
			nStart++
			if !j.started {
				lost++
			}
		}
		if answered[i].finish.Load() {
			nFinish++
			if j.state != l.final() {
				lost++
			}
		}
	}
	d.row.details = append(d.row.details, fmt.Sprintf("writes answered 2xx: %d creates, %d starts, %d finishes; not in the database: %d", nCreate, nStart, nFinish, lost))
	if lost > 0 {
		t.Errorf("%d writes answered 2xx are not in the database", lost)
	}
	if nFinish != len(lv) {
		t.Errorf("%d of %d lives completed", nFinish, len(lv))
	}
	d.finish(exp)
}

// httpLife drives one job's life over HTTP: create, start, finish.
func httpLife(t *testing.T, base string, l life) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := client.New(base, "", client.WithBudget(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	id := uuid.MustParse(l.id)
	if _, err := c.CreateJob(ctx, client.CreateJobRequest{TaskName: "rpmlint", Item: fmt.Sprintf("drill-%d-1.fc45", l.n), ItemType: "koji_build", UUID: id}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.StartJob(ctx, id, statemachine.Start{Runner: &statemachine.Runner{Name: "buildbot"}}); err != nil {
		t.Fatal(err)
	}
	end := statemachine.End{State: statemachine.Finished}
	if l.crashed {
		end = statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: statemachine.NotifyTaskotron,
			Cause: statemachine.CauseMinion, KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}}}}
	}
	if _, err := c.FinishJob(ctx, id, end); err != nil {
		t.Fatal(err)
	}
}
