package schemas

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/fedora-qa/execdb/statemachine"
)

// StatusSchema is the JSON Schema (draft 2020-12) of the status file, for libtaskotron and
// other writers to validate against. DecodeStatusFile is the reader's authority; the schema
// describes the same format.
//
//go:embed status.schema.json
var StatusSchema []byte

// The keyvals.reason of a crash reported for an unusable status file (CONTRACT section 5).
const (
	StatusFileMissing = "STATUS_FILE_MISSING"
	StatusFileInvalid = "STATUS_FILE_INVALID"
)

// MaxStatusFileBytes bounds the status file; a larger one is invalid.
const MaxStatusFileBytes = 1 << 20

// StatusFile is what ReadStatusFile made of a status file.
type StatusFile struct {
	// End is the report to send, always a valid one: what the file says, or the CRASHED report
	// for a missing or invalid file.
	End statemachine.End
	// Problem says why the file could not be used as written, for the caller to log; nil when
	// it was. End is then the STATUS_FILE_MISSING or STATUS_FILE_INVALID crash.
	Problem error
}

// ReadStatusFile reads the status file libtaskotron left at path (CONTRACT section 5). The file
// is parsed strictly, as DecodeStatusFile does. A missing file becomes CRASHED with
// notify=taskotron, cause=unknown and keyvals reason=STATUS_FILE_MISSING; an empty, unreadable,
// unparsable or invalid one the same with reason=STATUS_FILE_INVALID and the parse error in
// keyvals error (at most MaxValueBytes).
func ReadStatusFile(path string) StatusFile {
	b, err := readLimited(path, MaxStatusFileBytes)
	var pathErr *fs.PathError
	if errors.As(err, &pathErr) {
		err = pathErr.Err // the path is said once, below, and stays out of the keyvals
	}
	if errors.Is(err, fs.ErrNotExist) {
		return StatusFile{
			End:     StatusFileCrash(StatusFileMissing, nil),
			Problem: fmt.Errorf("status file %s: %w", path, err),
		}
	}
	if err == nil {
		var end statemachine.End
		if end, err = DecodeStatusFile(b); err == nil {
			return StatusFile{End: end}
		}
	}
	return StatusFile{
		End:     StatusFileCrash(StatusFileInvalid, err),
		Problem: fmt.Errorf("status file %s: %w", path, err),
	}
}

// DecodeStatusFile parses a status file strictly: {"state": "FINISHED"} or {"state": "CRASHED",
// "crash": {…}}, no other field, and the crash as in a runtask.end body. Errors are
// *FieldError naming the offending field.
func DecodeStatusFile(b []byte) (statemachine.End, error) {
	var end statemachine.End
	if len(bytes.TrimSpace(b)) == 0 {
		return end, &FieldError{Message: "empty file"}
	}
	obj, err := decodeBody(b, Strict, "state", "crash")
	if err != nil {
		return end, err
	}
	state, err := requiredString(obj, "state", "")
	if err != nil {
		return end, err
	}
	end.State = statemachine.State(state)
	if end.State != statemachine.Finished && end.State != statemachine.Crashed {
		return end, fieldErr("state", "must be FINISHED or CRASHED, got %q", state)
	}
	if raw, ok := present(obj, "crash"); ok {
		if end.State != statemachine.Crashed {
			return end, fieldErr("crash", "only allowed with state CRASHED")
		}
		if end.Crash, err = DecodeCrash(raw, Strict, "crash"); err != nil {
			return end, err
		}
	}
	if end.State == statemachine.Crashed {
		end.Crash = statemachine.NormalizeCrash(end.Crash)
	}
	return end, nil
}

// StatusFileCrash is the report for a status file that could not be used: CRASHED with
// notify=taskotron, cause=unknown, not fatal, keyvals reason=<reason> and, when err is not nil,
// error=<its text> cut to MaxValueBytes.
func StatusFileCrash(reason string, err error) statemachine.End {
	kv := statemachine.KeyVals{"reason": {reason}}
	if err != nil {
		kv["error"] = []string{truncateUTF8(strings.ToValidUTF8(err.Error(), "\uFFFD"), MaxValueBytes)}
	}
	return statemachine.End{
		State: statemachine.Crashed,
		Crash: &statemachine.Crash{
			Notify:  statemachine.NotifyTaskotron,
			Cause:   statemachine.CauseUnknown,
			KeyVals: kv,
		},
	}
}

// readLimited reads the file at path; a file longer than max is an error.
func readLimited(path string, max int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, &FieldError{Message: fmt.Sprintf("larger than %d bytes", max)}
	}
	return b, nil
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}
