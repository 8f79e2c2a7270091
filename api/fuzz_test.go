package api_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
)

// fuzzServer is one API on SQLite with a crashed job, for the fuzz targets.
func fuzzServer(f *testing.F) (http.Handler, string) {
	store := jobs.New(testenv.SQLite(f, ""), jobs.Config{})
	h := api.New(store, api.Config{}).Handler()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, loopback(httptest.NewRequest("POST", "/api/v1/jobs", bytes.NewBufferString(trigger))))
	job := rec.Header().Get("Location")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, loopback(httptest.NewRequest("POST", job+"/finish", bytes.NewBufferString(`{"state":"CRASHED","crash":{"keyvals":{"step":"X"}}}`))))
	return h, job
}

func loopback(r *http.Request) *http.Request {
	r.RemoteAddr = "127.0.0.1:1234"
	return r
}

// FuzzQueries: no query string makes a read answer 500 (CONTRACT section 6, v1.1).
func FuzzQueries(f *testing.F) {
	h, job := fuzzServer(f)
	for _, q := range []string{"state=CRASHED&kv.step=X&since=30d&group_by=kv.reason&bucket=day", "item=%FF", "item=%00",
		"item:like=*a*&limit=2&after=x", "kv.%FF=1", "group_by=data.a,kv.b,state", "since=99999999d", "until=2030-01-01T00:00:00Z",
		"message_id=%00&job=x", "before=-1&limit=0", "%zz", "state=RUNNING,SCHEDULED&state=FINISHED"} {
		f.Add(q)
	}
	paths := []string{"/api/v1/jobs", "/api/v1/stats", "/api/v1/stats/retries", "/api/v1/rejected", job, job + "/events"}
	f.Fuzz(func(t *testing.T, query string) {
		for _, p := range paths {
			r := httptest.NewRequest("GET", "/", nil)
			r.URL.Path, r.URL.RawQuery = p, query
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, r)
			if rec.Code >= 500 {
				t.Fatalf("GET %s?%s: %d %s", p, query, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzWrites: no request body makes a write answer 500.
func FuzzWrites(f *testing.F) {
	h, job := fuzzServer(f)
	for _, b := range []string{trigger, `{"taskname":"t","item":"a\u0000","item_type":"k"}`, "{\"taskname\":\"\xff\"}",
		`{"state":"CRASHED","crash":{"keyvals":{"a":[1,true,"x"]}}}`, `{"runner":{"name":"b"},"started_at":"2030-01-01T00:00:00Z"}`,
		`{"force":true,"reason":"x"}`, `{"filter":{"state":"CRASHED"},"dry_run":true}`, `{"a":1,"a":2}`, ``} {
		f.Add(b)
	}
	paths := []string{"/api/v1/jobs", job + "/start", job + "/finish", job + "/reschedule", "/api/v1/reschedule"}
	f.Fuzz(func(t *testing.T, body string) {
		for _, p := range paths {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, loopback(httptest.NewRequest("POST", p, bytes.NewBufferString(body))))
			if rec.Code >= 500 {
				t.Fatalf("POST %s %q: %d %s", p, body, rec.Code, rec.Body)
			}
		}
	})
}
