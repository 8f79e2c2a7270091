package web_test

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/web"
	"github.com/google/uuid"
	"go.uber.org/zap/zaptest"
)

const base = "https://taskotron.example.org/execdb"

func newPages(t testing.TB, s *seeded, baseURL string) *web.Pages {
	t.Helper()
	p := web.New(web.Config{Reader: s.store, BaseURL: baseURL,
		ResultsDBURL: "https://taskotron.example.org/resultsdb_api/api/v2.0", Logger: zaptest.NewLogger(t)})
	t.Cleanup(p.Close)
	return p
}

// get asks h for path (under the base path when the pages have one, stripped as the proxy
// would) and returns the status and body.
func get(t testing.TB, h http.Handler, path string) (int, string, http.Header) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec.Code, rec.Body.String(), rec.Header()
}

func mustGet(t testing.TB, h http.Handler, path string) string {
	t.Helper()
	code, body, _ := get(t, h, path)
	if code != http.StatusOK {
		t.Fatalf("GET %s: got %d, want 200\n%s", path, code, body)
	}
	return body
}

func wantIn(t testing.TB, what, body string, parts ...string) {
	t.Helper()
	for _, p := range parts {
		if !strings.Contains(body, p) {
			t.Errorf("%s: %q is missing", what, p)
		}
	}
}

func TestPagesShowTheSeededJobs(t *testing.T) {
	t.Parallel()
	s := seed(t)
	p := newPages(t, s, "")

	dash := mustGet(t, p, "/")
	wantIn(t, "dashboard", dash,
		`href="/jobs?state=RUNNING"`, `href="/jobs?state=SCHEDULED"`,
		// The T833 question, one click away.
		`href="/stats?cause=minion&amp;group_by=kv.reason&amp;kv.step=MINION_CREATION&amp;since=30d&amp;state=CRASHED"`,
		// Jobs near the timeouts: created more than 80 % of 3h and 24h ago.
		`href="/jobs?state=RUNNING&amp;until=144m"`, `href="/jobs?state=SCHEDULED&amp;until=1152m"`,
		`<svg class="lines"`, "TIMED_OUT", "rpmlint")

	jobs := mustGet(t, p, "/jobs")
	wantIn(t, "/jobs", jobs, s.crashed.UUID.String()[:8], "htop-3.3.0-1.fc45", "state-crashed", `rel="next"`)

	job := mustGet(t, p, "/jobs/"+s.crashed.UUID.String())
	wantIn(t, "crashed job", job, "htop-3.3.0-1.fc45", "MINION_CREATION", "TIMED_OUT", "f45-updates-testing", "ncurses",
		"execdb job reschedule "+s.crashed.UUID.String(),
		`curl -sS -X POST &#34;$EXECDB_SERVER/api/v1/jobs/`+s.crashed.UUID.String()+`/reschedule&#34; \`+"\n"+`  -H &#34;Authorization: Bearer $EXECDB_TOKEN&#34;`,
		`href="https://taskotron.example.org/resultsdb_api/api/v2.0/results?groups=`+s.crashed.UUID.String()+`"`,
		`href="https://taskotron.example/builds/`, `href="https://taskotron.example/logs/`, `href="https://taskotron.example/artifacts/`,
		`href="/jobs?kv.reason=TIMED_OUT&amp;state=CRASHED"`, "taskotron-client10-3", "rej-schema")
	if strings.Contains(job, "<form") || strings.Contains(job, `method="post"`) {
		t.Error("the job page has a form: the pages must not write")
	}

	fatal := mustGet(t, p, "/jobs/"+s.fatal.UUID.String())
	wantIn(t, "fatal job", fatal, "--force", `-d &#39;{&#34;force&#34;: true}&#39;`, "137")

	// The middle of a lineage shows the whole chain and that it was rescheduled.
	mid := mustGet(t, p, "/jobs/"+s.chain[1].String())
	for i, id := range s.chain {
		wantIn(t, "lineage", mid, fmt.Sprintf("attempt %d", i+1), id.String()[:8])
	}
	wantIn(t, "lineage", mid, `aria-current="page"`, "its successor is", `href="/jobs/`+s.chain[2].String()+`"`)

	running := mustGet(t, p, "/jobs/"+s.stuck.UUID.String())
	wantIn(t, "running job", running, "running for", "of the 3 h the watchdog allows")

	stats := mustGet(t, p, "/stats?state=CRASHED&cause=minion&kv.step=MINION_CREATION&since=30d&group_by=kv.reason")
	wantIn(t, "T833", stats, "How often did minion creation fail last month, by reason?", "TIMED_OUT", "NO_SPACE", `<svg class="bars"`, "queue wait",
		`href="/jobs?cause=minion&amp;kv.reason=TIMED_OUT&amp;kv.step=MINION_CREATION&amp;since=30d&amp;state=CRASHED"`,
		`href="/api/v1/stats?cause=minion&amp;group_by=kv.reason&amp;kv.step=MINION_CREATION&amp;since=30d&amp;state=CRASHED"`)

	lines := mustGet(t, p, "/stats?state=CRASHED&since=30d&group_by=cause&bucket=day")
	wantIn(t, "bucketed stats", lines, `<svg class="lines"`, "minion", "network")

	retries := mustGet(t, p, "/stats/retries?state=CRASHED&since=30d&group_by=cause")
	wantIn(t, "retries", retries, "network", "rescheduled crashes")

	rej := mustGet(t, p, "/rejected")
	wantIn(t, "rejected", rej, "rej-schema", "cosmic-rays", "unknown_topic", "fedmsg", "Not UTF-8; base64",
		`href="/jobs/`+s.crashed.UUID.String()+`"`, "unknown")
	if strings.Contains(rej, `href="/jobs/`+s.unknownID.String()+`"`) {
		t.Error("/rejected links the page of a job ExecDB does not have")
	}
	filtered := mustGet(t, p, "/rejected?reason=schema&transport=amqp")
	if strings.Contains(filtered, "2026-rej-fedmsg") || strings.Contains(filtered, "rej-garbage") || !strings.Contains(filtered, "cosmic-rays") {
		t.Error("/rejected?reason=schema lists other reasons, or not the schema rejection")
	}
	byJob := mustGet(t, p, "/rejected?job="+s.unknownID.String())
	if !strings.Contains(byJob, "rej-unknown") || strings.Contains(byJob, "rej-schema") {
		t.Error("/rejected?job= lists other jobs' messages")
	}
}

// links are the URLs of every href, src and action of a page (html/template writes them
// double-quoted).
var links = regexp.MustCompile(`\b(?:href|src|action)="([^"]*)"`)

func pageLinks(body string) []string {
	var out []string
	for _, m := range links.FindAllStringSubmatch(body, -1) {
		out = append(out, html.UnescapeString(m[1]))
	}
	return out
}

func TestEveryLinkIsUnderTheBaseURL(t *testing.T) {
	t.Parallel()
	s := seed(t)
	p := newPages(t, s, base)
	paths := []string{"/", "/jobs", "/jobs?state=CRASHED&limit=5", "/jobs/" + s.crashed.UUID.String(), "/jobs/" + s.chain[1].String(),
		"/stats", "/stats?state=CRASHED&since=30d&group_by=cause&bucket=day", "/stats/retries?state=CRASHED&group_by=cause",
		"/rejected", "/rejected?limit=2", "/no-such-page", "/jobs?state=DONE"}
	for _, path := range paths {
		_, body, _ := get(t, p, path)
		for _, l := range pageLinks(body) {
			if strings.HasPrefix(l, "#") {
				continue // this page
			}
			u, err := url.Parse(l)
			if err != nil {
				t.Errorf("%s: link %q: %v", path, l, err)
				continue
			}
			if u.Host != "" && u.Host != "taskotron.example.org" {
				continue // a build, a log, artifacts: elsewhere on purpose
			}
			if u.Host == "" && !strings.HasPrefix(l, "/execdb/") {
				t.Errorf("%s: link %q is not under /execdb/", path, l)
			}
			if u.Host == "taskotron.example.org" && !strings.HasPrefix(u.Path, "/execdb/") && !strings.HasPrefix(u.Path, "/resultsdb_api/") {
				t.Errorf("%s: link %q is not under the base URL", path, l)
			}
		}
	}
	job := mustGet(t, p, "/jobs/"+s.crashed.UUID.String())
	wantIn(t, "commands", job, "export EXECDB_SERVER="+base)
}

func TestSearchFormIsTheAPIQuery(t *testing.T) {
	t.Parallel()
	s := seed(t)
	p := newPages(t, s, base)
	// What a form without JavaScript sends: every field, empty or not, and condition rows.
	sent := "/jobs?state=CRASHED&taskname=&item=&item_type=&arch=&since=30d&until=&fatal=&cond=kv.step&value=MINION_CREATION&cond=&value=&cond=item%3Alike&value=pkg*"
	code, _, h := get(t, p, sent)
	want := "/execdb/jobs?item:like=pkg*&kv.step=MINION_CREATION&since=30d&state=CRASHED"
	if code != http.StatusSeeOther || h.Get("Location") != want {
		t.Fatalf("got %d to %q, want 303 to %q", code, h.Get("Location"), want)
	}
	body := mustGet(t, p, strings.TrimPrefix(want, "/execdb"))
	wantIn(t, "canonical search", body, `value="kv.step"`, `value="MINION_CREATION"`, `value="item:like"`, `value="pkg*"`,
		`value="CRASHED" checked`, `value="30d"`)
	if strings.Contains(body, s.crashed.UUID.String()) || !strings.Contains(body, "pkg1-1.0-1.fc45") {
		t.Error("the search lists a job whose item does not match pkg*, or misses one that does")
	}
	// A value with no parameter is refused naming the field.
	code, body, _ = get(t, p, "/jobs?cond=&value=x")
	if code != http.StatusBadRequest || !strings.Contains(body, "<code>cond</code>") {
		t.Errorf("got %d, want 400 naming cond", code)
	}
}

func TestPagingWalksEveryJob(t *testing.T) {
	t.Parallel()
	s := seed(t)
	p := newPages(t, s, base)
	next := "/jobs?limit=7&since=60d"
	seen := map[string]bool{}
	pages := 0
	for next != "" {
		pages++
		body := mustGet(t, p, strings.TrimPrefix(next, "/execdb"))
		for _, m := range regexp.MustCompile(`href="/execdb/jobs/([0-9a-f-]{36})"`).FindAllStringSubmatch(body, -1) {
			if seen[m[1]] {
				t.Fatalf("page %d lists %s again", pages, m[1])
			}
			seen[m[1]] = true
		}
		next = ""
		if m := regexp.MustCompile(`href="([^"]*)" rel="next"`).FindStringSubmatch(body); m != nil {
			next = html.UnescapeString(m[1])
		}
		if pages > 100 {
			t.Fatal("paging does not end")
		}
	}
	if len(seen) != s.all {
		t.Errorf("got %d jobs over %d pages, want %d", len(seen), pages, s.all)
	}
}

func TestBadInputAnswersAPage(t *testing.T) {
	t.Parallel()
	s := seed(t)
	p := newPages(t, s, "")
	for _, c := range []struct {
		path   string
		status int
		want   string
	}{
		{"/jobs?state=DONE", 400, "<code>state</code>"},
		{"/jobs?colour=red", 400, "<code>colour</code>"},
		{"/jobs?item=%FF", 400, "<code>item</code>"},
		{"/jobs?item=%zz", 400, "query string"},
		{"/jobs?limit=0", 400, "<code>limit</code>"},
		{"/jobs?after=nope", 400, "<code>after</code>"},
		{"/stats?group_by=colour", 400, "<code>group_by</code>"},
		{"/stats?since=7d&bucket=month", 400, "<code>bucket</code>"},
		{"/rejected?reason=bored", 400, "<code>reason</code>"},
		{"/rejected?job=42", 400, "<code>job</code>"},
		{"/jobs/" + uuid.NewString(), 404, "knows no job"},
		{"/jobs/not-a-uuid", 404, "36 characters"},
		{"/jobs/" + s.crashed.UUID.String() + "/events", 404, "no page"},
		{"/nope", 404, "no page"},
		{"/static/nope.css", 404, "no asset"},
	} {
		code, body, h := get(t, p, c.path)
		if code != c.status || !strings.Contains(body, c.want) {
			t.Errorf("GET %s: got %d, want %d with %q", c.path, code, c.status, c.want)
		}
		if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
			t.Errorf("GET %s: got Content-Type %q, want HTML", c.path, ct)
		}
	}
	req := httptest.NewRequest(http.MethodPost, "/jobs", nil)
	rec := httptest.NewRecorder()
	p.ServeHTTP(rec, req)
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /jobs: got %d, want 405", rec.Code)
	}
}

// down is a Reader whose database cannot be reached.
type down struct{ web.Reader }

func (down) Job(context.Context, uuid.UUID) (statemachine.Job, error) {
	return statemachine.Job{}, fmt.Errorf("read job: %w", storage.ErrUnavailable)
}
func (down) Search(context.Context, storage.Filter, storage.Page) ([]statemachine.Job, *storage.Cursor, error) {
	return nil, nil, fmt.Errorf("search: %w", storage.ErrUnavailable)
}
func (down) Stats(context.Context, storage.StatsQuery) (storage.StatsResult, error) {
	return storage.StatsResult{}, fmt.Errorf("stats: %w", storage.ErrUnavailable)
}
func (down) Now() time.Time { return time.Now() }

func TestUnavailableDatabaseAnswers503(t *testing.T) {
	t.Parallel()
	s := seed(t)
	p := web.New(web.Config{Reader: down{s.store}})
	defer p.Close()
	for _, path := range []string{"/", "/jobs", "/jobs/" + s.crashed.UUID.String(), "/stats?group_by=state"} {
		code, body, h := get(t, p, path)
		if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" || !strings.Contains(body, "try again") {
			t.Errorf("GET %s: got %d, want 503 with Retry-After", path, code)
		}
	}
	// Closed pages (the server shutting down) count the dashboard no more.
	closed := web.New(web.Config{Reader: s.store})
	closed.Close()
	if code, _, _ := get(t, closed, "/"); code != http.StatusServiceUnavailable {
		t.Errorf("GET / after Close: got %d, want 503", code)
	}
}

func TestUserInputIsEscaped(t *testing.T) {
	t.Parallel()
	s := seed(t)
	p := newPages(t, s, "")
	evil := `"><script>alert(1)</script>`
	for _, path := range []string{
		"/jobs?taskname=" + url.QueryEscape(evil),
		"/jobs?kv.reason=" + url.QueryEscape(evil),
		"/stats?group_by=kv.reason&item=" + url.QueryEscape(evil),
		"/rejected?message_id=" + url.QueryEscape(evil),
		"/jobs/" + s.hostile.UUID.String(),
		"/jobs?state=SCHEDULED",
	} {
		_, body, _ := get(t, p, path)
		if strings.Contains(body, "<script") || strings.Contains(body, "<img") {
			t.Errorf("GET %s: markup from input reached the page", path)
		}
	}
	_, body, _ := get(t, p, "/jobs/"+s.hostile.UUID.String())
	wantIn(t, "hostile job", body, "&lt;script&gt;alert(&#34;task&#34;)&lt;/script&gt;")
}

func TestPagesLoadNothingFromElsewhereAndNeedNoScript(t *testing.T) {
	t.Parallel()
	s := seed(t)
	p := newPages(t, s, "")
	for _, path := range []string{"/", "/jobs", "/jobs/" + s.crashed.UUID.String(), "/stats?state=CRASHED&group_by=cause", "/rejected"} {
		code, body, h := get(t, p, path)
		if code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
		if strings.Contains(body, "<script") || strings.Contains(body, " style=") || strings.Contains(body, "<style") {
			t.Errorf("GET %s: has a script or an inline style", path)
		}
		if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
			t.Errorf("GET %s: Content-Security-Policy %q", path, csp)
		}
		for _, m := range regexp.MustCompile(`<(?:link|img|script|iframe)[^>]*(?:href|src)="([^"]*)"`).FindAllStringSubmatch(body, -1) {
			if !strings.HasPrefix(m[1], "/") || strings.HasPrefix(m[1], "//") {
				t.Errorf("GET %s: loads %q", path, m[1])
			}
		}
	}
	code, css, h := get(t, p, "/static/execdb.css")
	if code != 200 || !strings.Contains(css, "prefers-color-scheme: dark") || !strings.HasPrefix(h.Get("Content-Type"), "text/css") {
		t.Errorf("GET /static/execdb.css: %d %s", code, h.Get("Content-Type"))
	}
	if strings.Contains(css, "url(") || strings.Contains(css, "@import") {
		t.Error("the stylesheet loads something")
	}
}

func TestDashboardCountsOnceAMinute(t *testing.T) {
	t.Parallel()
	s := seed(t)
	r := &countingReader{Reader: s.store}
	r.now.Store(time.Now().UnixNano())
	p := web.New(web.Config{Reader: r, Logger: zaptest.NewLogger(t)})
	defer p.Close()
	asOf := func() string {
		return regexp.MustCompile(`Figures as of <time datetime="([^"]*)"`).FindStringSubmatch(mustGet(t, p, "/"))[1]
	}
	first := asOf()
	counted := r.stats.Load()
	if counted == 0 {
		t.Fatal("the dashboard asked no stats")
	}
	if asOf() != first || r.stats.Load() != counted {
		t.Errorf("a second look within the minute counted again")
	}
	// Two minutes on: the old figures at once, new ones counted in the background.
	r.advance(2 * time.Minute)
	if asOf() != first {
		t.Error("a look after two minutes waited for a new count")
	}
	for deadline := time.Now().Add(10 * time.Second); asOf() == first; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the figures were not counted again")
		}
	}
	// An hour on: figures that old are not shown; the page waits for new ones.
	second := asOf()
	r.advance(time.Hour)
	if third := asOf(); third == second {
		t.Error("a look after an hour showed the hour-old figures")
	}
}

// countingReader counts stats questions and has a clock the test moves.
type countingReader struct {
	web.Reader
	stats atomic.Int64
	now   atomic.Int64
}

func (c *countingReader) Stats(ctx context.Context, q storage.StatsQuery) (storage.StatsResult, error) {
	c.stats.Add(1)
	return c.Reader.Stats(ctx, q)
}

func (c *countingReader) Now() time.Time { return time.Unix(0, c.now.Load()).UTC() }

func (c *countingReader) advance(d time.Duration) { c.now.Add(int64(d)) }

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	for _, c := range []web.Config{
		{},
		{Reader: down{}, BaseURL: "taskotron.example.org/execdb"},
		{Reader: down{}, ResultsDBURL: "ftp://x/y"},
		{Reader: down{}, RunTimeout: -time.Second},
	} {
		if err := c.Validate(); err == nil {
			t.Errorf("%+v: Validate accepted it", c)
		}
	}
	if err := (web.Config{Reader: down{}, BaseURL: base + "/"}).Validate(); err != nil {
		t.Error(err)
	}
	defer func() {
		if recover() == nil {
			t.Error("New accepted a Config without a Reader")
		}
	}()
	web.New(web.Config{})
}

func TestPatternsServeEveryPage(t *testing.T) {
	t.Parallel()
	s := seed(t)
	p := newPages(t, s, "")
	mux := http.NewServeMux()
	for _, pat := range web.Patterns {
		mux.Handle(pat, p)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "api", http.StatusTeapot) })
	srv := httptest.NewServer(mux)
	defer srv.Close()
	for path, want := range map[string]int{"/": 200, "/jobs": 200, "/jobs/" + s.crashed.UUID.String(): 200, "/stats": 200,
		"/stats/retries": 200, "/rejected": 200, "/static/execdb.css": 200, "/jobs/x/y": 404, "/api/v1/jobs": http.StatusTeapot, "/healthz": http.StatusTeapot} {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		if res.StatusCode != want {
			t.Errorf("GET %s: got %d, want %d", path, res.StatusCode, want)
		}
	}
}
