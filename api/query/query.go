// Package query reads the query strings of the HTTP API and the pages (CONTRACT section 6) into
// storage's typed filters: the filter fields, since and until, group_by fields and buckets. It
// names the parameter of every error (schemas.FieldError); the database never sees a query
// string.
package query

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
)

// Limits of a filter, which keep every query well inside the databases' parameter limits.
const (
	MaxFilterValues     = 100 // values of one parameter
	MaxFilterConditions = 32  // parameters other than since and until
)

// ParseFilter reads the filter parameters of CONTRACT section 6 from params: the plain fields,
// kv.<key> and data.<key>, each optionally with :like, and since/until. Names listed in others
// (e.g. "limit") are left to the caller; any other name is an error naming it. Repeated
// parameters and commas both mean OR.
func ParseFilter(params url.Values, now time.Time, others ...string) (storage.Filter, error) {
	var f storage.Filter
	names := make([]string, 0, len(params))
	for name := range params {
		names = append(names, name)
	}
	sort.Strings(names) // errors and conditions in a stable order
	for _, name := range names {
		raw := params[name]
		if slices.Contains(others, name) {
			continue
		}
		if name == "since" || name == "until" {
			if len(raw) != 1 {
				return f, &schemas.FieldError{Field: name, Message: "give it once"}
			}
			t, err := ParseTime(raw[0], now)
			if err != nil {
				return f, &schemas.FieldError{Field: name, Message: err.Error()}
			}
			if name == "since" {
				f.Since = &t
			} else {
				f.Until = &t
			}
			continue
		}
		fieldName, like := strings.CutSuffix(name, ":like")
		field, err := ParseField(fieldName)
		if err != nil {
			return f, &schemas.FieldError{Field: name, Message: err.Error()}
		}
		var values []string
		for _, r := range raw {
			for _, v := range strings.Split(r, ",") {
				if v == "" {
					return f, &schemas.FieldError{Field: name, Message: "empty value"}
				}
				values = append(values, v)
			}
		}
		if len(values) == 0 {
			return f, &schemas.FieldError{Field: name, Message: "empty value"}
		}
		if len(values) > MaxFilterValues {
			return f, &schemas.FieldError{Field: name, Message: fmt.Sprintf("at most %d values", MaxFilterValues)}
		}
		if err := checkValues(field, like, values); err != nil {
			return f, &schemas.FieldError{Field: name, Message: err.Error()}
		}
		if len(f.Conditions) == MaxFilterConditions {
			return f, &schemas.FieldError{Field: name, Message: fmt.Sprintf("at most %d filter parameters", MaxFilterConditions)}
		}
		f.Conditions = append(f.Conditions, storage.Condition{Field: field, Match: storage.Match{Values: values, Like: like}})
	}
	return f, nil
}

// ParseField checks a filter or group_by field name: a plain field, kv.<key> or data.<key>.
func ParseField(name string) (storage.Field, error) {
	f := storage.Field(name)
	if _, key, ok := f.Key(); ok {
		if !schemas.ValidKey(key) {
			return "", fmt.Errorf("the key must match ^[A-Za-z0-9_.-]{1,64}$")
		}
		return f, nil
	}
	for _, p := range storage.PlainFields {
		if p == f {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown parameter; filters are %s, kv.<key>, data.<key>, since, until", joinFields(storage.PlainFields))
}

func checkValues(f storage.Field, like bool, values []string) error {
	enum := func(allowed []string) error {
		if like {
			return fmt.Errorf(":like is for text fields, not %s", f)
		}
		for _, v := range values {
			if !slices.Contains(allowed, v) {
				return fmt.Errorf("%q is not one of %s", v, strings.Join(allowed, ", "))
			}
		}
		return nil
	}
	switch f {
	case storage.FieldState:
		return enum(stringsOf(statemachine.States))
	case storage.FieldNotify:
		return enum(stringsOf(statemachine.Notifies))
	case storage.FieldCause:
		return enum(stringsOf(statemachine.Causes))
	case storage.FieldFatal:
		return enum([]string{"true", "false"})
	}
	return nil
}

// ParseBucket checks a bucket name.
func ParseBucket(s string) (storage.Bucket, error) {
	switch b := storage.Bucket(s); b {
	case storage.BucketNone, storage.BucketHour, storage.BucketDay, storage.BucketWeek:
		return b, nil
	}
	return "", fmt.Errorf("want hour, day or week, got %q", s)
}

func stringsOf[T ~string](vs []T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

func joinFields(fs []storage.Field) string { return strings.Join(stringsOf(fs), ", ") }

// maxRelative is how far back a relative time may reach: about a hundred years, well inside
// time.Duration's range.
const maxRelative = int64(100 * 366 * 24 * time.Hour)

var relativeTime = regexp.MustCompile(`^(\d+)([smhdw])$`)

// ParseTime reads a since/until value: RFC 3339, or a duration back from now such as 30d, 12h,
// 90m, 2w.
func ParseTime(s string, now time.Time) (time.Time, error) {
	if m := relativeTime.FindStringSubmatch(s); m != nil {
		unit := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour, "d": 24 * time.Hour, "w": 7 * 24 * time.Hour}[m[2]]
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err != nil || n > maxRelative/int64(unit) {
			return time.Time{}, fmt.Errorf("relative time too far back: at most %d days", maxRelative/int64(24*time.Hour))
		}
		return now.Add(-time.Duration(n) * unit).UTC(), nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("want RFC 3339 (2026-11-01T00:00:00Z) or a relative time like 30d, 12h")
	}
	return t.UTC(), nil
}
