package api_test

import (
	"fmt"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
)

// TestHostileText: NUL and invalid UTF-8 anywhere a client can put them (body strings, keys,
// headers, query strings) get 400 naming the field on every backend, never a 500 and never a
// stored or mangled value (CONTRACT section 1, v1.1).
func TestHostileText(t *testing.T) {
	forEachBackend(t, api.Config{}, func(t *testing.T, c *client) {
		job := c.create(trigger)
		start, finish := job.Href()+"/start", job.Href()+"/finish"
		const tr = `{"taskname":"t","item":"i","item_type":"k"`
		cases := []struct {
			name, method, path, body string
			headers                  []string
			field                    string
		}{
			{"NUL in item", "POST", "/api/v1/jobs", `{"taskname":"t","item":"a\u0000","item_type":"k"}`, nil, "item"},
			{"NUL in a data value", "POST", "/api/v1/jobs", tr + `,"data":{"tag":["ok","x\u0000"]}}`, nil, "data.tag[1]"},
			{"NUL in request_id", "POST", "/api/v1/jobs", tr + `,"request_id":"r\u0000"}`, nil, "request_id"},
			{"NUL in runner.name", "POST", start, `{"runner":{"name":"b\u0000"}}`, nil, "runner.name"},
			{"NUL in a crash keyval", "POST", finish, `{"state":"CRASHED","crash":{"keyvals":{"error":"x\u0000y"}}}`, nil, "crash.keyvals.error"},
			{"invalid UTF-8 in taskname", "POST", "/api/v1/jobs", "{\"taskname\":\"t\xff\",\"item\":\"i\",\"item_type\":\"k\"}", nil, "taskname"},
			{"lone surrogate", "POST", "/api/v1/jobs", `{"taskname":"\ud800","item":"i","item_type":"k"}`, nil, "taskname"},
			{"duplicate key", "POST", "/api/v1/jobs", `{"taskname":"t","taskname":"u","item":"i","item_type":"k"}`, nil, "taskname"},
			{"Idempotency-Key 0xff", "POST", "/api/v1/jobs", tr + `}`, []string{"Idempotency-Key", "key\xff"}, "Idempotency-Key"},
			{"X-Request-ID 0xff", "POST", start, ``, []string{"X-Request-ID", "req\xff"}, "X-Request-ID"},
			{"X-Request-ID too long", "POST", start, ``, []string{"X-Request-ID", strings.Repeat("r", 256)}, "X-Request-ID"},
			{"search item %FF", "GET", "/api/v1/jobs?item=%FF", ``, nil, "item"},
			{"search item %00", "GET", "/api/v1/jobs?item=a%00", ``, nil, "item"},
			{"search kv key %FF", "GET", "/api/v1/jobs?kv.%FF=x", ``, nil, `query parameter kv.\xff`},
			{"stats item %00", "GET", "/api/v1/stats?item=%00", ``, nil, "item"},
			{"retry stats %FF", "GET", "/api/v1/stats/retries?group_by=%FF", ``, nil, "group_by"},
			{"rejected message_id %00", "GET", "/api/v1/rejected?message_id=%00", ``, nil, "message_id"},
			{"bad escape", "GET", "/api/v1/jobs?item=%zz", ``, nil, ""},
			{"bulk reschedule filter", "POST", "/api/v1/reschedule", `{"filter":{"item":"a\u0000"}}`, nil, "filter.item"},
		}
		for _, tc := range cases {
			t.Run(tc.name, func(t *testing.T) {
				r := c.do(tc.method, tc.path, tc.body, tc.headers...)
				expectStatus(t, r, 400)
				e := r.err(t)
				want := tc.field
				if strings.HasPrefix(want, "query parameter ") && strings.ContainsAny(want, "\\") {
					want = fmt.Sprintf("%q", "query parameter kv.\xff")
				}
				if e.Error.Field != want || e.Error.Message == "" {
					t.Errorf("got field %q message %q, want field %q", e.Error.Field, e.Error.Message, want)
				}
			})
		}
		r := c.do("GET", job.Href(), "")
		if j := r.job(t); j.State != statemachine.Scheduled || j.Runner != nil {
			t.Errorf("hostile input changed the job: %s", r.body)
		}
		// Valid text, however exotic, is kept as sent.
		exotic := c.create(`{"taskname":"t😀","item":"é\u00e9\ud83d\ude00","item_type":"k"}`)
		if exotic.TaskName != "t😀" || exotic.Item != "éé😀" {
			t.Errorf("got %q %q, want the text as sent", exotic.TaskName, exotic.Item)
		}
	})
}

// TestDatabaseUnreachable: while the database cannot be reached, reads and writes answer 503
// with a Retry-After (which clients retry), never 500; once it is back, they work again.
func TestDatabaseUnreachable(t *testing.T) {
	base := testenv.PostgresSchema(t)
	u, err := url.Parse(base)
	if err != nil {
		t.Fatal(err)
	}
	proxy := testenv.NewProxy(t, u.Host)
	store := jobs.New(testenv.Postgres(t, proxy.URL(t, base)), jobs.Config{})
	srv := httptest.NewServer(api.New(store, api.Config{}).Handler())
	t.Cleanup(srv.Close)
	c := &client{t: t, base: srv.URL}
	job := c.create(trigger)

	proxy.Cut()
	for _, req := range []struct{ method, path, body string }{
		{"GET", job.Href(), ""},
		{"GET", "/api/v1/jobs?state=SCHEDULED", ""},
		{"GET", "/api/v1/stats?group_by=state", ""},
		{"GET", "/api/v1/rejected", ""},
		{"POST", "/api/v1/jobs", trigger},
		{"POST", job.Href() + "/start", ""},
	} {
		r := c.do(req.method, req.path, req.body)
		expectStatus(t, r, 503)
		if r.header.Get("Retry-After") == "" {
			t.Errorf("%s %s: no Retry-After", req.method, req.path)
		}
	}
	proxy.Restore(t)
	expectStatus(t, c.do("POST", job.Href()+"/start", ""), 200)
}
