package web_test

import (
	"context"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	apiquery "github.com/fedora-qa/execdb/api/query"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/web"
	"go.uber.org/zap/zaptest"
)

// chromium is Debian's Chromium, which .ci/run installs.
const chromium = "/usr/bin/chromium"

// site is ExecDB's pages behind a reverse proxy that serves them under /execdb and strips it,
// as Apache or nginx would. EXECDB_BASE_URL is the public name, https://taskotron.example.org/execdb:
// the pages' links carry its path only, so they work through the proxy on 127.0.0.1 too.
type site struct {
	base  string // http://127.0.0.1:port/execdb
	seed  *seeded
	pages *web.Pages
}

// publicBase is EXECDB_BASE_URL of the site.
const publicBase = "https://taskotron.example.org/execdb"

// apiRoute matches the API paths the pages link to; the test serves a stand-in for them,
// since the API is not this package's.
var apiRoute = regexp.MustCompile(`^/api/v1/(jobs(/[0-9a-f-]{36}(/events)?)?|stats(/retries)?|rejected)$`)

func newSite(t *testing.T) *site {
	t.Helper()
	s := &site{seed: seed(t)}
	backend := httptest.NewUnstartedServer(nil)
	proxy := httptest.NewServer(nil)
	t.Cleanup(proxy.Close)
	s.base = proxy.URL + "/execdb"
	s.pages = web.New(web.Config{Reader: s.seed.store, BaseURL: publicBase, Logger: zaptest.NewLogger(t),
		ResultsDBURL: "https://resultsdb.example.org/api/v2.0"})
	t.Cleanup(s.pages.Close)
	mux := http.NewServeMux()
	for _, p := range web.Patterns {
		mux.Handle(p, s.pages)
	}
	mux.HandleFunc("GET /api/v1/", func(w http.ResponseWriter, r *http.Request) {
		if !apiRoute.MatchString(r.URL.Path) {
			http.Error(w, `{"error": {"status": 404}}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		io.WriteString(w, `{"data": []}`)
	})
	backend.Config.Handler = mux
	backend.Start()
	t.Cleanup(backend.Close)
	target, _ := url.Parse(backend.URL)
	rp := &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		r.SetURL(target)
		r.SetXForwarded()
	}}
	proxy.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rest, ok := strings.CutPrefix(r.URL.Path, "/execdb")
		if !ok || (rest != "" && !strings.HasPrefix(rest, "/")) {
			http.Error(w, "the proxy serves ExecDB under /execdb only", http.StatusNotFound)
			return
		}
		if rest == "" {
			rest = "/"
		}
		r.URL.Path, r.URL.RawPath = rest, ""
		rp.ServeHTTP(w, r)
	})
	return s
}

// browser starts Chromium, headless, with JavaScript off in its tab: the pages must work
// without it. It records every request the pages make.
type browser struct {
	ctx      context.Context
	mu       sync.Mutex
	requests []string
	failed   []string // responses of 400 and above
	shots    []string // directories screenshots go to
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf // .ci/run installs Chromium: in CI this test must not skip
	}
	if _, err := os.Stat(chromium); err != nil {
		skip("%s is not installed: apt-get install chromium (Debian) to run the browser tests", chromium)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium),
		chromedp.Headless,
		chromedp.NoSandbox, // as root
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-domain-reliability", true),
		chromedp.Flag("no-pings", true),
		chromedp.Flag("hide-scrollbars", true),
		chromedp.Flag("lang", "en-US"),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() {
		cancelTimeout()
		cancel()
		cancelAlloc()
	})
	b := &browser{ctx: ctx, shots: []string{t.TempDir()}}
	if dir := os.Getenv("EXECDB_SCREENSHOTS"); dir != "" {
		b.shots = append(b.shots, dir)
	}
	if err := chromedp.Listen(ctx, func(ev any) {
		b.mu.Lock()
		defer b.mu.Unlock()
		switch ev := ev.(type) {
		case *network.EventRequestWillBeSent:
			b.requests = append(b.requests, ev.Request.URL)
		case *network.EventResponseReceived:
			if ev.Response.Status >= 400 {
				b.failed = append(b.failed, fmt.Sprintf("%d %s", ev.Response.Status, ev.Response.URL))
			}
		}
	}); err != nil {
		t.Fatalf("start %s: %v", chromium, err)
	}
	if _, err := chromedp.Call(ctx, network.Enable, network.EnableParams{}); err != nil {
		t.Fatal(err)
	}
	if _, err := chromedp.Call(ctx, emulation.SetScriptExecutionDisabled, emulation.SetScriptExecutionDisabledParams{Value: true}); err != nil {
		t.Fatal(err)
	}
	return b
}

func (b *browser) open(t *testing.T, u string) {
	t.Helper()
	res, err := chromedp.Run(b.ctx, chromedp.NavigateResponse(u))
	if err != nil {
		t.Fatalf("open %s: %v", u, err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("open %s: got %d, want 200", u, res.Status)
	}
}

// click follows a link or submits a form by clicking it, and waits for the page it opens.
func (b *browser) click(t *testing.T, sel string) {
	t.Helper()
	res, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	if res.Status != http.StatusOK {
		t.Fatalf("click %s: %s answered %d", sel, res.URL, res.Status)
	}
}

func (b *browser) location(t *testing.T) string {
	t.Helper()
	loc, err := chromedp.Run(b.ctx, chromedp.Location())
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// text is the text of the first element sel matches.
func (b *browser) text(t *testing.T, sel string) string {
	t.Helper()
	s, err := chromedp.Run(b.ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// texts is the text of every element sel matches, none if none does.
func (b *browser) texts(t *testing.T, sel string) []string {
	t.Helper()
	nodes, err := chromedp.Run(b.ctx, chromedp.Nodes(chromedp.CSSAll(sel), chromedp.AtLeast(0)))
	if err != nil {
		t.Fatalf("nodes %s: %v", sel, err)
	}
	var out []string
	for _, n := range nodes {
		s, err := chromedp.Run(b.ctx, chromedp.TextContent(chromedp.NodeIDs{n.NodeID}))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		out = append(out, strings.TrimSpace(s))
	}
	return out
}

// attrs is the attribute name of every element sel matches.
func (b *browser) attrs(t *testing.T, sel, name string) []string {
	t.Helper()
	nodes, err := chromedp.Run(b.ctx, chromedp.Nodes(chromedp.CSSAll(sel), chromedp.AtLeast(0)))
	if err != nil {
		t.Fatalf("nodes %s: %v", sel, err)
	}
	var out []string
	for _, n := range nodes {
		out = append(out, n.AttributeValue(name))
	}
	return out
}

// screenshot writes a PNG of the whole page.
func (b *browser) screenshot(t *testing.T, name string) {
	t.Helper()
	b.shot(t, name, chromedp.FullScreenshot(100))
}

func (b *browser) shot(t *testing.T, name string, capture chromedp.Action[[]byte]) {
	t.Helper()
	png, err := chromedp.Run(b.ctx, capture)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	for _, dir := range b.shots {
		if err := os.WriteFile(filepath.Join(dir, name), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func (b *browser) viewport(t *testing.T, width, height int64, mobile bool) {
	t.Helper()
	if _, err := chromedp.Call(b.ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: width, Height: height, DeviceScaleFactor: 1, Mobile: mobile}); err != nil {
		t.Fatal(err)
	}
}

// TestBrowser opens the pages in Chromium as a person would, behind a proxy that serves them
// under /execdb, with JavaScript off: the dashboard, the job page a ResultsDB link points to,
// the search form, paging, the T833 question from the dashboard, the rejected messages, a
// phone's screen. No request may leave the host, and no page or asset may fail.
func TestBrowser(t *testing.T) {
	t.Parallel()
	b := newBrowser(t)
	s := newSite(t)
	start := time.Now()

	t.Run("dashboard", func(t *testing.T) {
		b.open(t, s.base+"/")
		if h := b.text(t, "h1"); h != "Dashboard" {
			t.Errorf("got heading %q", h)
		}
		tiles := b.texts(t, ".tiles a")
		if len(tiles) != 6 {
			t.Fatalf("got tiles %q, want 4 now and 2 near the timeouts", tiles)
		}
		if !strings.HasPrefix(tiles[1], "2") || !strings.Contains(tiles[1], "running") {
			t.Errorf("got %q, want 2 running", tiles[1])
		}
		if !strings.HasPrefix(tiles[4], "1") || !strings.HasPrefix(tiles[5], "1") {
			t.Errorf("got near the timeouts %q %q, want 1 running and 1 scheduled", tiles[4], tiles[5])
		}
		if n := len(b.attrs(t, "svg.lines circle", "cx")); n < 5*30 {
			t.Errorf("the chart has %d points, want a day of 5 causes for 30 days", n)
		}
		b.screenshot(t, "dashboard.png")
	})

	t.Run("job a ResultsDB link points to", func(t *testing.T) {
		b.open(t, s.base+"/jobs/"+s.seed.crashed.UUID.String())
		body := b.text(t, "main")
		for _, want := range []string{"htop-3.3.0-1.fc45", "MINION_CREATION", "TIMED_OUT", "taskotron-client10-3",
			"execdb job reschedule " + s.seed.crashed.UUID.String(), "Authorization: Bearer $EXECDB_TOKEN", "export EXECDB_SERVER=" + publicBase} {
			if !strings.Contains(body, want) {
				t.Errorf("the job page lacks %q", want)
			}
		}
		if n := len(b.texts(t, "ol.timeline > li")); n != 4 {
			t.Errorf("got %d history entries, want create, start, end and the rejected end", n)
		}
		if links := b.attrs(t, `a[href^="https://resultsdb.example.org/api/v2.0/results?groups="]`, "href"); len(links) != 1 {
			t.Errorf("got ResultsDB links %q, want one", links)
		}
		b.screenshot(t, "job-crashed.png")
	})

	t.Run("search form filters", func(t *testing.T) {
		b.open(t, s.base+"/jobs?since=30d")
		b.screenshot(t, "jobs.png")
		b.open(t, s.base+"/jobs")
		if err := chromedp.Do(b.ctx,
			chromedp.Click(chromedp.CSS(`input[name="state"][value="CRASHED"]`)),
			chromedp.SendKeys(chromedp.ID("f-taskname"), "rpmlint"),
			chromedp.SendKeys(chromedp.ID("cond-1"), "kv.reason"),
			chromedp.SendKeys(chromedp.ID("value-1"), "TIMED_OUT"),
		); err != nil {
			t.Fatal(err)
		}
		b.click(t, "form.search button[type=submit]")
		loc := b.location(t)
		if want := s.base + "/jobs?kv.reason=TIMED_OUT&state=CRASHED&taskname=rpmlint"; loc != want {
			t.Errorf("got %s, want the API's query %s", loc, want)
		}
		want := s.count(t, "kv.reason=TIMED_OUT&state=CRASHED&taskname=rpmlint")
		tasks := b.texts(t, "table.jobs tbody td[data-label=Task]")
		states := b.texts(t, "table.jobs tbody td[data-label=State] .state")
		if len(tasks) != want || want < 1 {
			t.Errorf("got %d rows, want %d", len(tasks), want)
		}
		for i := range tasks {
			if tasks[i] != "rpmlint" || states[i] != "CRASHED" {
				t.Errorf("row %d: got %s %s, want rpmlint CRASHED", i, tasks[i], states[i])
			}
		}
		if checked := b.attrs(t, `input[name="state"][checked]`, "value"); !slices.Equal(checked, []string{"CRASHED"}) {
			t.Errorf("the form shows states %q checked, want CRASHED", checked)
		}
	})

	t.Run("paging walks every job", func(t *testing.T) {
		b.open(t, s.base+"/jobs?limit=9")
		seen := map[string]bool{}
		for pages := 1; ; pages++ {
			for _, href := range b.attrs(t, "table.jobs a.uuid", "href") {
				if seen[href] {
					t.Fatalf("page %d lists %s again", pages, href)
				}
				seen[href] = true
			}
			if len(b.attrs(t, `a[rel="next"]`, "href")) == 0 {
				break
			}
			if pages > 30 {
				t.Fatal("paging does not end")
			}
			b.click(t, `a[rel="next"]`)
		}
		if len(seen) != s.seed.all {
			t.Errorf("walked %d jobs, want %d", len(seen), s.seed.all)
		}
	})

	t.Run("T833 from the dashboard", func(t *testing.T) {
		b.open(t, s.base+"/")
		b.click(t, `a[href*="kv.step=MINION_CREATION"][href*="group_by=kv.reason"]`)
		loc, _ := url.Parse(b.location(t))
		q := loc.Query()
		if loc.Path != "/execdb/stats" || q.Get("state") != "CRASHED" || q.Get("cause") != "minion" || q.Get("kv.step") != "MINION_CREATION" ||
			q.Get("since") != "30d" || q.Get("group_by") != "kv.reason" {
			t.Errorf("got %s, want the T833 question on /stats", loc)
		}
		reasons := b.texts(t, "table.stats tbody tr td:first-child")
		slices.Sort(reasons)
		if !slices.Equal(reasons, []string{"BACKING_STORE_LINKING", "NO_SPACE", "TIMED_OUT"}) {
			t.Errorf("got reasons %q", reasons)
		}
		if n := len(b.attrs(t, "svg.bars rect.s0", "width")); n != 3 {
			t.Errorf("got %d bars, want 3", n)
		}
		b.screenshot(t, "stats-t833.png")
		b.open(t, s.base+"/stats?state=CRASHED&since=30d&group_by=cause&bucket=day")
		if n := len(b.texts(t, "svg.lines g.series")); n != 3 {
			t.Errorf("got %d lines, want minion, network and task", n)
		}
		b.screenshot(t, "stats-lines.png")
		b.click(t, `a[href*="/execdb/stats/retries?"]`)
		if n := len(b.texts(t, "table.stats tbody tr")); n != 1 {
			t.Errorf("got %d rows of retries, want the network crashes'", n)
		}
		b.screenshot(t, "retries.png")
	})

	t.Run("rejected", func(t *testing.T) {
		b.open(t, s.base+"/rejected")
		if n := len(b.texts(t, "table.rejected tbody tr:not(.body)")); n != s.seed.rejected {
			t.Errorf("got %d rejected messages, want %d", n, s.seed.rejected)
		}
		if err := chromedp.Do(b.ctx, chromedp.SendKeys(chromedp.ID("f-message_id"), "rej-schema")); err != nil {
			t.Fatal(err)
		}
		b.click(t, "form.search button[type=submit]")
		ids := b.texts(t, "table.rejected code.msgid")
		if !slices.Equal(ids, []string{"rej-schema"}) {
			t.Errorf("got %q, want rej-schema", ids)
		}
		if !strings.HasSuffix(b.location(t), "/execdb/rejected?message_id=rej-schema") {
			t.Errorf("got %s", b.location(t))
		}
		b.click(t, "table.rejected a.uuid")
		if !strings.Contains(b.location(t), s.seed.crashed.UUID.String()) {
			t.Errorf("the job link of the rejected message led to %s", b.location(t))
		}
		b.open(t, s.base+"/rejected")
		b.screenshot(t, "rejected.png")
	})

	t.Run("lineage", func(t *testing.T) {
		b.open(t, s.base+"/jobs/"+s.seed.chain[0].String())
		b.click(t, "ol.lineage li:last-child a")
		if !strings.HasSuffix(b.location(t), s.seed.chain[2].String()) {
			t.Errorf("the last attempt's link led to %s", b.location(t))
		}
		if got := b.texts(t, "ol.lineage li"); len(got) != 3 {
			t.Errorf("got attempts %q, want 3", got)
		}
	})

	t.Run("phone", func(t *testing.T) {
		b.viewport(t, 375, 812, true)
		defer b.viewport(t, 1280, 900, false)
		for _, page := range []struct{ path, shot string }{
			{"/", "dashboard-phone.png"},
			{"/jobs?state=CRASHED", "jobs-phone.png"},
			{"/jobs/" + s.seed.crashed.UUID.String(), "job-phone.png"},
		} {
			b.open(t, s.base+page.path)
			// Nothing is wider than the screen: the page does not scroll sideways.
			box, err := chromedp.Run(b.ctx, chromedp.Dimensions(chromedp.CSS("main")))
			if err != nil {
				t.Fatal(err)
			}
			if w := box.Width; w > 375 {
				t.Errorf("%s: main is %d px wide on a 375 px screen", page.path, w)
			}
			b.shot(t, page.shot, chromedp.CaptureScreenshot()) // the first screen, as a phone shows it
		}
	})

	t.Run("dark", func(t *testing.T) {
		dark := func(on bool) {
			p := emulation.SetEmulatedMediaParams{Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: "light"}}}
			if on {
				p.Features[0].Value = "dark"
			}
			if _, err := chromedp.Call(b.ctx, emulation.SetEmulatedMedia, p); err != nil {
				t.Fatal(err)
			}
		}
		dark(true)
		defer dark(false)
		b.open(t, s.base+"/jobs/"+s.seed.crashed.UUID.String())
		styles, err := chromedp.Run(b.ctx, chromedp.ComputedStyle(chromedp.CSS("body")))
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range styles {
			if st.Name == "background-color" && st.Value != "rgb(13, 17, 23)" {
				t.Errorf("got a %s background in the dark, want rgb(13, 17, 23)", st.Value)
			}
		}
		b.screenshot(t, "job-dark.png")
	})

	t.Run("keyboard", func(t *testing.T) {
		// Tab reaches the skip link first, then the navigation; Enter follows a focused link.
		b.open(t, s.base+"/")
		focused := func() string {
			v, err := chromedp.Run(b.ctx, chromedp.Evaluate[string](`document.activeElement.textContent`))
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(v)
		}
		var got []string
		for range 4 {
			if err := chromedp.Do(b.ctx, chromedp.KeyEvent("\t")); err != nil {
				t.Fatal(err)
			}
			got = append(got, focused())
		}
		if want := []string{"Skip to content", "ExecDB", "Dashboard", "Jobs"}; !slices.Equal(got, want) {
			t.Fatalf("Tab went through %q, want %q", got, want)
		}
		if _, err := chromedp.RunResponse(b.ctx, chromedp.KeyEvent("\r")); err != nil {
			t.Fatal(err)
		}
		if !strings.HasSuffix(b.location(t), "/execdb/jobs") {
			t.Errorf("Enter on Jobs led to %s", b.location(t))
		}
	})

	t.Run("every link resolves", func(t *testing.T) {
		s.crawl(t)
	})

	t.Run("no request left the host", func(t *testing.T) {
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.requests) < 20 {
			t.Fatalf("recorded %d requests: is the recording broken?", len(b.requests))
		}
		for _, r := range b.requests {
			u, err := url.Parse(r)
			if err != nil || (u.Scheme != "data" && u.Hostname() != "127.0.0.1") {
				t.Errorf("a page asked %s", r)
			}
		}
		for _, f := range b.failed {
			t.Errorf("a page got %s", f)
		}
	})
	t.Logf("browser tests took %s", time.Since(start).Round(time.Millisecond))
}

// count is how many jobs a search matches, asked of the store directly.
func (s *site) count(t *testing.T, raw string) int {
	t.Helper()
	v, _ := url.ParseQuery(raw)
	f, err := apiquery.ParseFilter(v, s.seed.store.Now())
	if err != nil {
		t.Fatal(err)
	}
	jobs, _, err := s.seed.store.Search(context.Background(), f, storage.Page{Limit: storage.MaxLimit})
	if err != nil {
		t.Fatal(err)
	}
	return len(jobs)
}

// crawl follows every link and form action of every page under the base URL, through the
// proxy, from the dashboard: none may fail, every one must be under the base, and no page may
// have a script. Links elsewhere (builds, logs, ResultsDB) are left alone.
func (s *site) crawl(t *testing.T) {
	t.Helper()
	origin, _ := url.Parse(s.base)
	queue := []string{s.base + "/"}
	seen := map[string]bool{queue[0]: true}
	pages := 0
	for len(queue) > 0 && pages < 3000 {
		u := queue[0]
		queue = queue[1:]
		pages++
		res, err := http.Get(u)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != http.StatusOK {
			t.Errorf("GET %s: %d", u, res.StatusCode)
			continue
		}
		if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
			continue
		}
		if strings.Contains(string(body), "<script") {
			t.Errorf("%s has a script", u)
		}
		for _, m := range regexp.MustCompile(`\b(href|src|action)="([^"]*)"`).FindAllStringSubmatch(string(body), -1) {
			raw := html.UnescapeString(m[2])
			if strings.HasPrefix(raw, "#") {
				continue
			}
			ref, err := url.Parse(raw)
			if err != nil {
				t.Errorf("%s: link %q: %v", u, raw, err)
				continue
			}
			if ref.Host != "" && ref.Host != origin.Host {
				continue // elsewhere on purpose: a build, a log, ResultsDB
			}
			if !strings.HasPrefix(ref.Path, "/execdb/") {
				t.Errorf("%s: link %q is not under the base URL", u, raw)
				continue
			}
			abs := origin.ResolveReference(ref)
			abs.Fragment = ""
			if strings.HasPrefix(abs.Path, "/execdb/api/") {
				if !apiRoute.MatchString(strings.TrimPrefix(abs.Path, "/execdb")) {
					t.Errorf("%s: link %q is no API route", u, raw)
				}
				continue
			}
			if !seen[abs.String()] {
				seen[abs.String()] = true
				queue = append(queue, abs.String())
			}
		}
	}
	if len(queue) > 0 {
		t.Errorf("the crawl stopped after %d pages with %d to go", pages, len(queue))
	}
	if pages < 50 {
		t.Errorf("crawled only %d pages", pages)
	}
	t.Logf("crawled %d pages and assets", pages)
}
