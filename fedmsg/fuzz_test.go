package fedmsg_test

import (
	"testing"

	"github.com/fedora-qa/execdb/fedmsg"
)

// FuzzDecode: whatever frames arrive, Decode returns a message with an id, and on success a
// topic that matches the frame and a body.
func FuzzDecode(f *testing.F) {
	f.Add([]byte("org.example.t"), []byte(`{"topic":"org.example.t","msg":{"a":1},"msg_id":"2026-x","timestamp":1.5,"i":1,"username":"u"}`))
	f.Add([]byte("t"), []byte("{\"topic\":\"t\",\"msg\":{},\"msg_id\":\"\xff\"}"))
	f.Add([]byte("t"), []byte(`{"topic":"t","msg":{},"msg_id":"a","msg_id":"b"}`))
	f.Add([]byte("t"), []byte(`{"topic":"u","msg":{}}`))
	f.Add([]byte("t"), []byte(`{"topic":"t","msg":null,"timestamp":1e308}`))
	f.Fuzz(func(t *testing.T, topic, env []byte) {
		m, err := fedmsg.Decode([][]byte{topic, env})
		if m.ID == "" {
			t.Fatalf("no id: %+v, %v", m, err)
		}
		if err == nil && (m.Topic != string(topic) || len(m.Body) == 0) {
			t.Fatalf("decoded %+v from topic %q", m, topic)
		}
	})
}
