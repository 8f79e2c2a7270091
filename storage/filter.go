package storage

import (
	"fmt"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
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
func ParseFilter(params url.Values, now time.Time, others ...string) (Filter, error) {
	var f Filter
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
		f.Conditions = append(f.Conditions, Condition{Field: field, Match: Match{Values: values, Like: like}})
	}
	return f, nil
}

// ParseField checks a filter or group_by field name: a plain field, kv.<key> or data.<key>.
func ParseField(name string) (Field, error) {
	f := Field(name)
	if _, key, ok := f.Key(); ok {
		if !schemas.ValidKey(key) {
			return "", fmt.Errorf("the key must match ^[A-Za-z0-9_.-]{1,64}$")
		}
		return f, nil
	}
	for _, p := range PlainFields {
		if p == f {
			return f, nil
		}
	}
	return "", fmt.Errorf("unknown parameter; filters are %s, kv.<key>, data.<key>, since, until", joinFields(PlainFields))
}

func checkValues(f Field, like bool, values []string) error {
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
	case FieldState:
		return enum(stringsOf(statemachine.States))
	case FieldNotify:
		return enum(stringsOf(statemachine.Notifies))
	case FieldCause:
		return enum(stringsOf(statemachine.Causes))
	case FieldFatal:
		return enum([]string{"true", "false"})
	}
	return nil
}

// ParseBucket checks a bucket name.
func ParseBucket(s string) (Bucket, error) {
	switch b := Bucket(s); b {
	case BucketNone, BucketHour, BucketDay, BucketWeek:
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

func joinFields(fs []Field) string { return strings.Join(stringsOf(fs), ", ") }
