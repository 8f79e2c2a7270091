package web

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"go.uber.org/zap"
)

// pageTemplate is a page's template: the layout, the shared parts and the page's content.
type pageTemplate struct {
	tmpl *template.Template
}

// The pages, by the name of their template file (templates/<name>.html).
var pageNames = []string{"dashboard", "jobs", "job", "stats", "retries", "rejected", "error"}

// parseTemplates parses the layout and shared parts once, and each page on a copy of them.
func parseTemplates(s *site) map[string]*pageTemplate {
	base := template.Must(template.New("layout").Funcs(s.funcs()).ParseFS(templateFS, "templates/layout.html", "templates/parts.html", "templates/chart.html"))
	pages := map[string]*pageTemplate{}
	for _, name := range pageNames {
		t := template.Must(template.Must(base.Clone()).ParseFS(templateFS, "templates/"+name+".html"))
		pages[name] = &pageTemplate{tmpl: t}
	}
	return pages
}

// funcs are the template functions: links under the base path, and formatting.
func (s *site) funcs() template.FuncMap {
	return template.FuncMap{
		"path":     func(p string) string { return s.basePath + p },
		"asset":    func(name string) string { return s.basePath + "/static/" + name + "?v=" + s.assetVersion },
		"jobURL":   func(id uuid.UUID) string { return s.basePath + "/jobs/" + id.String() },
		"short":    shortUUID,
		"when":     formatTime,
		"whenFull": formatTimeFull,
		"rfc3339":  rfc3339,
		"dur":      formatDuration,
		"secs":     formatSeconds,
		"pct":      formatShare,
		"count":    countAny,
		"lower":    func(v any) string { return strings.ToLower(fmt.Sprint(v)) },
		"join":     strings.Join,
		"add":      func(a, b int) int { return a + b },
		"list":     func(v ...string) []string { return v },
		"bucketOf": func(t *time.Time, bucket string) string {
			if t == nil {
				return ""
			}
			if bucket == "week" {
				return "week of " + bucketLabel(*t, bucketSpec(bucket).size())
			}
			return bucketLabel(*t, bucketSpec(bucket).size())
		},
		"upper": func(v any) string { return strings.ToUpper(fmt.Sprint(v)) },
		"deref": func(id *uuid.UUID) uuid.UUID { return *id },
		"kvTable": func(caption, keyName string, rows []kvRow) kvTable {
			return kvTable{Caption: caption, KeyName: keyName, Rows: rows}
		},
		"form": func(action string, d statsData) statsForm { return statsForm{Action: action, D: d} },
	}
}

// kvTable is a key-value table of the job page.
type kvTable struct {
	Caption, KeyName string
	Rows             []kvRow
}

// statsForm is the stats form with where it is sent.
type statsForm struct {
	Action string
	D      statsData
}

// countAny formats a count of any integer type.
func countAny(v any) string {
	switch n := v.(type) {
	case int:
		return formatCount(int64(n))
	case int64:
		return formatCount(n)
	}
	return fmt.Sprint(v)
}

// page is what the layout gets: the page's title, which section of the navigation it belongs
// to, and the page's own data.
type page struct {
	Title   string
	Section string // dashboard, jobs, stats, rejected
	Data    any
}

// render writes a page with the given status. It renders into a buffer first, so that a
// template error becomes an error page rather than half a page.
func (s *site) render(w http.ResponseWriter, r *http.Request, status int, name string, p page) {
	var buf bytes.Buffer
	if err := s.pages[name].tmpl.ExecuteTemplate(&buf, "layout", p); err != nil {
		s.log.Error("render page", zap.String("page", name), zap.String("path", r.URL.Path), zap.Error(err))
		if name != "error" {
			s.errorPage(w, r, &pageError{Status: http.StatusInternalServerError, Message: "Internal error."})
		} else {
			http.Error(w, "internal error", http.StatusInternalServerError)
		}
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		w.Write(buf.Bytes()) //nolint:errcheck // the client went away
	}
}

// errorData is what the error page shows.
type errorData struct {
	Status  int
	Reason  string
	Message string
	Field   string
}

// fail maps an error onto an error page, in one place, as the API maps it onto a status: bad
// input is 400 naming the field, an unknown job 404, a database that cannot be reached 503;
// anything else is logged and shown as an internal error.
func (s *site) fail(w http.ResponseWriter, r *http.Request, err error) {
	s.errorPage(w, r, s.pageErrorOf(r, err))
}

func (s *site) pageErrorOf(r *http.Request, err error) *pageError {
	var pe *pageError
	var fe *schemas.FieldError
	switch {
	case errors.As(err, &pe):
		return pe
	case errors.As(err, &fe):
		return &pageError{Status: http.StatusBadRequest, Message: fe.Message, Field: fe.Field}
	case errors.Is(err, storage.ErrNotFound):
		return &pageError{Status: http.StatusNotFound, Message: "No such job."}
	case r.Context().Err() != nil && errors.Is(err, r.Context().Err()):
		return &pageError{Status: http.StatusServiceUnavailable, Message: "The request was cancelled."}
	case errors.Is(err, storage.ErrUnavailable):
		s.log.Warn("database unavailable", zap.String("path", r.URL.Path), zap.Error(err))
		return &pageError{Status: http.StatusServiceUnavailable, Message: "The database cannot be reached right now; try again shortly."}
	case errors.Is(err, context.Canceled):
		return &pageError{Status: http.StatusServiceUnavailable, Message: "ExecDB is shutting down; try again shortly."}
	case errors.Is(err, context.DeadlineExceeded):
		s.log.Warn("page timed out", zap.String("path", r.URL.Path), zap.Error(err))
		return &pageError{Status: http.StatusServiceUnavailable, Message: "The database took too long to answer; try again shortly, or narrow the question."}
	}
	s.log.Error("internal error", zap.String("path", r.URL.Path), zap.Error(err))
	return &pageError{Status: http.StatusInternalServerError, Message: "Internal error; the details are in the server's log."}
}

// errorPage writes the page of an error.
func (s *site) errorPage(w http.ResponseWriter, r *http.Request, e *pageError) {
	if e.Status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	s.render(w, r, e.Status, "error", page{Title: http.StatusText(e.Status), Data: errorData{
		Status: e.Status, Reason: http.StatusText(e.Status), Message: e.Message, Field: e.Field,
	}})
}

// assetVersion is a hash of the embedded assets, put in their URLs so that browsers can keep
// them and still get a new version at once.
func assetVersion(static fs.FS) string {
	h := sha256.New()
	fs.WalkDir(static, ".", func(path string, d fs.DirEntry, err error) error { //nolint:errcheck // embedded
		if err != nil || d.IsDir() {
			return nil
		}
		b, _ := fs.ReadFile(static, path)
		h.Write([]byte(path))
		h.Write(b)
		return nil
	})
	return hex.EncodeToString(h.Sum(nil))[:12]
}
