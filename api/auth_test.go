package api_test

import (
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/google/uuid"
)

func TestParseTokens(t *testing.T) {
	tokens, err := api.ParseTokens(strings.NewReader(`# comment
trigger:t0k3n:trigger
buildbot:b0t:runner, runner
ops:0ps:admin,trigger,runner
old:plain
colon:has:colons:in:it
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]api.Token{
		"t0k3n":            {Name: "trigger", Scopes: []api.Scope{api.ScopeTrigger}},
		"b0t":              {Name: "buildbot", Scopes: []api.Scope{api.ScopeRunner}},
		"0ps":              {Name: "ops", Scopes: []api.Scope{api.ScopeAdmin, api.ScopeTrigger, api.ScopeRunner}},
		"plain":            {Name: "old"},
		"has:colons:in:it": {Name: "colon"},
	}
	if !reflect.DeepEqual(tokens, want) {
		t.Errorf("got %+v\nwant %+v", tokens, want)
	}
	if !want["plain"].Allows(api.ScopeAdmin) || want["b0t"].Allows(api.ScopeTrigger) {
		t.Error("Allows: a token without scopes has all, a scoped one only its own")
	}
	for _, bad := range []string{"nameonly", ":token", "dup:a\ndup:b", "a:same\nb:same", "name::runner"} {
		if _, err := api.ParseTokens(strings.NewReader(bad)); err == nil {
			t.Errorf("%q: got no error", bad)
		}
	}
}

// TestScopes: each write needs its scope (CONTRACT section 6, v1.1); a write outside the token's
// scopes answers 403 naming the scope it needs.
func TestScopes(t *testing.T) {
	cfg := api.Config{Tokens: map[string]api.Token{
		"trig": {Name: "trigger", Scopes: []api.Scope{api.ScopeTrigger}},
		"run":  {Name: "buildbot", Scopes: []api.Scope{api.ScopeRunner}},
		"adm":  {Name: "ops", Scopes: []api.Scope{api.ScopeAdmin}},
	}}
	forEachBackend(t, cfg, func(t *testing.T, c *client) {
		c.token = "trig"
		job := c.create(trigger)
		for _, tc := range []struct {
			token, method, path, body string
			status                    int
			scope                     string
		}{
			{"run", "POST", "/api/v1/jobs", trigger, 403, "trigger"},
			{"adm", "POST", "/api/v1/jobs", trigger, 403, "trigger"},
			{"trig", "POST", job.Href() + "/start", "", 403, "runner"},
			{"run", "POST", job.Href() + "/start", "", 200, ""},
			{"run", "POST", job.Href() + "/finish", `{"state":"CRASHED"}`, 200, ""},
			{"run", "POST", job.Href() + "/reschedule", "", 403, "admin"},
			{"trig", "POST", "/api/v1/reschedule", `{"filter":{"state":"CRASHED"},"dry_run":true}`, 403, "admin"},
			{"adm", "POST", job.Href() + "/reschedule", "", 201, ""},
		} {
			c.token = tc.token
			r := c.do(tc.method, tc.path, tc.body)
			expectStatus(t, r, tc.status)
			if tc.scope != "" {
				if e := r.err(t); !strings.Contains(e.Error.Message, "lacks the "+tc.scope+" scope") {
					t.Errorf("%s %s with %s: got %q, want it to name the %s scope", tc.method, tc.path, tc.token, e.Error.Message, tc.scope)
				}
			}
		}
	})
}

// TestProxiedWritesWithoutTokens: without tokens, a write that came through a reverse proxy on
// the same host is refused, for the proxy makes every client look local.
func TestProxiedWritesWithoutTokens(t *testing.T) {
	store := jobs.New(backends["sqlite"](t), jobs.Config{})
	h := api.New(store, api.Config{}).Handler()
	for _, header := range []string{"X-Forwarded-For", "Forwarded", "X-Real-IP"} {
		req := httptest.NewRequest("POST", "/api/v1/jobs", strings.NewReader(trigger))
		req.RemoteAddr = "127.0.0.1:4000"
		req.Header.Set(header, "203.0.113.9")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 403 || !strings.Contains(rec.Body.String(), "EXECDB_TOKENS_FILE") {
			t.Errorf("%s: got %d %s, want 403 saying tokens are needed", header, rec.Code, rec.Body)
		}
	}
	// Reads through a proxy are fine.
	req := httptest.NewRequest("GET", "/api/v1/jobs", nil)
	req.RemoteAddr = "127.0.0.1:4000"
	req.Header.Set("X-Forwarded-For", "203.0.113.9")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != 200 {
		t.Errorf("a proxied read: got %d", rec.Code)
	}
}

// TestPrune: POST /api/v1/prune applies a retention (the server's, or the body's), dry run or
// not, and needs the admin scope.
func TestPrune(t *testing.T) {
	cfg := api.Config{Tokens: map[string]api.Token{"adm": {Name: "ops", Scopes: []api.Scope{api.ScopeAdmin}}, "run": {Name: "bb", Scopes: []api.Scope{api.ScopeRunner}}}}
	forEachBackend(t, cfg, func(t *testing.T, c *client) {
		c.token = "run"
		expectStatus(t, c.do("POST", "/api/v1/prune", `{"dry_run":true,"retention":"FINISHED=1d"}`), 403)
		c.token = "adm"
		r := c.do("POST", "/api/v1/prune", `{"dry_run":true}`)
		expectStatus(t, r, 400)
		if e := r.err(t); e.Error.Field != "retention" {
			t.Errorf("no retention: got %+v", e.Error)
		}
		expectStatus(t, c.do("POST", "/api/v1/prune", `{"retention":"RUNNING=1d"}`), 400)
		r = c.do("POST", "/api/v1/prune", `{"dry_run":true,"retention":"FINISHED=1d,rejected=2d"}`)
		expectStatus(t, r, 200)
		if !strings.Contains(string(r.body), `"dry_run":true`) || !strings.Contains(string(r.body), `"retention":"FINISHED=1d,rejected=2d"`) {
			t.Errorf("got %s", r.body)
		}
	})
}

// TestBaseURL: behind a proxy that strips /execdb, the next links are under EXECDB_BASE_URL.
func TestBaseURL(t *testing.T) {
	cfg := api.Config{BaseURL: "https://taskotron.example.org/execdb/"}
	forEachBackend(t, cfg, func(t *testing.T, c *client) {
		for range 3 {
			c.create(strings.Replace(trigger, `"rpmlint"`, `"rpmlint-`+uuid.NewString()+`"`, 1))
		}
		r := c.do("GET", "/api/v1/jobs?limit=1", "")
		expectStatus(t, r, 200)
		if !strings.Contains(string(r.body), `"next":"https://taskotron.example.org/execdb/api/v1/jobs?`) {
			t.Errorf("search next: %s", r.body)
		}
	})
}
