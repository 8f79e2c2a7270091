//go:build drills

package drills

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/consumer"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// drill is one drill's world: a fresh database, a fresh queue and topic prefix on the private
// broker, a collector of announcements, the serve processes it started, and its row.
type drill struct {
	t      *testing.T
	pg     *postgres
	rmq    *rabbit
	db     string // the database URL
	queue  string // ExecDB's queue
	prefix string // topic prefix
	watch  string // the collector's queue
	logDir string
	col    *collector
	serves []*serve
	began  time.Time
	row    *row
	conn   *pgx.Conn // for polling; redialled after errors
	// finished is set by finish; a drill that stopped before has its row added as aborted.
	finished bool
}

func newDrill(t *testing.T, name, title string) *drill {
	t.Helper()
	pg, rmq := needServices(t)
	tag := randomHex(6)
	d := &drill{t: t, pg: pg, rmq: rmq, began: time.Now(),
		queue: "execdb-drill-" + name + "-" + tag, prefix: "org.drill" + tag,
		row: &row{drill: title, stateExp: map[string]int{}, stateGot: map[string]int{}}}
	d.watch = d.queue + "-watch"
	t.Cleanup(func() {
		if !d.finished {
			d.row.failed = true
			d.row.took = time.Since(d.began)
			d.row.details = append(d.row.details, "aborted before it could count: see the test's output")
			addRow(d.row)
		}
	})
	d.db = pg.newDatabase(t, "drill_"+strings.ReplaceAll(name, "-", "_"))
	dir, err := os.MkdirTemp("", "execdb-drill-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	d.logDir = dir
	t.Cleanup(func() {
		if t.Failed() || cfg.keepLogs {
			t.Logf("serve logs kept in %s", dir)
		} else {
			os.RemoveAll(dir)
		}
	})

	// ExecDB's topology now, so that what is published before serve connects waits in the
	// queue; and the collector's own queue for the announcements.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := rabbitmq.Dial(ctx, rmq.url(), "execdb drill setup")
	if err != nil {
		t.Fatal(err)
	}
	_, err = rabbitmq.Declare(conn, rabbitmq.Topology{Exchange: "amq.topic", Queue: d.queue, Bindings: consumer.Topics(d.prefix)})
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	declareWatch(t, rmq.url(), "amq.topic", d.watch, d.prefix+".execdb.job.#")
	d.col = startCollector(rmq.url(), d.watch)
	t.Cleanup(func() {
		d.col.close()
		if d.conn != nil {
			d.conn.Close(context.Background())
		}
		deleteQueues(rmq.url(), []string{d.queue, d.queue + ".rejected", d.watch}, []string{d.queue + ".dlx"})
	})
	return d
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// serveOn starts a serve process of this drill listening on listen, with AMQP and extra args.
func (d *drill) serveOn(name, listen string, extra ...string) *serve {
	d.t.Helper()
	args := append([]string{"--amqp-url", d.rmq.url(), "--amqp-queue", d.queue, "--amqp-exchange", "amq.topic",
		"--topic-prefix", d.prefix}, extra...)
	s := startServe(d.t, name, d.logDir, d.db, listen, args...)
	d.serves = append(d.serves, s)
	return s
}

// serve starts a serve process on a port of its choosing.
func (d *drill) serve(name string, extra ...string) *serve {
	d.t.Helper()
	return d.serveOn(name, "127.0.0.1:0", extra...)
}

// note adds a line to the drill's details, with the time since it began.
func (d *drill) note(format string, args ...any) {
	line := fmt.Sprintf("t+%.1fs ", time.Since(d.began).Seconds()) + fmt.Sprintf(format, args...)
	d.row.details = append(d.row.details, line)
	d.t.Log(line)
}

// query runs fn on the drill's database connection, dialling it first when needed; an error
// drops the connection, so that the next call dials again (the database may have restarted).
func (d *drill) query(ctx context.Context, fn func(context.Context, *pgx.Conn) error) error {
	if d.conn == nil {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		conn, err := pgx.Connect(cctx, d.db)
		cancel()
		if err != nil {
			return err
		}
		d.conn = conn
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := fn(qctx, d.conn); err != nil {
		d.conn.Close(context.Background())
		d.conn = nil
		return err
	}
	return nil
}

func (d *drill) count(ctx context.Context, sql string) (int, error) {
	var n int
	err := d.query(ctx, func(ctx context.Context, c *pgx.Conn) error { return c.QueryRow(ctx, sql).Scan(&n) })
	return n, err
}

// ended is the number of jobs FINISHED or CRASHED.
func (d *drill) ended(ctx context.Context) (int, error) {
	return d.count(ctx, `SELECT count(*) FROM jobs WHERE state IN ('FINISHED', 'CRASHED')`)
}

// at waits until n jobs ended, then does the fault. It fails the drill if that takes over
// five minutes.
func (d *drill) at(n int, what string, fault func()) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	got := 0
	for {
		var err error
		if got, err = d.ended(ctx); err == nil && got >= n {
			break
		}
		if ctx.Err() != nil {
			d.t.Fatalf("%d of %d jobs ended after 5 minutes, waiting to %s (logs in %s)", got, n, what, d.logDir)
		}
		time.Sleep(20 * time.Millisecond)
	}
	d.note("%s at %d jobs ended", what, got)
	fault()
}

// --- job lives ---

// life is one job's life: trigger, start, end (FINISHED or, every other job, CRASHED).
type life struct {
	n       int
	id      string
	crashed bool
}

type lives []life

func newLives(n int) lives {
	lv := make(lives, n)
	for i := range lv {
		lv[i] = life{n: i, id: uuid.NewString(), crashed: i%2 == 1}
	}
	return lv
}

func (l life) triggerBody() string {
	return fmt.Sprintf(`{"taskname":"rpmlint","item":"drill-%d-1.fc45","item_type":"koji_build","uuid":%q}`, l.n, l.id)
}

func (l life) startBody() string {
	return fmt.Sprintf(`{"uuid":%q,"runner":{"name":"buildbot","jobid":"all/%d","worker":"drill-worker","url":"http://drill.example/builds/%d"}}`, l.id, l.n, l.n)
}

func (l life) endBody() string {
	if l.crashed {
		return fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"notify":"taskotron","cause":"minion","keyvals":{"step":"MINION_CREATION"}}}`, l.id)
	}
	return fmt.Sprintf(`{"uuid":%q,"state":"FINISHED","log_url":"http://drill.example/logs/%d"}`, l.id, l.n)
}

func (l life) final() string {
	if l.crashed {
		return "CRASHED"
	}
	return "FINISHED"
}

// messages renders the lives as AMQP messages, interleaved as Trigger and Buildbot send them:
// in chunks of 100 jobs, their triggers, then their starts, then their ends. Every message has
// a message id of its own.
func (lv lives) messages(prefix string) []rabbitmqtest.Raw {
	const chunk = 100
	var msgs []rabbitmqtest.Raw
	for from := 0; from < len(lv); from += chunk {
		part := lv[from:min(from+chunk, len(lv))]
		for _, l := range part {
			msgs = append(msgs, rabbitmqtest.JSON(prefix+".taskotron.job.trigger", uuid.NewString(), l.triggerBody()))
		}
		for _, l := range part {
			msgs = append(msgs, rabbitmqtest.JSON(prefix+".taskotron.runtask.start", uuid.NewString(), l.startBody()))
		}
		for _, l := range part {
			msgs = append(msgs, rabbitmqtest.JSON(prefix+".taskotron.runtask.end", uuid.NewString(), l.endBody()))
		}
	}
	return msgs
}

// expect is what a drill must find.
type expect struct {
	jobs           map[string]string // uuid → final state
	rejected       map[string]int    // reason → messages
	hashedApplied  int               // applied events whose message id is stored as sha256:<hex>
	hashedRejected int               // rejections whose message id is stored so
}

func (e *expect) add(lv lives) {
	if e.jobs == nil {
		e.jobs = map[string]string{}
	}
	for _, l := range lv {
		e.jobs[l.id] = l.final()
	}
}

func (e *expect) rejections() int {
	n := 0
	for _, c := range e.rejected {
		n += c
	}
	return n
}

// publish publishes msgs in the background; the channel gets the outcome.
func (d *drill) publish(ctx context.Context, msgs []rabbitmqtest.Raw) (*publisher, <-chan error) {
	p := newPublisher(d.rmq.url(), "amq.topic")
	done := make(chan error, 1)
	go func() { done <- p.run(ctx, msgs) }()
	return p, done
}

// settle waits until every expected job ended, every expected rejection is stored, nothing is
// parked, the outbox is empty and every job's three announcements arrived; at most timeout.
func (d *drill) settle(exp *expect, timeout time.Duration) {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var ended, rejected, parked, outbox int
	for {
		var err error
		ended, err = d.ended(ctx)
		if err == nil {
			rejected, err = d.count(ctx, `SELECT count(*) FROM rejected_messages`)
		}
		if err == nil {
			parked, err = d.count(ctx, `SELECT count(*) FROM parked_events`)
		}
		if err == nil {
			outbox, err = d.count(ctx, `SELECT count(*) FROM outbox`)
		}
		if err == nil && ended >= len(exp.jobs) && rejected >= exp.rejections() && parked == 0 && outbox == 0 &&
			announcedAll(d.col.messages(), exp) {
			break
		}
		if ctx.Err() != nil {
			a := analyse(d.col.messages(), d.prefix, exp)
			d.t.Errorf("not settled after %s: %d of %d jobs ended, %d of %d rejections, %d parked, %d in the outbox, %d of %d announcements (logs in %s)",
				timeout, ended, len(exp.jobs), rejected, exp.rejections(), parked, outbox, 3*len(exp.jobs)-a.missing, 3*len(exp.jobs), d.logDir)
			d.col.mu.Lock()
			d.t.Logf("collector: %d reconnections, last error %v", d.col.reconnects, d.col.lastErr)
			d.col.mu.Unlock()
			d.t.Logf("broker queues:\n%s", d.rmq.listQueues())
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.note("settled: every job ended, every announcement received")
	time.Sleep(time.Second) // late duplicates, if any, to count them
}

// announcedAll reports whether every expected job has had its three announcements.
func announcedAll(anns []announcement, exp *expect) bool {
	got := map[string]int{}
	seen := map[string]bool{}
	for _, a := range anns {
		if !seen[a.id] {
			seen[a.id] = true
			got[a.job]++
		}
	}
	for id := range exp.jobs {
		if got[id] < 3 {
			return false
		}
	}
	return true
}

// finish stops every serve process with SIGTERM, then counts, fills the row, reports every
// problem as an error, and adds the row to the table.
func (d *drill) finish(exp *expect, checks ...func() []string) {
	d.t.Helper()
	d.finished = true
	for _, s := range d.serves {
		s.stop(d.t)
	}
	d.row.took = time.Since(d.began)
	problems := d.measure(exp)
	for _, check := range checks {
		problems = append(problems, check()...)
	}
	for _, s := range d.serves {
		state := "stopped"
		if s.killed {
			state = "killed -9"
		}
		d.row.rss = append(d.row.rss, fmt.Sprintf("%.0f", s.peakMB()))
		d.row.details = append(d.row.details, fmt.Sprintf("%s: peak RSS %.1f MB, %s", s.name, s.peakMB(), state))
	}
	for _, p := range problems {
		d.t.Error(p)
	}
	d.row.failed = d.t.Failed()
	d.t.Log("\n" + header() + d.row.line())
	addRow(d.row)
}

// measure counts what the database and the collector hold and returns what is wrong.
func (d *drill) measure(exp *expect) []string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var problems []string
	r := d.row
	r.jobsExp = len(exp.jobs)
	for _, st := range exp.jobs {
		r.stateExp[st]++
	}
	r.rejExp = exp.rejections()
	if exp.rejected == nil {
		exp.rejected = map[string]int{}
	}

	// Jobs and their states.
	wrongState, unexpected := 0, 0
	err := d.query(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT uuid::text, state FROM jobs`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var id, state string
			if err := rows.Scan(&id, &state); err != nil {
				return err
			}
			r.jobsGot++
			r.stateGot[state]++
			if want, ok := exp.jobs[id]; !ok {
				unexpected++
			} else if want != state {
				wrongState++
			}
		}
		return rows.Err()
	})
	if err != nil {
		return append(problems, "read jobs: "+err.Error())
	}
	if r.jobsGot != r.jobsExp {
		problems = append(problems, fmt.Sprintf("jobs: expected %d, found %d", r.jobsExp, r.jobsGot))
	}
	for _, s := range states {
		if r.stateExp[s] != r.stateGot[s] {
			problems = append(problems, fmt.Sprintf("%s: expected %d, found %d", s, r.stateExp[s], r.stateGot[s]))
		}
	}
	if wrongState > 0 || unexpected > 0 {
		problems = append(problems, fmt.Sprintf("%d jobs in another state than their life's end, %d jobs nobody asked for", wrongState, unexpected))
	}

	// Histories: each job's applied events must be create, start, end, once each.
	type jobKind struct{ job, kind string }
	applied := map[jobKind]int{}
	appliedByID := map[string]int{}
	sequences := map[string][]string{}
	verdicts := map[string]int{}
	hashedApplied := 0
	err = d.query(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT job_uuid::text, kind, verdict, origin, message_id FROM job_events ORDER BY job_uuid, id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var job, kind, verdict, origin, msgID string
			if err := rows.Scan(&job, &kind, &verdict, &origin, &msgID); err != nil {
				return err
			}
			if kind == "auto_reschedule" {
				continue
			}
			verdicts[kind+":"+verdict]++
			if kind == "start" && verdict == "late" {
				r.late++
			}
			if verdict != "applied" {
				continue
			}
			applied[jobKind{job, kind}]++
			sequences[job] = append(sequences[job], kind)
			if msgID != "" && (origin == "amqp" || origin == "fedmsg") {
				appliedByID[msgID]++
			}
			if strings.HasPrefix(msgID, "sha256:") {
				hashedApplied++
			}
		}
		return rows.Err()
	})
	if err != nil {
		return append(problems, "read job_events: "+err.Error())
	}
	for _, n := range applied {
		r.doubleJobKind += n - 1
	}
	for _, n := range appliedByID {
		r.doubleMsgID += n - 1
	}
	wrongHistory := 0
	for id := range exp.jobs {
		if !slices.Equal(sequences[id], []string{"create", "start", "end"}) {
			wrongHistory++
		}
	}
	r.details = append(r.details, "history entries (kind:verdict): "+sortedCounts(verdicts))
	if r.doubleJobKind > 0 || r.doubleMsgID > 0 {
		problems = append(problems, fmt.Sprintf("doubly applied: %d extra applied entries for one (job, kind), %d for one message id", r.doubleJobKind, r.doubleMsgID))
	}
	if r.late > 0 {
		problems = append(problems, fmt.Sprintf("%d starts applied after their end (verdict late)", r.late))
	}
	if wrongHistory > 0 {
		problems = append(problems, fmt.Sprintf("%d jobs whose applied history is not create, start, end", wrongHistory))
	}
	if hashedApplied != exp.hashedApplied {
		problems = append(problems, fmt.Sprintf("applied events with a message id stored as sha256:<hex>: expected %d, found %d", exp.hashedApplied, hashedApplied))
	}

	// Rejections per reason.
	rejected := map[string]int{}
	hashedRejected := 0
	err = d.query(ctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT reason, count(*), count(*) FILTER (WHERE message_id LIKE 'sha256:%') FROM rejected_messages GROUP BY reason`)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var reason string
			var n, hashed int
			if err := rows.Scan(&reason, &n, &hashed); err != nil {
				return err
			}
			rejected[reason] = n
			r.rejGot += n
			hashedRejected += hashed
		}
		return rows.Err()
	})
	if err != nil {
		return append(problems, "read rejected_messages: "+err.Error())
	}
	if r.rejGot > 0 || r.rejExp > 0 {
		r.details = append(r.details, fmt.Sprintf("rejected per reason: expected %s; found %s", sortedCounts(exp.rejected), sortedCounts(rejected)))
	}
	for reason := range rejected {
		if _, ok := exp.rejected[reason]; !ok {
			exp.rejected[reason] = 0
		}
	}
	for reason, n := range exp.rejected {
		if rejected[reason] != n {
			problems = append(problems, fmt.Sprintf("rejected %s: expected %d, found %d", reason, n, rejected[reason]))
		}
	}
	if hashedRejected != exp.hashedRejected {
		problems = append(problems, fmt.Sprintf("rejections with a message id stored as sha256:<hex>: expected %d, found %d", exp.hashedRejected, hashedRejected))
	}

	// Leftovers.
	for _, q := range []struct{ what, sql string }{
		{"parked events", `SELECT count(*) FROM parked_events`},
		{"unpublished outbox messages", `SELECT count(*) FROM outbox`},
	} {
		n, err := d.count(ctx, q.sql)
		if err != nil {
			problems = append(problems, q.what+": "+err.Error())
		} else if n > 0 {
			problems = append(problems, fmt.Sprintf("%d %s left", n, q.what))
		}
	}

	// Announcements.
	a := analyse(d.col.messages(), d.prefix, exp)
	r.annMissing, r.annOrder, r.annExtra, r.annDup = a.missing, a.order, a.extra, a.dup
	r.details = append(r.details, fmt.Sprintf("announcements: %d deliveries, %d distinct message ids, collector reconnected %d times", a.deliveries, a.distinct, d.col.reconnects))
	if a.missing > 0 || a.order > 0 || a.extra > 0 {
		problems = append(problems, fmt.Sprintf("announcements: %d missing, %d jobs out of order, %d extra; e.g. %s", a.missing, a.order, a.extra, a.example))
	}
	return problems
}

type annCounts struct {
	deliveries, distinct       int
	missing, order, extra, dup int
	example                    string
}

// analyse checks that each expected job was announced scheduled, running, then its end, each
// once among distinct message ids (first occurrences, in arrival order).
func analyse(anns []announcement, prefix string, exp *expect) annCounts {
	var c annCounts
	c.deliveries = len(anns)
	seen := map[string]bool{}
	byJob := map[string][]string{}
	for _, a := range anns {
		if seen[a.id] {
			c.dup++
			continue
		}
		seen[a.id] = true
		byJob[a.job] = append(byJob[a.job], strings.TrimPrefix(a.topic, prefix+".execdb.job."))
	}
	c.distinct = len(seen)
	for id, final := range exp.jobs {
		end := "finished"
		if final == "CRASHED" {
			end = "crashed.taskotron.minion"
		}
		want := []string{"scheduled", "running", end}
		got := byJob[id]
		var present []string
		for _, w := range want {
			if slices.Contains(got, w) {
				present = append(present, w)
			} else {
				c.missing++
			}
		}
		c.extra += len(got) - len(present)
		var order []string
		for _, g := range got {
			if slices.Contains(want, g) && !slices.Contains(order, g) {
				order = append(order, g)
			}
		}
		if !slices.Equal(order, present) {
			c.order++
		}
		if (len(present) < 3 || len(got) != 3 || !slices.Equal(order, present)) && c.example == "" {
			c.example = fmt.Sprintf("job %s announced %v", id, got)
		}
	}
	for job, got := range byJob {
		if _, ok := exp.jobs[job]; !ok {
			c.extra += len(got)
			if c.example == "" {
				c.example = fmt.Sprintf("job %s (not expected) announced %v", job, got)
			}
		}
	}
	return c
}
