package schemas

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
	"golang.org/x/text/language"
	"golang.org/x/text/message"
)

// The JSON Schemas (draft 2020-12) of the bus messages, embedded for validation and for
// producers to validate against. The Decode functions are the authority for the Go types; the
// schemas describe the same formats, and the tests keep the two in step.
var (
	//go:embed trigger.schema.json
	TriggerSchema []byte
	//go:embed start.schema.json
	StartSchema []byte
	//go:embed end.schema.json
	EndSchema []byte
	// JobSchema is the body of the job-state messages ExecDB publishes: execdb.job.v1.
	//
	//go:embed job.schema.json
	JobSchema []byte
)

// Body names the kind of a message body.
type Body string

// The message bodies with a schema.
const (
	BodyTrigger Body = "trigger"
	BodyStart   Body = "start"
	BodyEnd     Body = "end"
	BodyJob     Body = "job" // execdb.job.v1, outgoing
)

var files = map[Body]string{
	BodyTrigger: "trigger.schema.json",
	BodyStart:   "start.schema.json",
	BodyEnd:     "end.schema.json",
	BodyJob:     "job.schema.json",
}

var compiled = sync.OnceValues(func() (map[Body]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	const base = "https://github.com/fedora-qa/execdb/raw/main/schemas/"
	for name, doc := range map[string][]byte{
		"trigger.schema.json": TriggerSchema, "start.schema.json": StartSchema,
		"end.schema.json": EndSchema, "job.schema.json": JobSchema,
	} {
		v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
		if err != nil {
			return nil, fmt.Errorf("schema %s: %w", name, err)
		}
		if err := c.AddResource(base+name, v); err != nil {
			return nil, fmt.Errorf("schema %s: %w", name, err)
		}
	}
	out := map[Body]*jsonschema.Schema{}
	for b, name := range files {
		s, err := c.Compile(base + name)
		if err != nil {
			return nil, fmt.Errorf("compile schema %s: %w", name, err)
		}
		out[b] = s
	}
	return out, nil
})

var printer = message.NewPrinter(language.English)

// Validate checks a JSON body against the schema of its kind. A violation is a *FieldError
// naming the failing field with a dotted path (e.g. "crash.cause"); a body that is not JSON is
// a *FieldError with an empty field.
func Validate(kind Body, body []byte) error {
	schemas, err := compiled()
	if err != nil {
		return err
	}
	s, ok := schemas[kind]
	if !ok {
		return fmt.Errorf("no schema for %q", kind)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		return &FieldError{Message: "invalid JSON: " + err.Error()}
	}
	err = s.Validate(v)
	var ve *jsonschema.ValidationError
	if !errors.As(err, &ve) {
		return err
	}
	return fieldError(ve)
}

// fieldError turns a validation error into a FieldError on its deepest cause: the field that
// broke a rule rather than the schema branch that failed (of "null or an object", the object's
// field that is wrong, not "want null").
func fieldError(ve *jsonschema.ValidationError) *FieldError {
	leaf := deepest(ve)
	path := append([]string{}, leaf.InstanceLocation...)
	msg := leaf.ErrorKind.LocalizedString(printer)
	if r, ok := leaf.ErrorKind.(*kind.Required); ok && len(r.Missing) > 0 {
		path = append(path, r.Missing[0])
		msg = "required"
	}
	return &FieldError{Field: strings.Join(path, "."), Message: msg}
}

func deepest(ve *jsonschema.ValidationError) *jsonschema.ValidationError {
	if len(ve.Causes) == 0 {
		return ve
	}
	var best *jsonschema.ValidationError
	for _, c := range ve.Causes {
		if d := deepest(c); best == nil || depth(d) > depth(best) {
			best = d
		}
	}
	return best
}

// depth is how deep in the body an error is; a missing property is one level below the object
// that lacks it.
func depth(ve *jsonschema.ValidationError) int {
	if _, ok := ve.ErrorKind.(*kind.Required); ok {
		return len(ve.InstanceLocation) + 1
	}
	return len(ve.InstanceLocation)
}
