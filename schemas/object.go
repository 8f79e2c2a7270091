package schemas

import "encoding/json"

// DecodeObject reads raw as a JSON object, for the bodies whose fields other packages read
// themselves (the HTTP API's reschedule requests). field is the object's path in error messages
// ("" for a whole body). In Strict mode a key outside allowed is a *FieldError naming it,
// e.g. "dry_run" or "filter.colour"; with no allowed keys given, every key is accepted. What is
// not a JSON object is a *FieldError naming field.
//
// A whole body (field "") is first checked against the text rule (CheckJSON).
func DecodeObject(raw []byte, field string, mode Mode, allowed ...string) (map[string]json.RawMessage, error) {
	if field == "" {
		return decodeBody(raw, mode, allowed...)
	}
	return object(raw, field, mode, allowed...)
}

// Present returns the value of key in obj, and false when it is absent or null: the two ways a
// body leaves out an optional field.
func Present(obj map[string]json.RawMessage, key string) (json.RawMessage, bool) {
	return present(obj, key)
}
