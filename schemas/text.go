package schemas

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"
)

// The text rule (CONTRACT section 1, v1.1): every string ExecDB stores or matches on is valid
// UTF-8 without NUL, and a JSON object names each member once. Input that breaks it is refused
// where it enters (HTTP bodies, headers and query strings, bus bodies and ids, the status file)
// with an error naming the field, the same way whatever database is behind; nothing is replaced
// or mangled on the way in.

// CheckText checks one string against the text rule; field names it in the error.
func CheckText(s, field string) error {
	if !utf8.ValidString(s) {
		return &FieldError{Field: Escape(field), Message: "not valid UTF-8"}
	}
	if strings.IndexByte(s, 0) >= 0 {
		return &FieldError{Field: Escape(field), Message: "contains a NUL character"}
	}
	return nil
}

// ValidText reports whether s is valid UTF-8 without NUL.
func ValidText(s string) bool {
	return utf8.ValidString(s) && strings.IndexByte(s, 0) < 0
}

// Escape returns s when it keeps the text rule, and otherwise a Go-quoted form of it that does
// (invalid bytes as \xff, NUL as \x00), so that a value a client sent can be shown and stored
// in an error or a rejection without breaking the rule itself.
func Escape(s string) string {
	if ValidText(s) {
		return s
	}
	return strconv.Quote(s)
}

// EscapeTruncate is Escape cut to at most n bytes, without splitting a character; a cut value
// ends in "…".
func EscapeTruncate(s string, n int) string {
	s = Escape(s)
	if len(s) <= n {
		return s
	}
	const ellipsis = "…"
	return truncateUTF8(s, n-len(ellipsis)) + ellipsis
}

// CheckJSON checks that b is one JSON value that keeps the text rule: valid UTF-8 (also in
// escapes: a lone surrogate such as "\ud800" is refused), no NUL in any string or member name,
// and no object naming a member twice. The error is a *FieldError naming where the problem is,
// e.g. "crash.keyvals.step" or "data.koji_tag[1]"; the field is empty for a problem with the
// body as a whole. It checks syntax only: what the fields mean is the decoders' business.
func CheckJSON(b []byte) error {
	d := jsontext.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := d.ReadToken()
		if errors.Is(err, io.EOF) {
			if d.StackDepth() == 0 && d.InputOffset() > 0 {
				return nil
			}
			return &FieldError{Message: "invalid JSON: unexpected end of input"}
		}
		if err != nil {
			return jsonError(d, err)
		}
		if tok.Kind() == '"' && strings.IndexByte(tok.String(), 0) >= 0 {
			return &FieldError{Field: pointerPath(d, string(d.StackPointer())), Message: "contains a NUL character"}
		}
		if d.StackDepth() == 0 {
			// One value is the whole body; anything after it (but space) is an error.
			if _, err := d.ReadToken(); !errors.Is(err, io.EOF) {
				return &FieldError{Message: "invalid JSON: data after the value"}
			}
			return nil
		}
	}
}

// jsonError turns a jsontext error into a *FieldError naming where it happened.
func jsonError(d *jsontext.Decoder, err error) *FieldError {
	var se *jsontext.SyntacticError
	if !errors.As(err, &se) {
		return &FieldError{Message: "invalid JSON: " + err.Error()}
	}
	field := pointerPath(d, string(se.JSONPointer))
	switch {
	case errors.Is(se.Err, jsontext.ErrDuplicateName):
		return &FieldError{Field: field, Message: "given more than once"}
	case strings.Contains(se.Err.Error(), "UTF-8"), strings.Contains(se.Err.Error(), "surrogate"):
		return &FieldError{Field: field, Message: "not valid UTF-8"}
	}
	// A syntax error is the whole body's: where it is, the byte offset says.
	return &FieldError{Message: "invalid JSON at byte " + strconv.FormatInt(se.ByteOffset, 10) + ": " + se.Err.Error()}
}

// pointerPath turns a JSON Pointer into the dotted path of FieldError ("crash.keyvals.step",
// "data.koji_tag[1]"), telling array indices from member names by the decoder's stack, and
// escaping what breaks the text rule.
func pointerPath(d *jsontext.Decoder, ptr string) string {
	if ptr == "" {
		return ""
	}
	segments := strings.Split(ptr[1:], "/")
	var b strings.Builder
	for i, seg := range segments {
		seg = strings.NewReplacer("~1", "/", "~0", "~").Replace(seg)
		kind := byte('{')
		if i+1 <= d.StackDepth() {
			k, _ := d.StackIndex(i + 1)
			kind = byte(k)
		}
		if kind == '[' {
			b.WriteString("[" + seg + "]")
			continue
		}
		if b.Len() > 0 {
			b.WriteByte('.')
		}
		b.WriteString(seg)
	}
	return Escape(b.String())
}
