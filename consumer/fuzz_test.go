package consumer_test

import (
	"testing"

	"github.com/fedora-qa/execdb/bus"
	"github.com/fedora-qa/execdb/consumer"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
)

// FuzzDecode: whatever id, topic and body a producer sends, Decode asks for exactly one thing
// (create, event or rejection), with a message id that can be stored (bounded, valid text), and
// what it accepts keeps the text rule.
func FuzzDecode(f *testing.F) {
	for _, s := range []struct{ id, suffix, body string }{
		{"m1", consumer.SuffixTrigger, `{"taskname":"rpmlint","item":"x-1-1.fc45","item_type":"koji_build"}`},
		{"nul\x00id", consumer.SuffixStart, `{"uuid":"0193a5c3-7c1e-7abc-8def-0123456789ab"}`},
		{"bad\xff", consumer.SuffixEnd, `{"uuid":"0193a5c3-7c1e-7abc-8def-0123456789ab","state":"CRASHED","crash":{"keyvals":{"bad key":1}}}`},
		{"", consumer.SuffixEnd, "{\"uuid\":\"0193a5c3-7c1e-7abc-8def-0123456789ab\",\"state\":\"FIN\xffISHED\"}"},
		{"d", consumer.SuffixTrigger, `{"taskname":"t","taskname":"u","item":"i","item_type":"k"}`},
		{"t", "taskotron.runtask.endless", `{}`},
	} {
		f.Add(s.id, prefix+"."+s.suffix, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, id, topic string, body []byte) {
		d := bus.Delivery{Message: bus.Message{ID: id, Topic: topic, Body: body}}
		m := consumer.Decode(d, statemachine.OriginAMQP, prefix)
		asks := 0
		for _, set := range []bool{m.Create != nil, m.Event != nil, m.Reject != nil} {
			if set {
				asks++
			}
		}
		if asks != 1 {
			t.Fatalf("Decode asks for %d things: %+v", asks, m)
		}
		if mid := m.Meta.MessageID; mid == "" || len(mid) > bus.MaxMessageIDBytes || !schemas.ValidText(mid) {
			t.Fatalf("message id %q cannot be stored", mid)
		}
		if m.Create != nil {
			for _, s := range []string{m.Create.TaskName, m.Create.Item, m.Create.ItemType, m.Create.Arch, m.Create.RequestID} {
				if !schemas.ValidText(s) {
					t.Fatalf("accepted %q", s)
				}
			}
		}
		if r := m.Reject; r != nil && r.Reason == "" {
			t.Fatalf("a rejection without a reason: %+v", r)
		}
	})
}
