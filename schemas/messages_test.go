package schemas

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// TestSchemaExamples validates each schema's own examples.
func TestSchemaExamples(t *testing.T) {
	for kind, doc := range map[Body][]byte{BodyTrigger: TriggerSchema, BodyStart: StartSchema, BodyEnd: EndSchema, BodyJob: JobSchema} {
		var s struct {
			Examples []json.RawMessage `json:"examples"`
		}
		if err := json.Unmarshal(doc, &s); err != nil {
			t.Fatal(err)
		}
		if len(s.Examples) == 0 {
			t.Errorf("%s: no examples", kind)
		}
		for i, ex := range s.Examples {
			if err := Validate(kind, ex); err != nil {
				t.Errorf("%s example %d: %v", kind, i, err)
			}
		}
	}
}

const id = `"0193a7b2-4c1e-7d2a-9f00-5b1c9e2d7a31"`

// TestSchemasAgreeWithDecoders feeds bodies to the schema and the lenient decoder: both accept
// or both reject, naming the same field.
func TestSchemasAgreeWithDecoders(t *testing.T) {
	decode := map[Body]func([]byte) error{
		BodyTrigger: func(b []byte) error { _, err := DecodeTrigger(b, Lenient); return err },
		BodyStart:   func(b []byte) error { _, err := DecodeStart(b, Lenient, true); return err },
		BodyEnd:     func(b []byte) error { _, err := DecodeEnd(b, Lenient, true); return err },
	}
	cases := []struct {
		kind  Body
		body  string
		field string // "" when valid
	}{
		{BodyTrigger, `{"taskname":"rpmlint","item":"foo-1-1","item_type":"koji_build"}`, ""},
		{BodyTrigger, `{"taskname":"rpmlint","item":"foo-1-1","item_type":"koji_build","arch":null,"uuid":null,"future":{"x":1}}`, ""},
		{BodyTrigger, `{"taskname":"rpmlint","item":"foo-1-1","item_type":"koji_build","data":{"a":[1,true,"x"]},"source":{"msg_id":"m"}}`, ""},
		{BodyTrigger, `{"item":"foo-1-1","item_type":"koji_build"}`, "taskname"},
		{BodyTrigger, `{"taskname":"","item":"foo-1-1","item_type":"koji_build"}`, "taskname"},
		{BodyTrigger, `{"taskname":7,"item":"foo-1-1","item_type":"koji_build"}`, "taskname"},
		{BodyTrigger, `{"taskname":"r","item":"i","item_type":"t","uuid":"nope"}`, "uuid"},
		{BodyTrigger, `{"taskname":"r","item":"i","item_type":"t","data":{"bad:key":"x"}}`, "data"},
		{BodyTrigger, `{"taskname":"r","item":"i","item_type":"t","data":{"k":{"nested":1}}}`, "data.k"},
		{BodyTrigger, `{"taskname":"r","item":"i","item_type":"t","source":{"topic":"x"}}`, "source.msg_id"},
		{BodyStart, `{"uuid":` + id + `}`, ""},
		{BodyStart, `{"uuid":` + id + `,"started_at":"2026-11-02T10:00:03.5+01:00","runner":{"name":"bb","extra":1}}`, ""},
		{BodyStart, `{}`, "uuid"},
		{BodyStart, `{"uuid":` + id + `,"started_at":"yesterday"}`, "started_at"},
		{BodyStart, `{"uuid":` + id + `,"runner":{"name":3}}`, "runner.name"},
		{BodyEnd, `{"uuid":` + id + `,"state":"FINISHED"}`, ""},
		{BodyEnd, `{"uuid":` + id + `,"state":"CRASHED"}`, ""},
		{BodyEnd, `{"uuid":` + id + `,"state":"CRASHED","crash":{"notify":"task","cause":"network","fatal":true,"keyvals":{"step":"X","n":3}}}`, ""},
		{BodyEnd, `{"uuid":` + id + `,"state":"FINISHED","crash":null}`, ""},
		{BodyEnd, `{"uuid":` + id + `}`, "state"},
		{BodyEnd, `{"uuid":` + id + `,"state":"RUNNING"}`, "state"},
		{BodyEnd, `{"uuid":` + id + `,"state":"CRASHED","crash":{"cause":"gremlins"}}`, "crash.cause"},
		{BodyEnd, `{"uuid":` + id + `,"state":"CRASHED","crash":{"notify":"everyone"}}`, "crash.notify"},
		{BodyEnd, `{"uuid":` + id + `,"state":"CRASHED","crash":{"fatal":"yes"}}`, "crash.fatal"},
		{BodyEnd, `{"uuid":` + id + `,"state":"FINISHED","crash":{"cause":"task"}}`, "crash"},
		{BodyEnd, `{"uuid":` + id + `,"state":"CRASHED","finished_at":"2026-13-01T00:00:00Z"}`, "finished_at"},
	}
	for _, tc := range cases {
		verr := Validate(tc.kind, []byte(tc.body))
		derr := decode[tc.kind]([]byte(tc.body))
		if tc.field == "" {
			if verr != nil || derr != nil {
				t.Errorf("%s %s: got schema %v, decoder %v; want both valid", tc.kind, tc.body, verr, derr)
			}
			continue
		}
		var vf, df *FieldError
		if !errors.As(verr, &vf) || !errors.As(derr, &df) {
			t.Errorf("%s %s: got schema %v, decoder %v; want both to reject %s", tc.kind, tc.body, verr, derr, tc.field)
			continue
		}
		if vf.Field != tc.field {
			t.Errorf("%s %s: schema names %q (%s), want %q", tc.kind, tc.body, vf.Field, vf.Message, tc.field)
		}
		if df.Field != tc.field && !(tc.field == "data" && df.Field == "data.bad:key") {
			t.Errorf("%s %s: decoder names %q (%s), want %q", tc.kind, tc.body, df.Field, df.Message, tc.field)
		}
	}
	if err := Validate(BodyStart, []byte(`{not json`)); err == nil {
		t.Error("invalid JSON: got no error")
	}
}

// TestJobMessageValidates renders jobs the way the outbox does and validates them.
func TestJobMessageValidates(t *testing.T) {
	now := time.Date(2026, 11, 2, 10, 0, 0, 0, time.UTC)
	job, _ := statemachine.Create(statemachine.NewJob{UUID: uuid.New(), TaskName: "rpmlint", Item: "i", ItemType: "koji_build",
		Source: &statemachine.Source{MsgID: "m", Topic: "t"}}, now)
	crashed := statemachine.Apply(job, statemachine.Event{Meta: statemachine.Meta{ReceivedAt: now},
		End: &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: statemachine.NotifyTask, Cause: statemachine.CauseTask},
			Runner: &statemachine.Runner{Name: "buildbot"}}}).Job // the runner's other fields unknown: null
	for _, j := range []statemachine.Job{job, crashed} {
		b, _ := json.Marshal(j)
		b = append(b[:len(b)-1], []byte(`,"previous_state":null}`)...)
		if err := Validate(BodyJob, b); err != nil {
			t.Errorf("%s job: %v\n%s", j.State, err, b)
		}
	}
}
