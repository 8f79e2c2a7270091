// Package schemas decodes and validates the bodies ExecDB accepts: the trigger, runtask.start and
// runtask.end messages (CONTRACT section 3), which are also the HTTP request bodies, and the
// status file libtaskotron writes (section 5). Errors name the offending field.
package schemas

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// Limits on key-value maps (`data` and `crash.keyvals`), CONTRACT section 1.
const (
	MaxKeys         = 64
	MaxValuesPerKey = 16
	MaxValueBytes   = 1024
	maxStringBytes  = 4096 // urls, runner fields… a sane bound for free strings
	// MaxKeyBytes bounds the strings that are indexed or looked up: taskname, item, item_type,
	// arch, request_id. PostgreSQL cannot index much more than 2.7 kB in one entry.
	MaxKeyBytes      = 1024
	keyPatternString = `^[A-Za-z0-9_.-]{1,64}$`
)

var keyPattern = regexp.MustCompile(keyPatternString)

// FieldError is a validation error that names the offending field with a dotted path, e.g.
// "crash.cause" or "data.koji_tag".
type FieldError struct {
	Field   string
	Message string
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

func fieldErr(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// Mode says how strictly a body is read.
type Mode int

const (
	// Lenient ignores unknown fields: bus producers may be newer than ExecDB.
	Lenient Mode = iota
	// Strict rejects unknown fields: over HTTP a typo must not pass silently.
	Strict
)

// Trigger is the body of taskotron.job.trigger and of POST /api/v1/jobs.
type Trigger struct {
	UUID      uuid.UUID // uuid.Nil: ExecDB issues one
	TaskName  string
	Item      string
	ItemType  string
	Arch      string
	Data      statemachine.KeyVals
	RequestID string
	Source    *statemachine.Source
}

// StartBody is the body of taskotron.runtask.start and of POST /jobs/{uuid}/start.
type StartBody struct {
	UUID  uuid.UUID // uuid.Nil when absent (allowed over HTTP, where the path names the job)
	Start statemachine.Start
}

// EndBody is the body of taskotron.runtask.end and of POST /jobs/{uuid}/finish.
type EndBody struct {
	UUID uuid.UUID // uuid.Nil when absent (allowed over HTTP)
	End  statemachine.End
}

// DecodeTrigger reads and validates a trigger body.
func DecodeTrigger(body []byte, mode Mode) (Trigger, error) {
	var t Trigger
	obj, err := decodeBody(body, mode, "taskname", "item", "item_type", "arch", "data", "uuid", "request_id", "source")
	if err != nil {
		return t, err
	}
	if t.TaskName, err = requiredString(obj, "taskname", ""); err != nil {
		return t, err
	}
	if t.Item, err = requiredString(obj, "item", ""); err != nil {
		return t, err
	}
	if t.ItemType, err = requiredString(obj, "item_type", ""); err != nil {
		return t, err
	}
	if t.Arch, err = optionalString(obj, "arch", ""); err != nil {
		return t, err
	}
	if t.RequestID, err = optionalString(obj, "request_id", ""); err != nil {
		return t, err
	}
	if err := CheckRequestID(t.RequestID, "request_id"); err != nil {
		return t, err
	}
	for field, v := range map[string]string{"taskname": t.TaskName, "item": t.Item, "item_type": t.ItemType, "arch": t.Arch} {
		if len(v) > MaxKeyBytes {
			return t, fieldErr(field, "longer than %d bytes", MaxKeyBytes)
		}
	}
	if t.UUID, err = optionalUUID(obj, "uuid", ""); err != nil {
		return t, err
	}
	if raw, ok := present(obj, "data"); ok {
		if t.Data, err = DecodeKeyVals(raw, "data"); err != nil {
			return t, err
		}
	}
	if raw, ok := present(obj, "source"); ok {
		src, err := object(raw, "source", mode, "msg_id", "topic")
		if err != nil {
			return t, err
		}
		s := &statemachine.Source{}
		if s.MsgID, err = requiredString(src, "msg_id", "source."); err != nil {
			return t, err
		}
		if s.Topic, err = optionalString(src, "topic", "source."); err != nil {
			return t, err
		}
		t.Source = s
	}
	return t, nil
}

// ReservedRequestIDPrefix starts the request ids ExecDB gives the successors of rescheduled
// jobs; a client's request id must not start with it.
const ReservedRequestIDPrefix = "reschedule:"

// CheckRequestID checks a client's request id (from the body or the Idempotency-Key header,
// named by field): at most MaxKeyBytes, not in ExecDB's reserved namespace.
func CheckRequestID(id, field string) error {
	if len(id) > MaxKeyBytes {
		return fieldErr(field, "longer than %d bytes", MaxKeyBytes)
	}
	if strings.HasPrefix(id, ReservedRequestIDPrefix) {
		return fieldErr(field, "must not start with %q, which ExecDB keeps for rescheduled jobs", ReservedRequestIDPrefix)
	}
	return nil
}

// DecodeStart reads and validates a start body. The uuid is required unless requireUUID is false.
func DecodeStart(body []byte, mode Mode, requireUUID bool) (StartBody, error) {
	var s StartBody
	if len(bytes.TrimSpace(body)) == 0 && !requireUUID {
		return s, nil
	}
	obj, err := decodeBody(body, mode, "uuid", "started_at", "runner")
	if err != nil {
		return s, err
	}
	if s.UUID, err = jobUUID(obj, requireUUID); err != nil {
		return s, err
	}
	if s.Start.StartedAt, err = optionalTime(obj, "started_at"); err != nil {
		return s, err
	}
	if s.Start.Runner, err = decodeRunner(obj, mode); err != nil {
		return s, err
	}
	return s, nil
}

// DecodeEnd reads and validates an end body. The uuid is required unless requireUUID is false.
func DecodeEnd(body []byte, mode Mode, requireUUID bool) (EndBody, error) {
	var e EndBody
	obj, err := decodeBody(body, mode, "uuid", "state", "crash", "finished_at", "artifacts_url", "log_url", "runner")
	if err != nil {
		return e, err
	}
	if e.UUID, err = jobUUID(obj, requireUUID); err != nil {
		return e, err
	}
	state, err := requiredString(obj, "state", "")
	if err != nil {
		return e, err
	}
	e.End.State = statemachine.State(state)
	if e.End.State != statemachine.Finished && e.End.State != statemachine.Crashed {
		return e, fieldErr("state", "must be FINISHED or CRASHED, got %q", state)
	}
	if raw, ok := present(obj, "crash"); ok {
		if e.End.State != statemachine.Crashed {
			return e, fieldErr("crash", "only allowed with state CRASHED")
		}
		if e.End.Crash, err = DecodeCrash(raw, mode, "crash"); err != nil {
			return e, err
		}
	}
	if e.End.State == statemachine.Crashed {
		e.End.Crash = statemachine.NormalizeCrash(e.End.Crash)
	}
	if e.End.FinishedAt, err = optionalTime(obj, "finished_at"); err != nil {
		return e, err
	}
	if e.End.ArtifactsURL, err = optionalString(obj, "artifacts_url", ""); err != nil {
		return e, err
	}
	if e.End.LogURL, err = optionalString(obj, "log_url", ""); err != nil {
		return e, err
	}
	if e.End.Runner, err = decodeRunner(obj, mode); err != nil {
		return e, err
	}
	return e, nil
}

// DecodeCrash reads a crash object; field is its path for error messages.
func DecodeCrash(raw json.RawMessage, mode Mode, field string) (*statemachine.Crash, error) {
	obj, err := object(raw, field, mode, "notify", "cause", "fatal", "keyvals")
	if err != nil {
		return nil, err
	}
	prefix := field + "."
	c := &statemachine.Crash{}
	notify, err := optionalString(obj, "notify", prefix)
	if err != nil {
		return nil, err
	}
	c.Notify = statemachine.Notify(notify)
	if notify != "" && !ValidNotify(c.Notify) {
		return nil, fieldErr(prefix+"notify", "must be one of %s, got %q", joinValues(statemachine.Notifies), notify)
	}
	cause, err := optionalString(obj, "cause", prefix)
	if err != nil {
		return nil, err
	}
	c.Cause = statemachine.Cause(cause)
	if cause != "" && !ValidCause(c.Cause) {
		return nil, fieldErr(prefix+"cause", "must be one of %s, got %q", joinValues(statemachine.Causes), cause)
	}
	if raw, ok := present(obj, "fatal"); ok {
		if err := json.Unmarshal(raw, &c.Fatal); err != nil {
			return nil, fieldErr(prefix+"fatal", "must be true or false")
		}
	}
	if raw, ok := present(obj, "keyvals"); ok {
		if c.KeyVals, err = DecodeKeyVals(raw, prefix+"keyvals"); err != nil {
			return nil, err
		}
	}
	return statemachine.NormalizeCrash(c), nil
}

// ValidNotify reports whether n is one of the notify values.
func ValidNotify(n statemachine.Notify) bool {
	for _, v := range statemachine.Notifies {
		if v == n {
			return true
		}
	}
	return false
}

// ValidCause reports whether c is one of the causes.
func ValidCause(c statemachine.Cause) bool {
	for _, v := range statemachine.Causes {
		if v == c {
			return true
		}
	}
	return false
}

// ValidKey reports whether k may be a key of `data` or `crash.keyvals`.
func ValidKey(k string) bool { return keyPattern.MatchString(k) }

// DecodeKeyVals reads a key-value map: each value a string, number or boolean (kept as its
// string form) or a list of those, within the limits of CONTRACT section 1.
func DecodeKeyVals(raw json.RawMessage, field string) (statemachine.KeyVals, error) {
	obj, err := object(raw, field, Lenient)
	if err != nil {
		return nil, err
	}
	if len(obj) > MaxKeys {
		return nil, fieldErr(field, "at most %d keys, got %d", MaxKeys, len(obj))
	}
	kv := make(statemachine.KeyVals, len(obj))
	for key, val := range obj {
		path := field + "." + key
		if !ValidKey(key) {
			return nil, fieldErr(path, "key must match %s", keyPatternString)
		}
		var values []string
		val = bytes.TrimSpace(val)
		if len(val) > 0 && val[0] == '[' {
			var list []json.RawMessage
			if err := json.Unmarshal(val, &list); err != nil {
				return nil, fieldErr(path, "invalid list")
			}
			if len(list) > MaxValuesPerKey {
				return nil, fieldErr(path, "at most %d values, got %d", MaxValuesPerKey, len(list))
			}
			for i, item := range list {
				s, err := scalar(item, fmt.Sprintf("%s[%d]", path, i))
				if err != nil {
					return nil, err
				}
				values = append(values, s)
			}
		} else {
			s, err := scalar(val, path)
			if err != nil {
				return nil, err
			}
			values = []string{s}
		}
		if len(values) > 0 { // a key without values stores nothing
			kv[key] = values
		}
	}
	return kv, nil
}

// ParseKeyValArgs turns command-line style "key=value" pairs into KeyVals, repeated keys adding
// values, with the same limits as the JSON form.
func ParseKeyValArgs(pairs []string, field string) (statemachine.KeyVals, error) {
	kv := statemachine.KeyVals{}
	for _, p := range pairs {
		key, value, ok := strings.Cut(p, "=")
		if !ok {
			return nil, fieldErr(field, "%q is not key=value", p)
		}
		if err := CheckText(p, field+"."+key); err != nil {
			return nil, err
		}
		kv[key] = append(kv[key], value)
	}
	b, _ := json.Marshal(kv)
	return DecodeKeyVals(b, field)
}

func scalar(raw json.RawMessage, path string) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "", fieldErr(path, "missing value")
	}
	var s string
	switch raw[0] {
	case '"':
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fieldErr(path, "invalid string")
		}
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return "", fieldErr(path, "must be a string, number, boolean or a list of those")
		}
		s = strconv.FormatBool(b)
	case 'n', '{', '[':
		return "", fieldErr(path, "must be a string, number, boolean or a list of those")
	default:
		var n json.Number
		if err := json.Unmarshal(raw, &n); err != nil {
			return "", fieldErr(path, "must be a string, number, boolean or a list of those")
		}
		s = n.String()
	}
	if len(s) > MaxValueBytes {
		return "", fieldErr(path, "value longer than %d bytes", MaxValueBytes)
	}
	return s, nil
}

// decodeBody checks a whole body against the text rule (CheckJSON) and decodes it as a JSON
// object, as object does.
func decodeBody(raw []byte, mode Mode, allowed ...string) (map[string]json.RawMessage, error) {
	if err := CheckJSON(raw); err != nil {
		return nil, err
	}
	return object(raw, "", mode, allowed...)
}

// object decodes raw as a JSON object. In Strict mode a key outside allowed is an error naming
// it; with no allowed keys given, every key is accepted.
func object(raw []byte, field string, mode Mode, allowed ...string) (map[string]json.RawMessage, error) {
	name := field
	if name == "" {
		name = "body"
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || raw[0] != '{' {
		if len(raw) > 0 && !json.Valid(raw) {
			return nil, &FieldError{Field: field, Message: "invalid JSON"}
		}
		return nil, &FieldError{Field: field, Message: name + " must be a JSON object"}
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(raw))
	if err := dec.Decode(&obj); err != nil {
		var syn *json.SyntaxError
		if errors.As(err, &syn) {
			return nil, &FieldError{Field: field, Message: fmt.Sprintf("invalid JSON at byte %d: %v", syn.Offset, err)}
		}
		return nil, &FieldError{Field: field, Message: "invalid JSON: " + err.Error()}
	}
	if dec.More() {
		return nil, &FieldError{Field: field, Message: "invalid JSON: data after the object"}
	}
	if mode == Strict && len(allowed) > 0 {
		var unknown []string
		for k := range obj {
			if !slices.Contains(allowed, k) {
				unknown = append(unknown, k)
			}
		}
		if len(unknown) > 0 {
			sort.Strings(unknown)
			return nil, fieldErr(join(field, unknown[0]), "unknown field")
		}
	}
	return obj, nil
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

func present(obj map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	raw, ok := obj[key]
	if !ok || string(bytes.TrimSpace(raw)) == "null" {
		return nil, false
	}
	return raw, true
}

func requiredString(obj map[string]json.RawMessage, key, prefix string) (string, error) {
	s, err := optionalString(obj, key, prefix)
	if err != nil {
		return "", err
	}
	if s == "" {
		return "", fieldErr(prefix+key, "required")
	}
	return s, nil
}

func optionalString(obj map[string]json.RawMessage, key, prefix string) (string, error) {
	raw, ok := present(obj, key)
	if !ok {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fieldErr(prefix+key, "must be a string")
	}
	if len(s) > maxStringBytes {
		return "", fieldErr(prefix+key, "longer than %d bytes", maxStringBytes)
	}
	return s, nil
}

func optionalUUID(obj map[string]json.RawMessage, key, prefix string) (uuid.UUID, error) {
	s, err := optionalString(obj, key, prefix)
	if err != nil || s == "" {
		return uuid.Nil, err
	}
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, fieldErr(prefix+key, "not a UUID: %q", s)
	}
	return id, nil
}

func jobUUID(obj map[string]json.RawMessage, required bool) (uuid.UUID, error) {
	id, err := optionalUUID(obj, "uuid", "")
	if err != nil {
		return id, err
	}
	if required && id == uuid.Nil {
		return id, fieldErr("uuid", "required")
	}
	return id, nil
}

func optionalTime(obj map[string]json.RawMessage, key string) (*time.Time, error) {
	s, err := optionalString(obj, key, "")
	if err != nil || s == "" {
		return nil, err
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil, fieldErr(key, "not an RFC 3339 time: %q", s)
	}
	t = t.UTC()
	return &t, nil
}

func decodeRunner(obj map[string]json.RawMessage, mode Mode) (*statemachine.Runner, error) {
	raw, ok := present(obj, "runner")
	if !ok {
		return nil, nil
	}
	r, err := object(raw, "runner", mode, "name", "jobid", "worker", "url")
	if err != nil {
		return nil, err
	}
	var run statemachine.Runner
	for key, dst := range map[string]*string{"name": &run.Name, "jobid": &run.JobID, "worker": &run.Worker, "url": &run.URL} {
		if *dst, err = optionalString(r, key, "runner."); err != nil {
			return nil, err
		}
	}
	return &run, nil
}

func joinValues[T ~string](vs []T) string {
	parts := make([]string, len(vs))
	for i, v := range vs {
		parts[i] = string(v)
	}
	return strings.Join(parts, ", ")
}
