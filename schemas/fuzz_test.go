package schemas_test

import (
	"errors"
	"reflect"
	"testing"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
)

// The decoders' fuzz targets: whatever the bytes, a decoder returns a value or a *FieldError
// (never panics, never another error), its error keeps the text rule, and what it accepts keeps
// it too (CONTRACT section 1, v1.1). .ci/run runs each for a short while; a failing input the
// fuzzer finds lands in testdata/fuzz and stays as a seed.

// seeds are the hostile bodies of issue 11 and their variations.
var seeds = []string{
	`{"taskname":"rpmlint","item":"htop-3.3.0-1.fc45","item_type":"koji_build","data":{"koji_tag":["f45"]}}`,
	`{"taskname":"t","item":"a\u0000b","item_type":"k"}`,
	"{\"taskname\":\"t\xff\",\"item\":\"i\",\"item_type\":\"k\"}",
	`{"taskname":"\ud800","item":"i","item_type":"k"}`,
	`{"taskname":"t","item":"i","item_type":"k","item":"j"}`,
	`{"uuid":"0193a5c3-7c1e-7abc-8def-0123456789ab","state":"CRASHED","crash":{"notify":"task","cause":"minion","fatal":true,"keyvals":{"step":["a",1,true],"bad key":"x"}}}`,
	`{"uuid":"0193a5c3-7c1e-7abc-8def-0123456789ab","started_at":"2030-01-01T00:00:00Z","runner":{"name":"buildbot","jobid":null}}`,
	`{"state":"FINISHED","finished_at":"2024-05-01T12:00:00+02:00","log_url":"http://x","runner":{"url":"u"}}`,
	`{"state":"CRASHED","crash":{"keyvals":{"error":"a\u0000"}}}`,
	`{"a":{"b":{"c":[[[[{}]]]]}}}`, `[]`, `null`, ``, `{`, `{"a":1} {}`, `"\u0000"`,
}

func addSeeds(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
}

// checkErr fails unless err is nil or a *FieldError that keeps the text rule.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if err == nil {
		return
	}
	var fe *schemas.FieldError
	if !errors.As(err, &fe) {
		t.Fatalf("got %T %v, want a *FieldError", err, err)
	}
	if !schemas.ValidText(fe.Field) || !schemas.ValidText(fe.Message) {
		t.Fatalf("the error %q breaks the text rule", fe.Error())
	}
}

// checkStrings fails unless every string reachable in v keeps the text rule.
func checkStrings(t *testing.T, v any) {
	t.Helper()
	var walk func(reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.String:
			if !schemas.ValidText(v.String()) {
				t.Fatalf("accepted a string that breaks the text rule: %q", v.String())
			}
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Struct:
			for i := range v.NumField() {
				if v.Type().Field(i).IsExported() {
					walk(v.Field(i))
				}
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map:
			for _, k := range v.MapKeys() {
				walk(k)
				walk(v.MapIndex(k))
			}
		}
	}
	walk(reflect.ValueOf(v))
}

func FuzzDecodeTrigger(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, mode := range []schemas.Mode{schemas.Strict, schemas.Lenient} {
			tr, err := schemas.DecodeTrigger(b, mode)
			checkErr(t, err)
			if err == nil {
				checkStrings(t, tr)
				if tr.TaskName == "" || tr.Item == "" || tr.ItemType == "" {
					t.Fatalf("accepted a trigger without taskname, item or item_type: %+v", tr)
				}
			}
		}
	})
}

func FuzzDecodeStart(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := schemas.DecodeStart(b, schemas.Lenient, true)
		checkErr(t, err)
		if err == nil {
			checkStrings(t, s)
		}
	})
}

func FuzzDecodeEnd(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, mode := range []schemas.Mode{schemas.Strict, schemas.Lenient} {
			e, err := schemas.DecodeEnd(b, mode, mode == schemas.Lenient)
			checkErr(t, err)
			if err == nil {
				checkStrings(t, e)
				if e.End.State != statemachine.Finished && e.End.State != statemachine.Crashed ||
					(e.End.State == statemachine.Crashed) != (e.End.Crash != nil) {
					t.Fatalf("accepted an end that is neither FINISHED nor CRASHED with a crash: %+v", e)
				}
			}
		}
	})
}

func FuzzDecodeStatusFile(f *testing.F) {
	addSeeds(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		end, err := schemas.DecodeStatusFile(b)
		checkErr(t, err)
		if err == nil {
			checkStrings(t, end)
			return
		}
		// What ReadStatusFile reports instead must itself be a valid report.
		crash := schemas.StatusFileCrash(schemas.StatusFileInvalid, err)
		checkStrings(t, crash)
	})
}
