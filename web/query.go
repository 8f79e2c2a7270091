package web

import (
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/storage"
)

// query is a page's query string: the API's parameters, so that a page's URL and the API
// request that answers the same question differ only in their path.
type query url.Values

// readable undoes the escaping of characters that may stand in a query as they are (RFC 3986
// allows sub-delimiters, ":" and "/" there), so that shared URLs read like the API's examples:
// state=RUNNING,SCHEDULED&item:like=python-*.
var readable = strings.NewReplacer("%2C", ",", "%3A", ":", "%2A", "*", "%2F", "/")

// encode writes the query sorted by name, as url.Values.Encode, but readable.
func (q query) encode() string {
	names := make([]string, 0, len(q))
	for name := range q {
		names = append(names, name)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		for _, v := range q[name] {
			if b.Len() > 0 {
				b.WriteByte('&')
			}
			b.WriteString(readable.Replace(url.QueryEscape(name)))
			b.WriteByte('=')
			b.WriteString(readable.Replace(url.QueryEscape(v)))
		}
	}
	return b.String()
}

// clone copies the query, leaving out the names given.
func (q query) clone(without ...string) query {
	c := query{}
	for name, values := range q {
		if !slices.Contains(without, name) {
			c[name] = slices.Clone(values)
		}
	}
	return c
}

// with returns a copy of the query with name set to values (nil: removed).
func (q query) with(name string, values ...string) query {
	c := q.clone(name)
	if len(values) > 0 {
		c[name] = values
	}
	return c
}

// Get returns the values of name joined by commas, which the API reads as the same OR.
func (q query) Get(name string) string { return strings.Join(q[name], ",") }

// parseQuery reads the query string strictly, as the API does: an escape that is not one is
// an error rather than a parameter silently dropped, and every name and value keeps the text
// rule (CONTRACT section 1, v1.1).
func parseQuery(r *http.Request) (query, error) {
	params, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		return nil, &schemas.FieldError{Message: "query string: " + err.Error()}
	}
	for name, values := range params {
		if err := schemas.CheckText(name, "query parameter "+name); err != nil {
			return nil, err
		}
		for _, v := range values {
			if err := schemas.CheckText(v, name); err != nil {
				return nil, err
			}
		}
	}
	return query(params), nil
}

// The form fields that are not API parameters: rows of a parameter name and its value, for
// kv.<key>, data.<key> and :like conditions, which a form without JavaScript cannot name
// otherwise.
const (
	formCond  = "cond"
	formValue = "value"
)

// canonical turns what a search form sent into the API's query string: empty fields are left
// out and each cond/value row becomes the parameter it names. It reports whether anything
// changed; the page then redirects to the canonical URL, which is the one to share.
func canonical(q query) (query, bool, error) {
	changed := false
	out := query{}
	for name, values := range q {
		if name == formCond || name == formValue {
			changed = true
			continue
		}
		for _, v := range values {
			if strings.TrimSpace(v) == "" {
				changed = true
				continue
			}
			out[name] = append(out[name], strings.TrimSpace(v))
		}
	}
	if !changed {
		return q, false, nil
	}
	conds, values := q[formCond], q[formValue]
	for i := range max(len(conds), len(values)) {
		var name, value string
		if i < len(conds) {
			name = strings.TrimSpace(conds[i])
		}
		if i < len(values) {
			value = strings.TrimSpace(values[i])
		}
		switch {
		case name == "" && value == "":
		case name == "":
			return nil, false, &schemas.FieldError{Field: formCond, Message: "the condition with value " + value + " names no parameter"}
		case value == "":
			return nil, false, &schemas.FieldError{Field: name, Message: "empty value"}
		default:
			out[name] = append(out[name], value)
		}
	}
	return out, changed, nil
}

// redirectCanonical sends the browser to the canonical form of the query when the search form
// sent empty fields or condition rows, and reports whether it did.
func (s *site) redirectCanonical(w http.ResponseWriter, r *http.Request, path string, q query) (query, bool, error) {
	c, changed, err := canonical(q)
	if err != nil || !changed {
		return c, false, err
	}
	http.Redirect(w, r, s.link(path, c), http.StatusSeeOther)
	return c, true, nil
}

// absoluteWindow replaces a relative since or until (30d) by the time it meant now, so that
// the following pages of a search cover the same window, as the API's next links do.
func absoluteWindow(q query, f storage.Filter) query {
	c := q.clone()
	if f.Since != nil {
		c["since"] = []string{f.Since.UTC().Format(time.RFC3339Nano)}
	}
	if f.Until != nil {
		c["until"] = []string{f.Until.UTC().Format(time.RFC3339Nano)}
	}
	return c
}

// filterNames are the filter parameters the search form has a field of its own for.
var filterNames = []string{"state", "taskname", "item", "item_type", "arch", "notify", "cause", "fatal", "since", "until"}

// condRow is a row of the search form's further conditions.
type condRow struct {
	Index       int
	Name, Value string
}

// filterForm is what the search form shows: the query's values in its fields.
type filterForm struct {
	Q     query
	Conds []condRow
}

// newFilterForm puts the query into the form: the plain filters into their fields, everything
// else but the names in others (group_by, limit…) into condition rows, and two empty rows.
func newFilterForm(q query, others ...string) filterForm {
	f := filterForm{Q: q}
	var names []string
	for name := range q {
		if !slices.Contains(filterNames, name) && !slices.Contains(others, name) && name != "after" && name != "before" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	for _, name := range names {
		f.Conds = append(f.Conds, condRow{Name: name, Value: q.Get(name)})
	}
	for range 2 {
		f.Conds = append(f.Conds, condRow{})
	}
	for i := range f.Conds {
		f.Conds[i].Index = i + 1
	}
	return f
}

// Checked reports whether the field name has the value v among its values, for checkboxes.
func (f filterForm) Checked(name, v string) bool {
	for _, raw := range f.Q[name] {
		if slices.Contains(strings.Split(raw, ","), v) {
			return true
		}
	}
	return false
}

// Value is the field's value as the form shows it.
func (f filterForm) Value(name string) string { return f.Q.Get(name) }
