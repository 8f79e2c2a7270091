package client

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode/utf8"

	"github.com/fedora-qa/execdb/statemachine"
)

// APIError is an answer of the server other than 2xx. The server sends
// {"error": {"status": 400, "message": "…", "field": "crash.cause"}}; a 409 on a finish or a late
// start also carries the job as it stands: {"error": {…}, "job": {…}}.
type APIError struct {
	Status  int    // the HTTP status
	Message string // the server's message, or the status text when the body has none
	Field   string // the offending field of the request, e.g. "crash.cause"; may be empty
	// Job is the job as it stands, when the answer carries it (409 on finish or start).
	Job *statemachine.Job
	// Body is the answer's body as sent.
	Body []byte
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "server answered %d", e.Status)
	if t := http.StatusText(e.Status); t != "" {
		b.WriteString(" " + t)
	}
	if e.Message != "" && e.Message != http.StatusText(e.Status) {
		b.WriteString(": " + e.Message)
	}
	if e.Field != "" {
		b.WriteString(" (field " + e.Field + ")")
	}
	return b.String()
}

// StatusOf is the HTTP status of the *APIError in err's chain, or 0 when there is none (a
// connection error, say).
func StatusOf(err error) int {
	var e *APIError
	if errors.As(err, &e) {
		return e.Status
	}
	return 0
}

// errorBody is the wire form of an error answer.
type errorBody struct {
	Error *struct {
		Status  int    `json:"status"`
		Message string `json:"message"`
		Field   string `json:"field"`
	} `json:"error"`
	Job json.RawMessage `json:"job"`
}

// newAPIError reads an error answer; a body that is not the API's error object (a proxy's HTML
// page, say) gives its first line as the message.
func newAPIError(resp *Response) *APIError {
	e := &APIError{Status: resp.Status, Body: resp.Body}
	var eb errorBody
	if json.Unmarshal(resp.Body, &eb) == nil && eb.Error != nil {
		e.Message = eb.Error.Message
		e.Field = eb.Error.Field
		if len(eb.Job) > 0 && string(eb.Job) != "null" {
			var job statemachine.Job
			if json.Unmarshal(eb.Job, &job) == nil {
				e.Job = &job
			}
		}
	} else {
		e.Message = firstLine(resp.Body, 200)
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.Status)
	}
	return e
}

// firstLine is the first non-blank line of b, cut to at most n bytes on a rune boundary.
func firstLine(b []byte, n int) string {
	for _, line := range bytes.Split(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if len(line) > n {
			line = line[:n]
			for len(line) > 0 && !utf8.Valid(line) {
				line = line[:len(line)-1]
			}
		}
		return string(line)
	}
	return ""
}
