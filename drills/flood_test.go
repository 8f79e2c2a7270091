//go:build drills

package drills

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	"github.com/go-zeromq/zmq4"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// The hostile flood's make-up.
const (
	floodPerKind      = 100 // hostile bodies of each kind, hostile-id lives of each kind
	floodLarge        = 200 // bodies of 1–4 MiB
	floodBadIDBadBody = 50  // hostile ids on bodies that are rejected, per kind of id
	floodRSSLimitMB   = 150 // issue 11's target for the peak RSS
)

// nulID, ffID and longID make message ids that cannot be stored as they are (CONTRACT
// section 3, v1.1): ExecDB stores and deduplicates them as sha256:<hex> of their bytes.
func nulID(what string) string { return "drill\x00" + what + "-" + uuid.NewString() }
func ffID(what string) string  { return "drill\xff\xfe" + what + "-" + uuid.NewString() }
func longID(what string) string {
	return strings.Repeat("L", 3000-len(what)-37) + what + "-" + uuid.NewString()
}

// runFlood is drill 5.
func runFlood(t *testing.T) {
	d := newDrill(t, "hostile-flood", "5. hostile flood")
	rng := rand.New(rand.NewPCG(11, 5))
	p := d.prefix
	trigger, start, end := p+".taskotron.job.trigger", p+".taskotron.runtask.start", p+".taskotron.runtask.end"

	// Valid lives: plain ones over AMQP; over AMQP with ids holding a NUL or bytes 0xff 0xfe;
	// over fedmsg with ids of 3,000 characters. Every message of a hostile-id life is sent
	// twice with the same id: the second must change nothing.
	lv := newLives(cfg.jobs)
	nulLives, ffLives, longLives := livesFrom(cfg.jobs, floodPerKind), livesFrom(cfg.jobs+floodPerKind, floodPerKind), livesFrom(cfg.jobs+2*floodPerKind, floodPerKind)
	exp := &expect{rejected: map[string]int{}}
	for _, l := range []lives{lv, nulLives, ffLives, longLives} {
		exp.add(l)
	}
	exp.hashedApplied = 3 * (len(nulLives) + len(ffLives) + len(longLives))
	var hashedWant []string // the stored forms of every hostile id of a valid message

	type block []rabbitmqtest.Raw
	var originals, dups []block
	for _, set := range []struct {
		lives lives
		id    func(string) string
	}{{nulLives, nulID}, {ffLives, ffID}} {
		for _, l := range set.lives {
			b := block{
				rabbitmqtest.JSON(trigger, set.id("t"), l.triggerBody()),
				rabbitmqtest.JSON(start, set.id("s"), l.startBody()),
				rabbitmqtest.JSON(end, set.id("e"), l.endBody()),
			}
			for _, m := range b {
				stored, _ := bus.StorableID(m.MessageId)
				hashedWant = append(hashedWant, stored)
			}
			originals = append(originals, b)
			dups = append(dups, slices.Clone(b))
		}
	}

	// Hostile bodies, each rejected; the reasons are those of docs/messages.md.
	reject := func(reason string, hashed bool, topic, id, body string) block {
		exp.rejected[reason]++
		if hashed {
			exp.hashedRejected++
		}
		return block{rabbitmqtest.JSON(topic, id, body)}
	}
	topics := []string{trigger, start, end}
	notJSON := []string{`not JSON at all`, `{"taskname": "rpmlint", "item":`, `[1, 2, 3]`, `42`}
	for i := range floodPerKind {
		u := uuid.NewString()
		target := lv[rng.IntN(len(lv))].id // an end for a real job, which must not change it
		originals = append(originals,
			reject("schema", false, trigger, uuid.NewString(), fmt.Sprintf(`{"taskname":"rpmlint","item":"bad\u0000item","item_type":"koji_build","uuid":%q}`, u)),
			reject("schema", false, trigger, uuid.NewString(), fmt.Sprintf("{\"taskname\":\"t\xff\xfe\",\"item\":\"x\",\"item_type\":\"koji_build\",\"uuid\":%q}", u)),
			reject("schema", false, trigger, uuid.NewString(), fmt.Sprintf(`{"taskname":"rpmlint","item":"x\ud800y","item_type":"koji_build","uuid":%q}`, u)),
			reject("schema", false, trigger, uuid.NewString(), fmt.Sprintf(`{"taskname":"rpmlint","item":"a","item":"b","item_type":"koji_build","uuid":%q}`, u)),
			reject("undecodable", false, topics[i%3], uuid.NewString(), notJSON[i%len(notJSON)]),
			reject("schema", false, end, uuid.NewString(), fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"notify":"taskotron","cause":"gremlins"}}`, target)),
			reject("schema", false, end, uuid.NewString(), fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"notify":"taskotron","cause":"minion","keyvals":{"bad key":"x"}}}`, target)),
		)
	}
	for i := range floodBadIDBadBody {
		originals = append(originals,
			reject("undecodable", true, topics[i%3], nulID("bad"), notJSON[i%len(notJSON)]),
			reject("schema", true, end, ffID("bad"), fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"notify":"taskotron","cause":"gremlins"}}`, uuid.NewString())))
	}
	var large []block
	largeBytes := 0
	for range floodLarge {
		size := 1<<20 + rng.IntN(3<<20+1)
		head := fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"notify":"taskotron","cause":"minion","keyvals":{"log":"`, uuid.NewString())
		body := head + strings.Repeat("A", size-len(head)-4) + `"}}}`
		largeBytes += len(body)
		large = append(large, reject("schema", false, end, uuid.NewString(), body))
	}

	// The AMQP stream: the valid messages with the hostile blocks spread among them. The first
	// half, with every large body, waits in the queue before serve starts (the worst case for
	// memory: a prefetch full of them); the second half is published while serve runs. Each
	// duplicate of a hostile-id life comes after its original.
	rng.Shuffle(len(originals), func(i, j int) { originals[i], originals[j] = originals[j], originals[i] })
	rng.Shuffle(len(dups), func(i, j int) { dups[i], dups[j] = dups[j], dups[i] })
	half := len(originals) / 2
	first := append(slices.Clone(large), originals[:half]...)
	rng.Shuffle(len(first), func(i, j int) { first[i], first[j] = first[j], first[i] })
	second := append(slices.Clone(originals[half:]), dups...)
	valid := lv.messages(p)
	spread := func(valid []rabbitmqtest.Raw, blocks []block) []rabbitmqtest.Raw {
		var out []rabbitmqtest.Raw
		k := 0
		for i, m := range valid {
			for k < len(blocks) && k*len(valid) <= i*len(blocks) {
				out = append(out, blocks[k]...)
				k++
			}
			out = append(out, m)
		}
		for ; k < len(blocks); k++ {
			out = append(out, blocks[k]...)
		}
		return out
	}
	before := spread(valid[:len(valid)/2], first)
	after := spread(valid[len(valid)/2:], second)

	// fedmsg: a PUB socket of ours that serve subscribes to.
	zmqAddr := fmt.Sprintf("tcp://127.0.0.1:%d", freePort(t))
	pub := zmq4.NewPub(context.Background(), zmq4.WithLogger(log.New(io.Discard, "", 0)))
	defer pub.Close()
	if err := pub.SetOption(zmq4.OptionHWM, 100000); err != nil {
		t.Fatal(err)
	}
	if err := pub.Listen(zmqAddr); err != nil {
		t.Fatal(err)
	}
	type fedmsgMsg struct{ topic, id, body string }
	var fedFirst fedmsgMsg // sent until it is applied: the subscription is then in place
	var fedRest, fedDups []fedmsgMsg
	for i, l := range longLives {
		life := []fedmsgMsg{{trigger, longID("t"), l.triggerBody()}, {start, longID("s"), l.startBody()}, {end, longID("e"), l.endBody()}}
		for _, m := range life {
			stored, _ := bus.StorableID(m.id)
			hashedWant = append(hashedWant, stored)
		}
		if i == 0 {
			fedFirst = life[0]
			life = life[1:]
		}
		fedRest = append(fedRest, life...)
		fedDups = append(fedDups, life...)
	}
	fedDups = append(fedDups, fedFirst)
	for range floodBadIDBadBody {
		exp.rejected["schema"]++
		exp.hashedRejected++
		fedRest = append(fedRest, fedmsgMsg{end, longID("bad"), fmt.Sprintf(`{"uuid":%q,"state":"CRASHED","crash":{"notify":"taskotron","cause":"minion","keyvals":{"bad key":"x"}}}`, uuid.NewString())})
	}
	var fedI int64
	sendFedmsg := func(m fedmsgMsg) {
		fedI++
		env, err := json.Marshal(map[string]any{"topic": m.topic, "msg": json.RawMessage(m.body), "msg_id": m.id,
			"timestamp": float64(time.Now().UnixMilli()) / 1000, "i": fedI, "username": "drill"})
		if err != nil {
			t.Fatal(err)
		}
		if err := pub.Send(zmq4.NewMsgFrom([]byte(m.topic), env)); err != nil {
			t.Fatalf("fedmsg send: %v", err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	amqpRejections := exp.rejections() - floodBadIDBadBody
	d.note("flood: %d valid lives (%d with NUL ids, %d with 0xff ids over AMQP, %d with 3000-character ids over fedmsg), %d hostile messages (%d of 1–4 MiB, %.0f MiB in all), %d AMQP messages",
		len(exp.jobs), len(nulLives), len(ffLives), len(longLives), exp.rejections(), len(large), float64(largeBytes)/(1<<20), len(before)+len(after))
	p1 := newPublisher(d.rmq.url(), "amq.topic")
	p1.rate = 0 // queued before serve starts: as fast as the broker takes them
	if err := p1.run(ctx, before); err != nil {
		t.Fatalf("publish the first half: %v", err)
	}
	d.note("first half queued (%d messages, every large body); starting serve", len(before))

	s := d.serve("serve-1", "--fedmsg-connect", zmqAddr)
	s.waitConsumer(t, 1)
	waitReady(t, s.url, "fedmsg")
	rz := startReadyzSampler(s.url)
	pub2, published := d.publish(ctx, after)

	// fedmsg: the first trigger until it is applied, then the rest and the duplicates.
	applied := false
	for deadline := time.Now().Add(time.Minute); !applied && time.Now().Before(deadline); {
		sendFedmsg(fedFirst)
		time.Sleep(300 * time.Millisecond)
		n, err := d.count(ctx, fmt.Sprintf(`SELECT count(*) FROM jobs WHERE uuid = '%s'`, longLives[0].id))
		applied = err == nil && n == 1
	}
	if !applied {
		t.Fatal("no fedmsg message reached serve in a minute")
	}
	for _, m := range append(fedRest, fedDups...) {
		sendFedmsg(m)
		time.Sleep(time.Millisecond)
	}
	d.note("fedmsg: %d messages sent", fedI)
	d.published(pub2, published)
	d.settle(exp, 10*time.Minute)
	rz.stop()

	// The hostile ids of valid messages are stored as sha256 of their bytes, each applied once.
	var hashedGot []string
	qctx, qcancel := context.WithTimeout(context.Background(), time.Minute)
	defer qcancel()
	err := d.query(qctx, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, `SELECT message_id FROM job_events WHERE verdict = 'applied' AND message_id LIKE 'sha256:%'`)
		if err != nil {
			return err
		}
		hashedGot, err = pgx.CollectRows(rows, pgx.RowTo[string])
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(hashedWant)
	slices.Sort(hashedGot)
	if !slices.Equal(hashedWant, hashedGot) {
		t.Errorf("the applied events' sha256 message ids are not the stored forms of the hostile ids sent (%d expected, %d found)", len(hashedWant), len(hashedGot))
	}
	dead, err := queueDepth(d.rmq.url(), d.queue+".rejected")
	d.note("dead letters in %s.rejected: expected %d (the AMQP rejections), found %d (err %v)", d.queue, amqpRejections, dead, err)
	if err != nil || dead != amqpRejections {
		t.Errorf("dead letters: expected %d, found %d (err %v)", amqpRejections, dead, err)
	}
	d.note("readyz sampled %d times while draining: not ok %s%s", rz.samples, sortedCounts(rz.notOK), rz.firstBad)
	if len(rz.notOK) > 0 {
		t.Errorf("/readyz was not ok while draining the flood: %s%s", sortedCounts(rz.notOK), rz.firstBad)
	}
	d.finish(exp, func() []string {
		if mb := s.peakMB(); mb > floodRSSLimitMB {
			return []string{fmt.Sprintf("peak RSS %.1f MB, over the %d MB target", mb, floodRSSLimitMB)}
		}
		return nil
	})
}

// livesFrom makes n lives numbered from first.
func livesFrom(first, n int) lives {
	lv := newLives(n)
	for i := range lv {
		lv[i].n = first + i
		lv[i].crashed = (first+i)%2 == 1
	}
	return lv
}

// waitReady waits until /readyz says check is ok.
func waitReady(t *testing.T, base, check string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		checks, _, err := readyz(base)
		if err == nil && checks[check] == "ok" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz: %s not ok after a minute: %v %v", check, checks, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func readyz(base string) (map[string]string, int, error) {
	hc := http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(base + "/readyz")
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Checks map[string]string `json:"checks"`
	}
	err = json.NewDecoder(resp.Body).Decode(&body)
	return body.Checks, resp.StatusCode, err
}

// readyzSampler asks /readyz every 250 ms and counts, per check, the answers that were not ok.
type readyzSampler struct {
	samples  int
	notOK    map[string]int
	firstBad string
	stopc    chan struct{}
	wg       sync.WaitGroup
}

func startReadyzSampler(base string) *readyzSampler {
	r := &readyzSampler{notOK: map[string]int{}, stopc: make(chan struct{})}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-r.stopc:
				return
			case <-tick.C:
			}
			checks, _, err := readyz(base)
			r.samples++
			if err != nil {
				r.notOK["request"]++
				if r.firstBad == "" {
					r.firstBad = fmt.Sprintf(" (first: %v)", err)
				}
				continue
			}
			for name, v := range checks {
				if v != "ok" {
					r.notOK[name]++
					if r.firstBad == "" {
						r.firstBad = fmt.Sprintf(" (first: %s: %s)", name, v)
					}
				}
			}
		}
	}()
	return r
}

func (r *readyzSampler) stop() {
	close(r.stopc)
	r.wg.Wait()
}
