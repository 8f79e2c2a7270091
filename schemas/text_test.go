package schemas_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/schemas"
)

// textCases break the text rule in every place a body can hold a string: the field names the
// place, whatever decoder reads the body.
var textCases = []struct {
	name, body, field, message string
}{
	{"NUL in item", `{"taskname":"t","item":"a\u0000b","item_type":"k"}`, "item", "NUL"},
	{"NUL in a data value", `{"taskname":"t","item":"i","item_type":"k","data":{"koji_tag":["x","f45\u0000"]}}`, "data.koji_tag[1]", "NUL"},
	{"NUL in request_id", `{"taskname":"t","item":"i","item_type":"k","request_id":"r\u0000"}`, "request_id", "NUL"},
	{"NUL in a member name", `{"taskname":"t","item":"i","item_type":"k","data":{"a\u0000":"x"}}`, `"data.a\x00"`, "NUL"},
	{"lone surrogate", `{"taskname":"t\ud800","item":"i","item_type":"k"}`, "taskname", "UTF-8"},
	{"invalid byte", "{\"taskname\":\"t\xff\",\"item\":\"i\",\"item_type\":\"k\"}", "taskname", "UTF-8"},
	{"invalid byte in a name", "{\"taskname\":\"t\",\"item\":\"i\",\"item_type\":\"k\",\"data\":{\"k\xff\":\"v\"}}", "data", "UTF-8"},
	{"duplicate key", `{"taskname":"t","item":"i","item_type":"k","item":"j"}`, "item", "more than once"},
	{"duplicate nested key", `{"taskname":"t","item":"i","item_type":"k","data":{"a":"1","a":"2"}}`, "data.a", "more than once"},
	{"two values", `{"taskname":"t","item":"i","item_type":"k"} {}`, "", "after the value"},
}

func TestTextRuleOnTriggers(t *testing.T) {
	for _, tc := range textCases {
		t.Run(tc.name, func(t *testing.T) {
			for _, mode := range []schemas.Mode{schemas.Strict, schemas.Lenient} {
				_, err := schemas.DecodeTrigger([]byte(tc.body), mode)
				var fe *schemas.FieldError
				if !errors.As(err, &fe) || fe.Field != tc.field || !strings.Contains(fe.Message, tc.message) {
					t.Fatalf("mode %d: got %v, want a field error on %s saying %q", mode, err, tc.field, tc.message)
				}
				if !schemas.ValidText(fe.Error()) {
					t.Errorf("the error %q breaks the text rule itself", fe.Error())
				}
			}
		})
	}
}

func TestTextRuleOnEveryDecoder(t *testing.T) {
	const nul = `"x\u0000"`
	cases := []struct {
		name   string
		decode func([]byte) error
		body   string
		field  string
	}{
		{"start runner", func(b []byte) error { _, err := schemas.DecodeStart(b, schemas.Strict, false); return err },
			`{"runner":{"name":` + nul + `}}`, "runner.name"},
		{"end crash keyval", func(b []byte) error { _, err := schemas.DecodeEnd(b, schemas.Lenient, false); return err },
			`{"state":"CRASHED","crash":{"keyvals":{"step":["a",` + nul + `]}}}`, "crash.keyvals.step[1]"},
		{"end log url", func(b []byte) error { _, err := schemas.DecodeEnd(b, schemas.Strict, false); return err },
			`{"state":"FINISHED","log_url":` + nul + `}`, "log_url"},
		{"end duplicate state", func(b []byte) error { _, err := schemas.DecodeEnd(b, schemas.Strict, false); return err },
			`{"state":"FINISHED","state":"CRASHED"}`, "state"},
		{"status file", func(b []byte) error { _, err := schemas.DecodeStatusFile(b); return err },
			`{"state":"CRASHED","crash":{"keyvals":{"error":` + nul + `}}}`, "crash.keyvals.error"},
		{"object", func(b []byte) error { _, err := schemas.DecodeObject(b, "", schemas.Strict, "reason"); return err },
			`{"reason":` + nul + `}`, "reason"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var fe *schemas.FieldError
			if err := tc.decode([]byte(tc.body)); !errors.As(err, &fe) || fe.Field != tc.field {
				t.Fatalf("got %v, want a field error on %s", err, tc.field)
			}
		})
	}
}

// A status file that breaks the text rule is reported as STATUS_FILE_INVALID, so the finish
// still gets through with a crash that says why, instead of a refusal retried until it times out.
func TestStatusFileWithNULIsInvalid(t *testing.T) {
	path := filepath.Join(t.TempDir(), "status.json")
	content := `{"state":"CRASHED","crash":{"cause":"minion","keyvals":{"detail":"a\u0000b"}}}`
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	sf := schemas.ReadStatusFile(path)
	if sf.Problem == nil || sf.End.Crash == nil || sf.End.Crash.KeyVals["reason"][0] != schemas.StatusFileInvalid {
		t.Fatalf("got %+v, want a STATUS_FILE_INVALID crash", sf)
	}
	for _, v := range sf.End.Crash.KeyVals["error"] {
		if !schemas.ValidText(v) || !strings.Contains(v, "crash.keyvals.detail") {
			t.Errorf("error keyval %q: want valid text naming the field", v)
		}
	}
}

func TestValidJSONPasses(t *testing.T) {
	for _, body := range []string{
		`{"taskname":"t😀","item":"é","item_type":"k","data":{"a":["\\u0000 is text here","\ud83d\ude00"]}}`,
		" {\"taskname\":\"t\",\"item\":\"i\",\"item_type\":\"k\"}\n",
	} {
		if err := schemas.CheckJSON([]byte(body)); err != nil {
			t.Errorf("%s: got %v, want it accepted", body, err)
		}
		if _, err := schemas.DecodeTrigger([]byte(body), schemas.Strict); err != nil {
			t.Errorf("%s: got %v, want it decoded", body, err)
		}
	}
	for _, body := range []string{"", "  ", `{"a":`, `{"a":1`, "nul"} {
		var fe *schemas.FieldError
		if err := schemas.CheckJSON([]byte(body)); !errors.As(err, &fe) {
			t.Errorf("%q: got %v, want a field error", body, err)
		}
	}
}

func TestParseKeyValArgsText(t *testing.T) {
	var fe *schemas.FieldError
	if _, err := schemas.ParseKeyValArgs([]string{"step=a\xffb"}, "kv"); !errors.As(err, &fe) || fe.Field != "kv.step" {
		t.Errorf("got %v, want a field error on kv.step", err)
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{"plain é": "plain é", "a\x00b": `"a\x00b"`, "a\xffb": `"a\xffb"`} {
		if got := schemas.Escape(in); got != want || !schemas.ValidText(got) {
			t.Errorf("Escape(%q) = %q, want %q", in, got, want)
		}
	}
	if got := schemas.EscapeTruncate(strings.Repeat("é", 100), 11); got != "éééé…" {
		t.Errorf("EscapeTruncate: got %q", got)
	}
}
