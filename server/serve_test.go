package server

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
)

// TestRun runs the service in process on port 0, as an embedding test would: Listening tells
// the address, the API answers, and the end of the context stops Run with nil.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	addrs := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, Config{DB: "sqlite:" + filepath.Join(t.TempDir(), "execdb.db"), Listen: "127.0.0.1:0",
			Pprof: "127.0.0.1:0", Listening: func(addr string) { addrs <- addr }})
	}()
	var base string
	select {
	case addr := <-addrs:
		base = "http://" + addr
	case err := <-done:
		t.Fatalf("Run returned %v before it listened", err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not listen within 30s")
	}
	resp, err := http.Post(base+"/api/v1/jobs", "application/json",
		strings.NewReader(`{"taskname":"rpmlint","item":"foo-1-1.fc45","item_type":"koji_build"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	// The default topic prefix was taken for the zero one.
	if resp.StatusCode != http.StatusCreated || !strings.Contains(string(body), `"state":"SCHEDULED"`) {
		t.Fatalf("create: got %d %s, want 201 and the job", resp.StatusCode, body)
	}
	// The pages are served beside the API; what is neither is the API's JSON 404.
	for path, want := range map[string]string{"/": "text/html", "/jobs?taskname=rpmlint": "text/html",
		"/healthz": "application/json", "/nothing": "application/json"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ct := resp.Header.Get("Content-Type")
		switch {
		case !strings.HasPrefix(ct, want):
			t.Errorf("GET %s: got %s, want %s", path, ct, want)
		case path == "/jobs?taskname=rpmlint" && !strings.Contains(string(page), "foo-1-1.fc45"):
			t.Errorf("GET %s: the page lacks the job just created", path)
		case path == "/nothing" && resp.StatusCode != http.StatusNotFound:
			t.Errorf("GET %s: got %d, want 404", path, resp.StatusCode)
		}
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: got %v after the context ended, want nil", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not stop within 30s of the end of its context")
	}
}

// TestConfigDefaults: a zero setting is the default serve reads when nothing is set.
func TestConfigDefaults(t *testing.T) {
	got := Config{}.withDefaults()
	if got.Log == nil {
		t.Error("Log: got nil, want a logger that logs nothing")
	}
	got.Log = nil
	want := Config{DB: "sqlite:execdb.db", Listen: "127.0.0.1:5003", TopicPrefix: "org.fedoraproject.dev",
		AMQPExchange: "amq.topic", AMQPQueue: "execdb", ParkTTL: time.Hour, RunTimeout: 3 * time.Hour,
		ScheduleTimeout: 24 * time.Hour, RescheduleDelay: 30 * time.Second}
	if got.DB != want.DB || got.Listen != want.Listen || got.TopicPrefix != want.TopicPrefix ||
		got.AMQPExchange != want.AMQPExchange || got.AMQPQueue != want.AMQPQueue || got.ParkTTL != want.ParkTTL ||
		got.RunTimeout != want.RunTimeout || got.ScheduleTimeout != want.ScheduleTimeout ||
		got.RescheduleDelay != want.RescheduleDelay || got.AutoReschedule != 0 || !got.Retention.IsZero() {
		t.Errorf("got %+v, want %+v", got, want)
	}
	kept := Config{RunTimeout: time.Minute, TopicPrefix: "org.example"}.withDefaults()
	if kept.RunTimeout != time.Minute || kept.TopicPrefix != "org.example" {
		t.Errorf("set values were replaced: got %s and %s", kept.RunTimeout, kept.TopicPrefix)
	}
}

// TestPprof: the profiles are served on their own listener, and only when asked for.
func TestPprof(t *testing.T) {
	addr, stop, err := startPprof("127.0.0.1:0", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "goroutine profile") {
		t.Errorf("goroutine profile: got %d %.100s", resp.StatusCode, body)
	}
	stop()
	if _, err := http.Get("http://" + addr + "/debug/pprof/"); err == nil {
		t.Error("still serving after stop")
	}
	if addr, stop, err := startPprof("", zap.NewNop()); addr != "" || err != nil {
		t.Errorf("off: got %q, %v; want nothing served", addr, err)
	} else {
		stop()
	}
}
