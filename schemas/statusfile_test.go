package schemas

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/statemachine"
)

func writeStatus(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "status.json")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestReadStatusFileValid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, content string
		want          statemachine.End
	}{
		{"finished", `{"state": "FINISHED"}`, statemachine.End{State: statemachine.Finished}},
		{"finished with null crash", `{"state": "FINISHED", "crash": null}`, statemachine.End{State: statemachine.Finished}},
		{"crashed without crash", `{"state":"CRASHED"}`, statemachine.End{State: statemachine.Crashed,
			Crash: &statemachine.Crash{Notify: "unknown", Cause: "unknown", KeyVals: statemachine.KeyVals{}}}},
		{"crashed with null crash", `{"state":"CRASHED","crash":null}`, statemachine.End{State: statemachine.Crashed,
			Crash: &statemachine.Crash{Notify: "unknown", Cause: "unknown", KeyVals: statemachine.KeyVals{}}}},
		{"crashed in full", `{"state":"CRASHED","crash":{"notify":"taskotron","cause":"minion","fatal":false,
			"keyvals":{"step":"MINION_CREATION","reason":["TIMED_OUT"],"tries":3,"retried":true}}}` + "\n",
			statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: "taskotron", Cause: "minion",
				KeyVals: statemachine.KeyVals{"step": {"MINION_CREATION"}, "reason": {"TIMED_OUT"}, "tries": {"3"}, "retried": {"true"}}}}},
		{"crashed fatal, cause only", `{"state":"CRASHED","crash":{"cause":"task","fatal":true}}`,
			statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Notify: "unknown", Cause: "task", Fatal: true, KeyVals: statemachine.KeyVals{}}}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := ReadStatusFile(writeStatus(t, c.content))
			if got.Problem != nil {
				t.Fatalf("problem: got %v, want none", got.Problem)
			}
			if !reflect.DeepEqual(got.End, c.want) {
				t.Errorf("got %+v (crash %+v), want %+v (crash %+v)", got.End, got.End.Crash, c.want, c.want.Crash)
			}
		})
	}
}

func TestReadStatusFileMissing(t *testing.T) {
	t.Parallel()
	got := ReadStatusFile(filepath.Join(t.TempDir(), "nope.json"))
	if !errors.Is(got.Problem, fs.ErrNotExist) {
		t.Errorf("problem: got %v, want fs.ErrNotExist", got.Problem)
	}
	want := statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{
		Notify: "taskotron", Cause: "unknown", KeyVals: statemachine.KeyVals{"reason": {"STATUS_FILE_MISSING"}}}}
	if !reflect.DeepEqual(got.End, want) {
		t.Errorf("got %+v (crash %+v), want %+v", got.End, got.End.Crash, want)
	}
	checkSendable(t, got.End)
}

func TestReadStatusFileInvalid(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, content string
		wantError     string // a part of keyvals.error
	}{
		{"empty", "", "empty file"},
		{"blank", " \n\t\n", "empty file"},
		{"garbage", "Traceback (most recent call last):", "invalid JSON"},
		{"truncated", `{"state": "CRASH`, "invalid JSON"},
		{"not an object", `["FINISHED"]`, "must be a JSON object"},
		{"string", `"FINISHED"`, "must be a JSON object"},
		{"two objects", `{"state":"FINISHED"}{"state":"CRASHED"}`, "data after the value"},
		{"no state", `{}`, "state: required"},
		{"null state", `{"state": null}`, "state: required"},
		{"lower case state", `{"state":"finished"}`, `state: must be FINISHED or CRASHED, got "finished"`},
		{"running", `{"state":"RUNNING"}`, "state: must be FINISHED or CRASHED"},
		{"state not a string", `{"state":1}`, "state: must be a string"},
		{"unknown field", `{"state":"FINISHED","log_url":"http://x"}`, "log_url: unknown field"},
		{"typo", `{"state":"CRASHED","crahs":{}}`, "crahs: unknown field"},
		{"crash with finished", `{"state":"FINISHED","crash":{"cause":"task"}}`, "crash: only allowed with state CRASHED"},
		{"unknown crash field", `{"state":"CRASHED","crash":{"cause":"task","reason":"x"}}`, "crash.reason: unknown field"},
		{"bad notify", `{"state":"CRASHED","crash":{"notify":"fedora"}}`, "crash.notify: must be one of taskotron, task, unknown"},
		{"bad cause", `{"state":"CRASHED","crash":{"cause":"gremlins"}}`, "crash.cause: must be one of"},
		{"fatal as string", `{"state":"CRASHED","crash":{"fatal":"yes"}}`, "crash.fatal: must be true or false"},
		{"crash not an object", `{"state":"CRASHED","crash":"oom"}`, "crash must be a JSON object"},
		{"bad key", `{"state":"CRASHED","crash":{"keyvals":{"a:b":"c"}}}`, "crash.keyvals.a:b: key must match"},
		{"nested value", `{"state":"CRASHED","crash":{"keyvals":{"a":{"b":"c"}}}}`, "crash.keyvals.a: must be a string, number, boolean"},
		{"null value", `{"state":"CRASHED","crash":{"keyvals":{"a":null}}}`, "crash.keyvals.a: must be a string"},
		{"too many values", `{"state":"CRASHED","crash":{"keyvals":{"a":[` + strings.Repeat(`"x",`, 16) + `"x"]}}}`, "at most 16 values"},
		{"value too long", `{"state":"CRASHED","crash":{"keyvals":{"a":"` + strings.Repeat("x", 1025) + `"}}}`, "value longer than 1024 bytes"},
		{"bom", "\uFEFF{\"state\":\"FINISHED\"}", "invalid JSON"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			got := ReadStatusFile(writeStatus(t, c.content))
			checkInvalid(t, got, c.wantError)
		})
	}
}

func TestReadStatusFileTooManyKeys(t *testing.T) {
	t.Parallel()
	kv := map[string]string{}
	for i := range MaxKeys + 1 {
		kv["k"+strings.Repeat("x", i%5)+string(rune('a'+i%26))+string(rune('a'+i/26))] = "v"
	}
	b, _ := json.Marshal(map[string]any{"state": "CRASHED", "crash": map[string]any{"keyvals": kv}})
	checkInvalid(t, ReadStatusFile(writeStatus(t, string(b))), "at most 64 keys")
}

func TestReadStatusFileUnreadable(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	checkInvalid(t, ReadStatusFile(dir), "is a directory")

	big := writeStatus(t, `{"state":"FINISHED"}`+strings.Repeat(" ", MaxStatusFileBytes))
	checkInvalid(t, ReadStatusFile(big), "larger than")
}

// TestReadStatusFileLongError: the error keyval is cut to MaxValueBytes without splitting a
// character, so that the report stays within the contract's limits.
func TestReadStatusFileLongError(t *testing.T) {
	t.Parallel()
	got := ReadStatusFile(writeStatus(t, `{"state":"`+strings.Repeat("é", 1500)+`"}`))
	msg := checkInvalid(t, got, "state: must be FINISHED or CRASHED")
	if len(msg) > MaxValueBytes || len(msg) < MaxValueBytes-1 {
		t.Errorf("error keyval: got %d bytes, want %d (or one less at a character boundary)", len(msg), MaxValueBytes)
	}
	if !strings.HasSuffix(msg, "é") {
		t.Errorf("error keyval ends in %q, want a whole character", msg[len(msg)-4:])
	}
}

// checkInvalid checks that sf is the STATUS_FILE_INVALID crash with an error keyval containing
// wantError, and returns that keyval.
func checkInvalid(t *testing.T, sf StatusFile, wantError string) string {
	t.Helper()
	if sf.Problem == nil {
		t.Fatalf("problem: got none, want one (end %+v)", sf.End)
	}
	e := sf.End
	if e.State != statemachine.Crashed || e.Crash == nil || e.Crash.Notify != statemachine.NotifyTaskotron ||
		e.Crash.Cause != statemachine.CauseUnknown || e.Crash.Fatal {
		t.Fatalf("got %+v (crash %+v), want CRASHED taskotron/unknown, not fatal", e, e.Crash)
	}
	if got := e.Crash.KeyVals["reason"]; len(got) != 1 || got[0] != StatusFileInvalid {
		t.Errorf("keyvals.reason: got %v, want [%s]", got, StatusFileInvalid)
	}
	errs := e.Crash.KeyVals["error"]
	if len(errs) != 1 || !strings.Contains(errs[0], wantError) {
		t.Errorf("keyvals.error: got %q, want it to contain %q", errs, wantError)
	}
	if len(e.Crash.KeyVals) != 2 {
		t.Errorf("keyvals: got %v, want reason and error only", e.Crash.KeyVals)
	}
	checkSendable(t, e)
	if len(errs) == 1 {
		return errs[0]
	}
	return ""
}

// checkSendable checks that the end report passes the server's strict decoding of a finish body.
func checkSendable(t *testing.T, end statemachine.End) {
	t.Helper()
	b, err := json.Marshal(end)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeEnd(b, Strict, false)
	if err != nil {
		t.Fatalf("the report %s does not decode as a finish body: %v", b, err)
	}
	if !reflect.DeepEqual(got.End, end) {
		t.Errorf("round trip: got %+v, want %+v", got.End, end)
	}
}

// TestStatusSchema checks that the JSON Schema says what the code does: the same enums, key
// pattern and limits, and examples that the reader accepts.
func TestStatusSchema(t *testing.T) {
	t.Parallel()
	var s struct {
		Schema     string   `json:"$schema"`
		Required   []string `json:"required"`
		Additional *bool    `json:"additionalProperties"`
		Properties struct {
			State struct {
				Enum []string `json:"enum"`
			} `json:"state"`
		} `json:"properties"`
		Defs struct {
			Crash struct {
				Properties struct {
					Notify struct {
						Enum []string `json:"enum"`
					} `json:"notify"`
					Cause struct {
						Enum []string `json:"enum"`
					} `json:"cause"`
				} `json:"properties"`
				Additional *bool `json:"additionalProperties"`
			} `json:"crash"`
			KeyVals struct {
				MaxProperties int `json:"maxProperties"`
				PropertyNames struct {
					Pattern string `json:"pattern"`
				} `json:"propertyNames"`
				Additional struct {
					AnyOf []struct {
						MaxItems int `json:"maxItems"`
					} `json:"anyOf"`
				} `json:"additionalProperties"`
			} `json:"keyvals"`
			Scalar struct {
				AnyOf []struct {
					Type      string `json:"type"`
					MaxLength int    `json:"maxLength"`
				} `json:"anyOf"`
			} `json:"scalar"`
		} `json:"$defs"`
		Examples []json.RawMessage `json:"examples"`
	}
	if err := json.Unmarshal(StatusSchema, &s); err != nil {
		t.Fatalf("status.schema.json: %v", err)
	}
	if s.Schema != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema: got %q, want draft 2020-12", s.Schema)
	}
	if !reflect.DeepEqual(s.Required, []string{"state"}) {
		t.Errorf("required: got %v, want [state]", s.Required)
	}
	if s.Additional == nil || *s.Additional || s.Defs.Crash.Additional == nil || *s.Defs.Crash.Additional {
		t.Errorf("additionalProperties: want false for the file and the crash (the reader is strict)")
	}
	if got, want := s.Properties.State.Enum, []string{"FINISHED", "CRASHED"}; !reflect.DeepEqual(got, want) {
		t.Errorf("state enum: got %v, want %v", got, want)
	}
	if got, want := s.Defs.Crash.Properties.Notify.Enum, strs(statemachine.Notifies); !reflect.DeepEqual(got, want) {
		t.Errorf("notify enum: got %v, want %v", got, want)
	}
	if got, want := s.Defs.Crash.Properties.Cause.Enum, strs(statemachine.Causes); !reflect.DeepEqual(got, want) {
		t.Errorf("cause enum: got %v, want %v", got, want)
	}
	kv := s.Defs.KeyVals
	if kv.MaxProperties != MaxKeys || kv.PropertyNames.Pattern != keyPatternString {
		t.Errorf("keyvals: got max %d pattern %q, want %d %q", kv.MaxProperties, kv.PropertyNames.Pattern, MaxKeys, keyPatternString)
	}
	if len(kv.Additional.AnyOf) != 2 || kv.Additional.AnyOf[1].MaxItems != MaxValuesPerKey {
		t.Errorf("keyvals values: want a scalar or a list of at most %d", MaxValuesPerKey)
	}
	if len(s.Defs.Scalar.AnyOf) == 0 || s.Defs.Scalar.AnyOf[0].MaxLength != MaxValueBytes {
		t.Errorf("scalar: want a string of at most %d", MaxValueBytes)
	}
	if len(s.Examples) < 2 {
		t.Errorf("examples: got %d, want some", len(s.Examples))
	}
	for i, ex := range s.Examples {
		if _, err := DecodeStatusFile(ex); err != nil {
			t.Errorf("example %d %s: %v", i, ex, err)
		}
	}
}

func strs[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}
