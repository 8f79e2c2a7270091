package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
)

// The request kinds of the HTTP workloads.
const (
	kindCreate = "create"
	kindStart  = "start"
	kindFinish = "finish"
)

var kinds = []string{kindCreate, kindStart, kindFinish}

// The job state a 2xx answer to each kind of request vouches for, as --record writes it.
var answeredState = map[string]string{kindCreate: "SCHEDULED", kindStart: "RUNNING", kindFinish: "CRASHED"}

// httpConfig is what `execdb-load http` is told.
type httpConfig struct {
	server     string
	conns      int
	duration   time.Duration
	count      int
	workload   string
	serverUUID bool
	record     string
	timeout    time.Duration
	jsonOut    bool
}

// runHTTPCommand is `execdb-load http`.
func runHTTPCommand(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("execdb-load http", flag.ContinueOnError)
	var c httpConfig
	fs.StringVar(&c.server, "server", envOr("EXECDB_SERVER", "http://127.0.0.1:5003"), "the execdb serve to load (writes without tokens: loopback only)")
	fs.IntVar(&c.conns, "conns", 8, "concurrent connections, each sending its requests one after the other (keep-alive)")
	fs.DurationVar(&c.duration, "duration", 10*time.Second, "how long to send; a life under way at the end is finished")
	fs.IntVar(&c.count, "count", 0, "send this many creates (creates) or job lives (lives) instead of for --duration")
	fs.StringVar(&c.workload, "workload", "creates", "creates: POST /api/v1/jobs only; lives: create, start, finish CRASHED with keyvals, one job after the other")
	fs.BoolVar(&c.serverUUID, "server-uuid", false, "leave the uuid out of creates, so that ExecDB issues one (default: a random UUIDv4 in the body, like pgbench's gen_random_uuid())")
	fs.StringVar(&c.record, "record", "", "append a line \"<uuid> <state>\" to this file for every 2xx answer (SCHEDULED, RUNNING, CRASHED), for checking after a crash that every answered job is stored")
	fs.DurationVar(&c.timeout, "timeout", 30*time.Second, "give up on one request after this long")
	fs.BoolVar(&c.jsonOut, "json", false, "print the summary as one JSON object on stdout (and the table on stderr)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: execdb-load http [flags]\n\nHTTP write load against a running execdb serve: throughput and latency per kind of request.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("http: unexpected argument %q", fs.Arg(0))
	}
	if c.workload != "creates" && c.workload != "lives" {
		return fmt.Errorf("http: --workload must be creates or lives, got %q", c.workload)
	}
	if c.conns < 1 || c.duration <= 0 && c.count <= 0 {
		return errors.New("http: --conns must be at least 1, and --duration or --count positive")
	}
	c.server = strings.TrimRight(c.server, "/")
	res, err := runHTTP(ctx, c)
	if err != nil {
		return err
	}
	out := io.Writer(os.Stdout)
	if c.jsonOut {
		out = os.Stderr
	}
	res.print(out)
	if c.jsonOut {
		return json.NewEncoder(os.Stdout).Encode(res)
	}
	return nil
}

// httpResult is the summary of one HTTP run; the JSON form is what execdb-perf reads.
type httpResult struct {
	Workload    string  `json:"workload"`
	Server      string  `json:"server"`
	Conns       int     `json:"conns"`
	Elapsed     float64 `json:"elapsed_s"`
	Requests    int     `json:"requests"`       // answered, whatever the status
	OK          int     `json:"ok"`             // answered 2xx
	RequestRate float64 `json:"requests_per_s"` // 2xx answers per second
	// Units are creates (creates) or job lives whose three requests were all answered 2xx (lives).
	Units           int                  `json:"units"`
	UnitRate        float64              `json:"units_per_s"`
	TransportErrors int                  `json:"transport_errors"`
	Kinds           map[string]*kindStat `json:"kinds"`
	All             *kindStat            `json:"all"`
	// Samples are the first answers of each kind and status that were not 2xx, and the first
	// transport errors.
	Samples []string `json:"samples,omitempty"`
}

type kindStat struct {
	Count  int            `json:"count"`
	OK     int            `json:"ok"`
	Status map[string]int `json:"status"`
	Errors int            `json:"transport_errors"`
	P50    float64        `json:"p50_ms"`
	P90    float64        `json:"p90_ms"`
	P99    float64        `json:"p99_ms"`
	Max    float64        `json:"max_ms"`

	lat []time.Duration
}

func (k *kindStat) finish() {
	slices.Sort(k.lat)
	pct := func(p float64) float64 {
		if len(k.lat) == 0 {
			return 0
		}
		return float64(k.lat[min(len(k.lat)-1, int(p*float64(len(k.lat))))]) / float64(time.Millisecond)
	}
	k.P50, k.P90, k.P99, k.Max = pct(0.50), pct(0.90), pct(0.99), pct(1)
}

// worker is one connection's requests; workers merge into the result at the end.
type worker struct {
	c      httpConfig
	client *http.Client
	stats  map[string]*kindStat
	units  int
	rng    *rand.Rand
	rec    *recorder
	seen   *sampler
}

func runHTTP(ctx context.Context, c httpConfig) (*httpResult, error) {
	transport := &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        c.conns,
		MaxIdleConnsPerHost: c.conns,
		MaxConnsPerHost:     c.conns,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, Timeout: c.timeout}

	// One request first, so that a wrong address fails at once rather than as N errors.
	if err := probe(ctx, client, c.server); err != nil {
		return nil, err
	}
	var rec *recorder
	if c.record != "" {
		f, err := os.OpenFile(c.record, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		rec = &recorder{w: bufio.NewWriterSize(f, 1<<16), f: f}
	}
	seen := &sampler{seen: map[string]bool{}}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var issued atomic.Int64
	begin := time.Now()
	deadline := begin.Add(c.duration)
	more := func() bool {
		if ctx.Err() != nil {
			return false
		}
		if c.count > 0 {
			return issued.Add(1) <= int64(c.count)
		}
		return time.Now().Before(deadline)
	}
	workers := make([]*worker, c.conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &worker{c: c, client: client, stats: map[string]*kindStat{}, rec: rec, seen: seen,
			rng: rand.New(rand.NewPCG(rand.Uint64(), uint64(i)))}
		for _, k := range kinds {
			w.stats[k] = &kindStat{Status: map[string]int{}}
		}
		workers[i] = w
		wg.Go(func() { w.run(ctx, more) })
	}
	wg.Wait()
	elapsed := time.Since(begin)
	if rec != nil {
		if err := rec.close(); err != nil {
			return nil, fmt.Errorf("record: %w", err)
		}
	}

	res := &httpResult{Workload: c.workload, Server: c.server, Conns: c.conns, Elapsed: elapsed.Seconds(),
		Kinds: map[string]*kindStat{}, All: &kindStat{Status: map[string]int{}}, Samples: seen.list}
	for _, k := range kinds {
		if c.workload == "creates" && k != kindCreate {
			continue
		}
		res.Kinds[k] = &kindStat{Status: map[string]int{}}
	}
	for _, w := range workers {
		res.Units += w.units
		for name, s := range w.stats {
			into, ok := res.Kinds[name]
			if !ok {
				continue
			}
			for _, t := range []*kindStat{into, res.All} {
				t.Count += s.Count
				t.OK += s.OK
				t.Errors += s.Errors
				for code, n := range s.Status {
					t.Status[code] += n
				}
				t.lat = append(t.lat, s.lat...)
			}
		}
	}
	for _, s := range res.Kinds {
		s.finish()
	}
	res.All.finish()
	res.Requests, res.OK, res.TransportErrors = res.All.Count, res.All.OK, res.All.Errors
	res.RequestRate = float64(res.OK) / elapsed.Seconds()
	res.UnitRate = float64(res.Units) / elapsed.Seconds()
	return res, nil
}

func probe(ctx context.Context, client *http.Client, server string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("http: GET %s/healthz: %s", server, resp.Status)
	}
	return nil
}

var tasks = []string{"rpmlint", "rpmdeplint", "abicheck", "rpmgrill", "python-versions", "upgradepath", "dist.depcheck", "modulelint"}

const (
	startBody  = `{"runner":{"name":"buildbot","jobid":"all/4821","worker":"taskotron-client10-3","url":"https://taskotron.example/builds/4821"}}`
	finishBody = `{"state":"CRASHED","crash":{"notify":"taskotron","cause":"minion","fatal":false,"keyvals":{"step":["MINION_CREATION"],"reason":["TIMED_OUT"]}}}`
)

func (w *worker) run(ctx context.Context, more func() bool) {
	for more() {
		id := uuid.New()
		var body []byte
		task, pkg := tasks[w.rng.IntN(len(tasks))], w.rng.IntN(100000)+1
		if w.c.serverUUID {
			body = fmt.Appendf(nil, `{"taskname":%q,"item":"pkg%d-1.0-1.fc45","item_type":"koji_build","data":{"koji_tag":"f45-updates-testing"}}`, task, pkg)
		} else {
			body = fmt.Appendf(nil, `{"uuid":%q,"taskname":%q,"item":"pkg%d-1.0-1.fc45","item_type":"koji_build","data":{"koji_tag":"f45-updates-testing"}}`, id, task, pkg)
		}
		created, ok := w.do(ctx, kindCreate, "/api/v1/jobs", body, id)
		if !ok {
			continue
		}
		if w.c.workload == "creates" {
			w.units++
			continue
		}
		if w.c.serverUUID {
			id = created
		}
		if _, ok := w.do(ctx, kindStart, "/api/v1/jobs/"+id.String()+"/start", []byte(startBody), id); !ok {
			continue
		}
		if _, ok := w.do(ctx, kindFinish, "/api/v1/jobs/"+id.String()+"/finish", []byte(finishBody), id); !ok {
			continue
		}
		w.units++
	}
}

// do sends one write and reports whether it was answered 2xx; for a create without a uuid
// of ours it returns the uuid ExecDB issued.
func (w *worker) do(ctx context.Context, kind, path string, body []byte, id uuid.UUID) (uuid.UUID, bool) {
	s := w.stats[kind]
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.c.server+path, bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	req.Header.Set("Content-Type", "application/json")
	t0 := time.Now()
	resp, err := w.client.Do(req)
	var answer []byte
	if err == nil {
		answer, err = io.ReadAll(resp.Body)
		resp.Body.Close()
	}
	took := time.Since(t0)
	if err != nil {
		if ctx.Err() != nil {
			return id, false
		}
		s.Errors++
		w.seen.add(kind+" transport error", err.Error())
		// The server is gone (killed, restarting): do not spin.
		time.Sleep(20 * time.Millisecond)
		return id, false
	}
	s.Count++
	s.Status[fmt.Sprint(resp.StatusCode)]++
	s.lat = append(s.lat, took)
	if resp.StatusCode/100 != 2 {
		w.seen.add(fmt.Sprintf("%s %d", kind, resp.StatusCode), string(answer))
		if resp.StatusCode == http.StatusServiceUnavailable {
			time.Sleep(20 * time.Millisecond)
		}
		return id, false
	}
	s.OK++
	if w.c.serverUUID && kind == kindCreate {
		var job struct {
			UUID uuid.UUID `json:"uuid"`
		}
		if json.Unmarshal(answer, &job) != nil {
			w.seen.add("create 2xx without a uuid", string(answer))
			return id, false
		}
		id = job.UUID
	}
	if w.rec != nil {
		w.rec.add(id, answeredState[kind])
	}
	return id, true
}

// recorder writes the jobs answered 2xx.
type recorder struct {
	mu sync.Mutex
	w  *bufio.Writer
	f  *os.File
}

func (r *recorder) add(id uuid.UUID, state string) {
	r.mu.Lock()
	fmt.Fprintf(r.w, "%s %s\n", id, state)
	r.mu.Unlock()
}

func (r *recorder) close() error {
	return errors.Join(r.w.Flush(), r.f.Close())
}

// sampler keeps the first answer of each kind of failure.
type sampler struct {
	mu   sync.Mutex
	seen map[string]bool
	list []string
}

func (s *sampler) add(what, detail string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seen[what] || len(s.list) >= 20 {
		return
	}
	s.seen[what] = true
	if len(detail) > 300 {
		detail = detail[:300] + "…"
	}
	s.list = append(s.list, what+": "+strings.TrimSpace(detail))
}

func (r *httpResult) print(out io.Writer) {
	unit := "creates"
	if r.Workload == "lives" {
		unit = "job lives"
	}
	fmt.Fprintf(out, "http %s against %s, %d connections: %d requests answered in %.2fs (%d 2xx, %d transport errors)\n",
		r.Workload, r.Server, r.Conns, r.Requests, r.Elapsed, r.OK, r.TransportErrors)
	fmt.Fprintf(out, "throughput: %.0f requests/s (2xx), %.0f %s/s\n", r.RequestRate, r.UnitRate, unit)
	fmt.Fprintf(out, "%-7s %8s %8s %9s %9s %9s %9s  %s\n", "kind", "answered", "2xx", "p50 ms", "p90 ms", "p99 ms", "max ms", "status")
	names := make([]string, 0, len(r.Kinds))
	for _, k := range kinds {
		if _, ok := r.Kinds[k]; ok {
			names = append(names, k)
		}
	}
	row := func(name string, s *kindStat) {
		codes := make([]string, 0, len(s.Status))
		for code, n := range s.Status {
			codes = append(codes, fmt.Sprintf("%s×%d", code, n))
		}
		sort.Strings(codes)
		fmt.Fprintf(out, "%-7s %8d %8d %9.2f %9.2f %9.2f %9.2f  %s\n", name, s.Count, s.OK, s.P50, s.P90, s.P99, s.Max, strings.Join(codes, " "))
	}
	for _, k := range names {
		row(k, r.Kinds[k])
	}
	if len(names) > 1 {
		row("all", r.All)
	}
	for _, s := range r.Samples {
		fmt.Fprintln(out, "  first", s)
	}
}
