package fedmsg_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/bus/bustest"
	"github.com/fedora-qa/execdb/fedmsg"
)

func fastBackoff() bus.Backoff {
	return bus.Backoff{Min: 20 * time.Millisecond, Max: 200 * time.Millisecond}
}

func newPublisher(t *testing.T, bind string) *fedmsg.Publisher {
	t.Helper()
	p, err := fedmsg.NewPublisher(fedmsg.PublisherConfig{Bind: bind})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

func newSubscriber(t *testing.T, endpoints []string, topics []string) *fedmsg.Subscriber {
	t.Helper()
	s, err := fedmsg.NewSubscriber(fedmsg.SubscriberConfig{Endpoints: endpoints, Topics: topics, Backoff: fastBackoff()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func endpoint(p *fedmsg.Publisher) string { return "tcp://" + p.Addr().String() }

func TestTransport(t *testing.T) {
	bustest.Run(t, func(t *testing.T, topics []string) (bus.Publisher, func(t *testing.T) bus.Subscriber) {
		pub := newPublisher(t, "tcp://127.0.0.1:0")
		return pub, func(t *testing.T) bus.Subscriber { return newSubscriber(t, []string{endpoint(pub)}, topics) }
	})
}

func TestEnvelope(t *testing.T) {
	created := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	m := bus.Message{ID: "0b9e8f2c-1111-4a55-9f3e-1d2b6f0a9c11", Topic: "org.example.execdb.job.finished", Body: []byte(`{"state":"FINISHED"}`), Time: created}
	frames, err := fedmsg.Encode(m, 7, "execdb", time.Unix(1800000000, 500_000_000))
	if err != nil {
		t.Fatal(err)
	}
	var env map[string]any
	if err := json.Unmarshal(frames[1], &env); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"topic": m.Topic, "msg": map[string]any{"state": "FINISHED"}, "msg_id": "2026-" + m.ID,
		"timestamp": 1800000000.5, "i": float64(7), "username": "execdb"}
	if fmt.Sprint(env) != fmt.Sprint(want) || string(frames[0]) != m.Topic {
		t.Errorf("got %s %v, want %v", frames[0], env, want)
	}
	back, err := fedmsg.Decode(frames)
	if err != nil || back.ID != "2026-"+m.ID || string(back.Body) != string(m.Body) || back.Time.Unix() != 1800000000 {
		t.Errorf("decode: got %+v, %v", back, err)
	}
	bad := [][]byte{[]byte("org.example.a"), []byte(`{"topic":"org.example.b","msg":{}}`)}
	if m, err := fedmsg.Decode(bad); !errors.Is(err, bus.ErrTopicMismatch) || m.Topic != "org.example.a" || !strings.HasPrefix(m.ID, "sha256:") {
		t.Errorf("topic mismatch: got %+v, %v", m, err)
	}
	if _, err := fedmsg.Decode([][]byte{[]byte("t"), []byte("not json")}); err == nil {
		t.Error("garbage envelope: got no error")
	}
	if _, err := fedmsg.Decode([][]byte{[]byte("t")}); err == nil {
		t.Error("one frame: got no error")
	}
	// An envelope must be JSON text (RFC 8259, I-JSON): encoding/json would make two msg_ids
	// one by replacing their invalid bytes, and let a repeated member win silently.
	for name, env := range map[string]string{
		"invalid UTF-8 in msg_id": "{\"topic\":\"t\",\"msg\":{},\"msg_id\":\"2026-\xff\"}",
		"lone surrogate":          `{"topic":"t","msg":{},"msg_id":"2026-\udc00"}`,
		"msg_id twice":            `{"topic":"t","msg":{},"msg_id":"a","msg_id":"b"}`,
	} {
		if m, err := fedmsg.Decode([][]byte{[]byte("t"), []byte(env)}); err == nil || !strings.HasPrefix(m.ID, "sha256:") {
			t.Errorf("%s: got %+v, %v; want an error and an id from the bytes", name, m, err)
		}
	}
	// A NUL in msg_id is valid JSON: the envelope is read, the consumer stores the id hashed.
	if m, err := fedmsg.Decode([][]byte{[]byte("t"), []byte(`{"topic":"t","msg":{},"msg_id":"a\u0000b"}`)}); err != nil || m.ID != "a\x00b" {
		t.Errorf("NUL in msg_id: got %q, %v", m.ID, err)
	}
}

// TestTooLargeIsCutAtReceive: an envelope over the subscriber's limit is delivered as
// bus.ErrTooLarge with only its beginning kept.
func TestTooLargeIsCutAtReceive(t *testing.T) {
	pub := newPublisher(t, "tcp://127.0.0.1:0")
	sub, err := fedmsg.NewSubscriber(fedmsg.SubscriberConfig{Endpoints: []string{endpoint(pub)}, Topics: []string{"org.example.large"},
		Backoff: fastBackoff(), MaxBodyBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Close() })
	big := bus.Message{ID: "big", Topic: "org.example.large", Body: []byte(`{"x":"` + strings.Repeat("x", 1<<20) + `"}`), Time: time.Now()}
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Wait)
	defer cancel()
	for {
		if _, err := pub.Publish(ctx, []bus.Message{big}); err != nil {
			t.Fatal(err)
		}
		short, cancelShort := context.WithTimeout(ctx, 100*time.Millisecond)
		d, err := sub.Receive(short)
		cancelShort()
		if err == nil {
			if !errors.Is(d.Malformed, bus.ErrTooLarge) || len(d.Body) != bus.KeptOfTooLarge || d.BodySize <= len(big.Body) {
				t.Fatalf("got malformed %v, %d of %d bytes; want ErrTooLarge, %d kept", d.Malformed, len(d.Body), d.BodySize, bus.KeptOfTooLarge)
			}
			return
		}
		if ctx.Err() != nil {
			t.Fatal("nothing arrived")
		}
	}
}

// TestJoinDelay: what is published the moment the socket is bound (the relay's backlog at a
// restart) reaches a subscriber that connects as it comes up: Publish waits JoinDelay first.
func TestJoinDelay(t *testing.T) {
	pub := newPublisher(t, "tcp://127.0.0.1:0")
	sub := newSubscriber(t, []string{endpoint(pub)}, []string{"org.example.backlog"})
	var backlog []bus.Message
	for i := range 3 {
		backlog = append(backlog, bus.Message{ID: fmt.Sprint("b", i), Topic: "org.example.backlog", Body: []byte(`{}`), Time: time.Now()})
	}
	if n, err := pub.Publish(context.Background(), backlog); err != nil || n != 3 {
		t.Fatalf("publish: %d, %v", n, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for i := range 3 {
		d, err := sub.Receive(ctx)
		if err != nil || !strings.HasSuffix(d.ID, fmt.Sprint("b", i)) {
			t.Fatalf("message %d of the backlog: got %q, %v", i, d.ID, err)
		}
	}
}

// TestReconnect restarts the publisher on the same port: the subscriber dials it again.
func TestReconnect(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	topic := "org.example.reconnect"
	pub, err := fedmsg.NewPublisher(fedmsg.PublisherConfig{Bind: "tcp://" + addr})
	if err != nil {
		t.Fatal(err)
	}
	sub := newSubscriber(t, []string{"tcp://" + addr}, []string{topic})
	waitFor(t, pub, sub, topic, "first")
	if err := sub.Ready(context.Background()); err != nil {
		t.Errorf("ready: %v", err)
	}
	pub.Close()
	pub = newPublisher(t, "tcp://"+addr)
	waitFor(t, pub, sub, topic, "second")
}

// waitFor publishes id until the subscriber gets it: messages sent before the subscription
// reached the publisher are lost, which is how ZeroMQ PUB/SUB works.
func waitFor(t *testing.T, pub bus.Publisher, sub bus.Subscriber, topic, id string) {
	t.Helper()
	deadline := time.Now().Add(bustest.Wait)
	for time.Now().Before(deadline) {
		pub.Publish(context.Background(), []bus.Message{{ID: id, Topic: topic, Body: []byte(`{}`)}})
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		d, err := sub.Receive(ctx)
		cancel()
		if err == nil && strings.HasSuffix(d.ID, id) {
			return
		}
	}
	t.Fatalf("never received %s", id)
}

// python returns a Python interpreter with pyzmq (libzmq), or skips.
func python(t *testing.T) string {
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(p, "-c", "import zmq").Run() == nil {
			return p
		}
	}
	t.Skip("no python3 with pyzmq (Debian: apt-get install python3-zmq)")
	return ""
}

// TestLibzmqPublisher receives from a pyzmq (libzmq) publisher sending the way fedmsg does.
func TestLibzmqPublisher(t *testing.T) {
	py := python(t)
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	script := `
import json, sys, time, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.PUB)
s.bind(sys.argv[1])
for i in range(400):
    for topic in ("org.example.interop.hit", "org.example.other"):
        env = {"topic": topic, "msg": {"n": i}, "msg_id": "2026-%08d" % i, "timestamp": time.time(), "i": i, "username": "pyzmq"}
        s.send_multipart([topic.encode(), json.dumps(env).encode()])
    time.sleep(0.05)
`
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", script, "tcp://"+addr)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	sub := newSubscriber(t, []string{"tcp://" + addr}, []string{"org.example.interop."})
	d, err := sub.Receive(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if d.Topic != "org.example.interop.hit" || !strings.HasPrefix(d.ID, "2026-") || d.Malformed != nil || d.Time.IsZero() {
		t.Errorf("got %+v", d)
	}
}

// TestLibzmqSubscriber has a pyzmq subscriber with the prefix a task maintainers' bot uses:
// it gets task crashes, not taskotron ones, though "task" is a prefix of "taskotron".
func TestLibzmqSubscriber(t *testing.T) {
	py := python(t)
	pub := newPublisher(t, "tcp://127.0.0.1:0")
	script := `
import json, sys, zmq
ctx = zmq.Context()
s = ctx.socket(zmq.SUB)
s.setsockopt(zmq.SUBSCRIBE, b"org.example.execdb.job.crashed.task.")
s.connect(sys.argv[1])
got = []
ready = False
while len(got) < 3:
    topic, env = s.recv_multipart()
    e = json.loads(env)
    assert e["topic"] == topic.decode(), e
    if e["msg"].get("probe"):
        if not ready:
            print("ready", flush=True)
            ready = True
        continue
    got.append([topic.decode(), e["msg_id"], e["username"], e["i"] > 0])
print(json.dumps(got), flush=True)
`
	ctx, cancel := context.WithTimeout(context.Background(), bustest.Wait)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", script, endpoint(pub))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cancel(); cmd.Wait() }()
	lines := make(chan string)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	next := func() string {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("the libzmq subscriber ended: %s", stderr.String())
			}
			return l
		case <-ctx.Done():
			t.Fatal("the libzmq subscriber did not answer")
		}
		return ""
	}
	// Probe until the subscription reached us, then send the real messages.
	probe := bus.Message{ID: "probe", Topic: "org.example.execdb.job.crashed.task.task", Body: []byte(`{"probe":true}`)}
	go func() {
		for ctx.Err() == nil {
			pub.Publish(ctx, []bus.Message{probe})
			time.Sleep(50 * time.Millisecond)
		}
	}()
	if l := next(); l != "ready" {
		t.Fatalf("python said %q", l)
	}
	created := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	msgs := []bus.Message{
		{ID: "a", Topic: "org.example.execdb.job.crashed.taskotron.minion", Body: []byte(`{}`), Time: created},
		{ID: "b", Topic: "org.example.execdb.job.crashed.task.task", Body: []byte(`{}`), Time: created},
		{ID: "c", Topic: "org.example.execdb.job.finished", Body: []byte(`{}`), Time: created},
		{ID: "d", Topic: "org.example.execdb.job.crashed.task.network", Body: []byte(`{}`), Time: created},
		{ID: "e", Topic: "org.example.execdb.job.crashed.task.unknown", Body: []byte(`{}`), Time: created},
	}
	if _, err := pub.Publish(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	out := next()
	var got [][]any
	if err := json.Unmarshal([]byte(out), &got); err != nil {
		t.Fatalf("python said %q", out)
	}
	want := `[[org.example.execdb.job.crashed.task.task 2026-b execdb true] [org.example.execdb.job.crashed.task.network 2026-d execdb true] [org.example.execdb.job.crashed.task.unknown 2026-e execdb true]]`
	if fmt.Sprint(got) != want {
		t.Errorf("got %v, want %s", got, want)
	}
}
