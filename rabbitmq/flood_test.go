package rabbitmq_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/rabbitmq"
	"github.com/fedora-qa/execdb/rabbitmq/rabbitmqtest"
	amqp "github.com/rabbitmq/amqp091-go"
)

// floodHeapLimit bounds the Go heap the subscriber may add while a flood of large bodies
// arrives. The bodies are cut the moment they arrive, so only the few being read off the socket
// at a time are whole (a few times 4 MiB, and their garbage until the next collection); before
// they were, up to the prefetch of them waited whole in the client library (hundreds of MB
// here).
const floodHeapLimit = 100 << 20

// TestFloodOfLargeBodies: 200 bodies of 1–4 MiB (with a small message after each) are queued
// before the subscriber starts, and its receiver is slow, as ExecDB's consumer is while a batch
// commits. The Go heap the subscriber adds stays small however long the receiver dawdles: it
// cuts each large body to its beginning as it arrives. The test logs the peaks of the heap and
// of the process's RSS (which, under -race, includes the race detector's shadow memory).
func TestFloodOfLargeBodies(t *testing.T) {
	if testing.Short() {
		t.Skip("publishes 500 MiB through the broker")
	}
	url := rabbitmqtest.URL(t)
	name := rabbitmqtest.Name("execdb-test-flood")
	top := rabbitmq.Topology{Exchange: "amq.topic", Queue: name, Bindings: []string{name + ".in"}}
	rabbitmqtest.Topology(t, url, top)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	const large = 200
	total := publishLarge(ctx, t, url, name+".in", large)

	runtime.GC()
	debug.FreeOSMemory()
	before := heapBytes()
	rssReset := resetPeakRSS()
	var peak atomic.Uint64
	sampled := make(chan struct{})
	stopSampling := make(chan struct{})
	go func() { // the heap's peak, read every millisecond
		defer close(sampled)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if h := heapBytes(); h > peak.Load() {
				peak.Store(h)
			}
			select {
			case <-stopSampling:
				return
			case <-tick.C:
			}
		}
	}()

	sub := rabbitmq.NewSubscriber(rabbitmq.SubscriberConfig{URL: url, Topology: top, Name: name + " consumer", MaxBodyBytes: 256 << 10})
	defer sub.Close()
	// The receiver takes batches of 20 and "commits" each for 50 ms before it settles it, so that
	// the broker, which sends up to the prefetch (1000) unacknowledged, is always ahead of it.
	var tooLarge, small int
	for tooLarge+small < 2*large {
		var batch []bus.Delivery
		for len(batch) < 20 && tooLarge+small+len(batch) < 2*large {
			d, err := sub.Receive(ctx)
			if err != nil {
				t.Fatalf("after %d large and %d small: %v", tooLarge, small, err)
			}
			batch = append(batch, d)
		}
		time.Sleep(50 * time.Millisecond)
		for _, d := range batch {
			if errors.Is(d.Malformed, bus.ErrTooLarge) {
				if len(d.Body) != bus.KeptOfTooLarge || d.BodySize < 1<<20 {
					t.Errorf("%s: got %d bytes of %d, want the first %d of at least 1 MiB", d.ID, len(d.Body), d.BodySize, bus.KeptOfTooLarge)
				}
				tooLarge++
				if err := d.Reject(map[string]string{"execdb_reject_reason": "schema"}); err != nil {
					t.Fatal(err)
				}
				continue
			}
			small++
			if err := d.Ack(); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(stopSampling)
	<-sampled
	if tooLarge != large {
		t.Errorf("got %d bodies cut as too large, want %d", tooLarge, large)
	}
	grown := int64(peak.Load()) - int64(before)
	rss := "not measured (needs Linux's /proc/self/clear_refs)"
	if rssReset {
		rss = fmt.Sprintf("%d MB", peakRSS(t)>>20)
	}
	t.Logf("%d bodies of 1–4 MiB (%d MiB in all) and %d small messages: the Go heap peaked at %d MB (%d MB before the subscriber started); "+
		"the process's peak RSS since then: %s", large, total>>20, small, peak.Load()>>20, before>>20, rss)
	if grown > floodHeapLimit {
		t.Errorf("the Go heap grew by %d MB while the large bodies arrived, more than %d MB: they pile up whole", grown>>20, floodHeapLimit>>20)
	}
}

// publishLarge publishes n bodies of 1–4 MiB to amq.topic with key, each followed by a small
// message, with confirms, 10 at a time, and returns how many bytes the large bodies had. The
// bodies share one buffer, so that publishing them does not take 500 MiB of the test's memory.
func publishLarge(ctx context.Context, t *testing.T, url, key string, n int) (total int) {
	t.Helper()
	conn, err := rabbitmq.Dial(ctx, url, "execdb test publisher")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.Confirm(false); err != nil {
		t.Fatal(err)
	}
	buf := []byte(`{"uuid":"` + strings.Repeat("x", 4<<20))
	rng := rand.New(rand.NewPCG(1, 2))
	var pending []*amqp.DeferredConfirmation
	wait := func() {
		for _, dc := range pending {
			if ok, err := dc.WaitContext(ctx); !ok || err != nil {
				t.Fatalf("publish: confirmed %v, %v", ok, err)
			}
		}
		pending = pending[:0]
	}
	for i := range n {
		size := 1<<20 + rng.IntN(3<<20)
		total += size
		for _, m := range []rabbitmqtest.Raw{
			rabbitmqtest.JSON(key, "large-"+strconv.Itoa(i), ""),
			rabbitmqtest.JSON(key, "small-"+strconv.Itoa(i), `{}`),
		} {
			if strings.HasPrefix(m.MessageId, "large-") {
				m.Body = buf[:size]
			}
			dc, err := ch.PublishWithDeferredConfirmWithContext(ctx, "amq.topic", m.Topic, false, false, m.Publishing)
			if err != nil {
				t.Fatal(err)
			}
			pending = append(pending, dc)
		}
		if len(pending) >= 20 {
			wait()
		}
	}
	wait()
	return total
}

// heapBytes is the memory of the Go heap's objects, live or not yet swept.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64()
}

// resetPeakRSS resets the process's peak RSS (VmHWM), as Linux allows; it reports whether it
// could.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

// peakRSS is the process's peak RSS in bytes (VmHWM).
func peakRSS(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("VmHWM: %q", v)
			}
			return kb << 10
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}
