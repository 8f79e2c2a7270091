package memory_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/bus/bustest"
	"github.com/fedora-qa/execdb/bus/memory"
)

var queues atomic.Int64

func TestTransport(t *testing.T) {
	bustest.Run(t, func(t *testing.T, topics []string) (bus.Publisher, func(t *testing.T) bus.Subscriber) {
		b := memory.NewBroker()
		name := fmt.Sprint("q", queues.Add(1))
		b.Declare(name, topics...)
		pub := b.Publisher()
		t.Cleanup(func() { pub.Close() })
		return pub, func(t *testing.T) bus.Subscriber {
			s := b.Subscribe(name)
			t.Cleanup(func() { s.Close() })
			return s
		}
	})
}

func TestDeadLetters(t *testing.T) {
	b := memory.NewBroker()
	b.Declare("q", "a.")
	pub := b.Publisher()
	pub.Publish(t.Context(), []bus.Message{{ID: "1", Topic: "a.x"}, {ID: "2", Topic: "b.x"}})
	if b.Len("q") != 1 {
		t.Fatalf("got %d queued, want 1", b.Len("q"))
	}
	s := b.Subscribe("q")
	d, err := s.Receive(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	d.Reject(nil)
	if dl := b.DeadLetters("q"); len(dl) != 1 || dl[0].ID != "1" {
		t.Errorf("got dead letters %v, want message 1", dl)
	}
}
