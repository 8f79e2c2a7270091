package main

import (
	"bufio"
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	amqp "github.com/rabbitmq/amqp091-go"
)

// The pgbench scripts, in two forms (statements/ and cte/): a create is create.sql; a job life
// is create.sql, start.sql and crash.sql run one after the other by the same client, three
// transactions, so that pgbench's "tps" of the lives script counts job lives.
//
//go:embed pgbench/statements/*.sql pgbench/cte/*.sql
var pgbenchFS embed.FS

// writeScripts writes the scripts pgbench runs, by form and workload.
func writeScripts(work string) (map[string]map[string]string, error) {
	paths := map[string]map[string]string{}
	for _, form := range []string{"statements", "cte"} {
		read := func(name string) []byte {
			b, err := pgbenchFS.ReadFile("pgbench/" + form + "/" + name)
			if err != nil {
				panic(err)
			}
			return b
		}
		files := map[string][]byte{
			"creates": read("create.sql"),
			"lives":   bytes.Join([][]byte{read("create.sql"), read("start.sql"), read("crash.sql")}, []byte("\n")),
		}
		paths[form] = map[string]string{}
		for w, b := range files {
			p := filepath.Join(work, "pgbench-"+form+"-"+w+".sql")
			if err := os.WriteFile(p, b, 0o644); err != nil {
				return nil, err
			}
			paths[form][w] = p
		}
	}
	return paths, nil
}

type binaries struct {
	execdb, load string
	execdbFrom   string
}

// build builds execdb (from the working tree or --rev) and execdb-load (from the working tree).
func build(ctx context.Context, c config, work string) (*binaries, error) {
	repo, err := filepath.Abs(c.repo)
	if err != nil {
		return nil, err
	}
	git := func(args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, "git", append([]string{"-C", repo}, args...)...).Output()
		if err != nil {
			return "", fmt.Errorf("git %s: %w", strings.Join(args, " "), err)
		}
		return strings.TrimSpace(string(out)), nil
	}
	b := &binaries{execdb: filepath.Join(work, "execdb"), load: filepath.Join(work, "execdb-load")}
	src := repo
	if c.rev != "" {
		commit, err := git("rev-parse", "--verify", c.rev+"^{commit}")
		if err != nil {
			return nil, err
		}
		src = filepath.Join(work, "src")
		if err := os.Mkdir(src, 0o755); err != nil {
			return nil, err
		}
		archive := exec.CommandContext(ctx, "git", "-C", repo, "archive", commit)
		untar := exec.CommandContext(ctx, "tar", "-x", "-C", src)
		pipe, err := archive.StdoutPipe()
		if err != nil {
			return nil, err
		}
		untar.Stdin = pipe
		if err := untar.Start(); err != nil {
			return nil, err
		}
		if err := archive.Run(); err != nil {
			return nil, fmt.Errorf("git archive %s: %w", commit, err)
		}
		if err := untar.Wait(); err != nil {
			return nil, fmt.Errorf("untar %s: %w", commit, err)
		}
		b.execdbFrom = "commit " + commit
	} else {
		commit, err := git("rev-parse", "HEAD")
		if err != nil {
			return nil, err
		}
		b.execdbFrom = "working tree at " + commit
		if dirty, _ := git("status", "--porcelain", "--untracked-files=no"); dirty != "" {
			b.execdbFrom += " with uncommitted changes"
		}
	}
	gobuild := func(dir, out, pkg string) error {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", out, pkg)
		cmd.Dir = dir
		if msg, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("go build %s in %s: %w\n%s", pkg, dir, err, msg)
		}
		return nil
	}
	fmt.Printf("building execdb (%s) and execdb-load …\n", b.execdbFrom)
	if err := gobuild(src, b.execdb, "./cmd/execdb"); err != nil {
		return nil, err
	}
	if err := gobuild(repo, b.load, "./cmd/execdb-load"); err != nil {
		return nil, err
	}
	return b, nil
}

// scratch creates and drops the scratch databases.
type scratch struct {
	admin   *pgx.Conn
	base    *url.URL
	version string
	created []string
	warned  bool
}

var dbNamePattern = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

func newScratch(ctx context.Context, pgURL string) (*scratch, error) {
	u, err := url.Parse(pgURL)
	if err != nil {
		return nil, fmt.Errorf("--pg-url: %w", err)
	}
	conn, err := pgx.Connect(ctx, pgURL)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", u.Redacted(), err)
	}
	s := &scratch{admin: conn, base: u}
	if err := conn.QueryRow(ctx, "SHOW server_version").Scan(&s.version); err != nil {
		conn.Close(ctx)
		return nil, err
	}
	return s, nil
}

// create drops the database name if it exists and creates it; it returns its URL.
func (s *scratch) create(ctx context.Context, name string) (string, error) {
	if !dbNamePattern.MatchString(name) {
		return "", fmt.Errorf("scratch database name %q: lower-case letters, digits and _ only", name)
	}
	if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop database %s: %w", name, err)
	}
	if _, err := s.admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	s.created = append(s.created, name)
	u := *s.base
	u.Path = "/" + name
	return u.String(), nil
}

func (s *scratch) name(dbURL string) string {
	u, err := url.Parse(dbURL)
	if err != nil {
		return "?"
	}
	return strings.TrimPrefix(u.Path, "/") + " on " + u.Host
}

// checkpoint writes dirty buffers out before a run, so that no run pays for the one before it.
func (s *scratch) checkpoint(ctx context.Context) {
	if _, err := s.admin.Exec(ctx, "CHECKPOINT"); err != nil && !s.warned {
		s.warned = true
		fmt.Fprintln(os.Stderr, "execdb-perf: CHECKPOINT before each run failed (runs go on without):", err)
	}
}

func (s *scratch) close(keep bool) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s.admin.IsClosed() {
		if conn, err := pgx.Connect(ctx, s.base.String()); err == nil {
			s.admin = conn
		}
	}
	for _, name := range s.created {
		if keep {
			fmt.Printf("database kept: %s\n", name)
			continue
		}
		if _, err := s.admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			fmt.Fprintf(os.Stderr, "execdb-perf: drop database %s: %v\n", name, err)
		}
	}
	s.admin.Close(ctx)
}

type pgbenchRun struct {
	Form         string  `json:"form"` // statements or cte
	Script       string  `json:"script"`
	Conns        int     `json:"conns"`
	Seconds      int     `json:"seconds"`
	TPS          float64 `json:"tps"` // script runs/s: creates, or job lives of three transactions
	Transactions int     `json:"transactions"`
	Failed       int     `json:"failed"`
	LatencyAvg   float64 `json:"latency_avg_ms"`
	MachineBusy  float64 `json:"machine_cpu_busy_percent"`
}

var (
	tpsRE       = regexp.MustCompile(`(?m)^tps = ([0-9.]+) \(without initial connection time\)`)
	processedRE = regexp.MustCompile(`(?m)^number of transactions actually processed: (\d+)`)
	failedRE    = regexp.MustCompile(`(?m)^number of failed transactions: (\d+)`)
	latencyRE   = regexp.MustCompile(`(?m)^latency average = ([0-9.]+) ms`)
)

func runPGBench(ctx context.Context, c config, dbURL, script string, conns int) (*pgbenchRun, error) {
	u, err := url.Parse(dbURL)
	if err != nil {
		return nil, err
	}
	secs := max(1, int(math.Round(c.duration.Seconds())))
	args := []string{"-n", "-M", "prepared", "-c", strconv.Itoa(conns), "-j", strconv.Itoa(min(c.threads, conns)),
		"-T", strconv.Itoa(secs), "-f", script}
	if h := u.Hostname(); h != "" {
		args = append(args, "-h", h)
	}
	if p := u.Port(); p != "" {
		args = append(args, "-p", p)
	}
	if u.User != nil && u.User.Username() != "" {
		args = append(args, "-U", u.User.Username())
	}
	args = append(args, strings.TrimPrefix(u.Path, "/"))
	cmd := exec.CommandContext(ctx, c.pgbench, args...)
	cmd.Env = os.Environ()
	if p, ok := u.User.Password(); ok {
		cmd.Env = append(cmd.Env, "PGPASSWORD="+p)
	}
	if m := u.Query().Get("sslmode"); m != "" {
		cmd.Env = append(cmd.Env, "PGSSLMODE="+m)
	}
	m0 := readMachineCPU()
	out, err := cmd.CombinedOutput()
	busy := m0.busyPercent()
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w\n%s", c.pgbench, strings.Join(args, " "), err, tail(out, 2000))
	}
	r := &pgbenchRun{Script: filepath.Base(script), Conns: conns, Seconds: secs, MachineBusy: busy}
	m := tpsRE.FindSubmatch(out)
	if m == nil {
		return nil, fmt.Errorf("no tps in pgbench's output:\n%s", tail(out, 2000))
	}
	r.TPS, _ = strconv.ParseFloat(string(m[1]), 64)
	if m := processedRE.FindSubmatch(out); m != nil {
		r.Transactions, _ = strconv.Atoi(string(m[1]))
	}
	if m := failedRE.FindSubmatch(out); m != nil {
		r.Failed, _ = strconv.Atoi(string(m[1]))
	}
	if m := latencyRE.FindSubmatch(out); m != nil {
		r.LatencyAvg, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	return r, nil
}

func tail(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// httpRun is execdb-load http's JSON summary and what the driver measured around it.
type httpRun struct {
	Workload        string              `json:"workload"`
	Conns           int                 `json:"conns"`
	Elapsed         float64             `json:"elapsed_s"`
	Requests        int                 `json:"requests"`
	OK              int                 `json:"ok"`
	RequestRate     float64             `json:"requests_per_s"`
	Units           int                 `json:"units"`
	UnitRate        float64             `json:"units_per_s"`
	TransportErrors int                 `json:"transport_errors"`
	Kinds           map[string]kindStat `json:"kinds"`
	All             kindStat            `json:"all"`
	Samples         []string            `json:"samples,omitempty"`

	ServeCPU    float64 `json:"serve_cpu_ms_per_request"`
	MachineBusy float64 `json:"machine_cpu_busy_percent"`
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
}

// notOK counts the answers that were not 2xx, by status.
func (h *httpRun) notOK() map[string]int {
	m := map[string]int{}
	for code, n := range h.All.Status {
		if !strings.HasPrefix(code, "2") {
			m[code] += n
		}
	}
	return m
}

func (h *httpRun) trouble() string {
	var parts []string
	for code, n := range h.notOK() {
		parts = append(parts, fmt.Sprintf("%d× %s", n, code))
	}
	if h.TransportErrors > 0 {
		parts = append(parts, fmt.Sprintf("%d transport errors", h.TransportErrors))
	}
	if len(parts) == 0 {
		return ""
	}
	sort.Strings(parts)
	return "  NOT 2xx: " + strings.Join(parts, ", ")
}

func runHTTP(ctx context.Context, load string, s *serve, workload string, conns int, d time.Duration, record string) (*httpRun, error) {
	args := []string{"http", "--server", s.url(), "--conns", strconv.Itoa(conns), "--duration", d.String(),
		"--workload", workload, "--json"}
	if record != "" {
		args = append(args, "--record", record)
	}
	cpu0, m0 := s.cpu(), readMachineCPU()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, load, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	busy := m0.busyPercent()
	cpu := s.cpu() - cpu0
	s.notePeak()
	if err != nil {
		return nil, fmt.Errorf("execdb-load %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.Bytes(), 2000))
	}
	h := &httpRun{}
	if err := json.Unmarshal(stdout.Bytes(), h); err != nil {
		return nil, fmt.Errorf("execdb-load's summary: %w", err)
	}
	h.MachineBusy = busy
	if h.OK > 0 {
		h.ServeCPU = float64(cpu) / float64(time.Millisecond) / float64(h.OK)
	}
	return h, nil
}

// busRun is execdb-load's JSON summary of a bus run.
type busRun struct {
	Mode        string  `json:"mode"`
	Jobs        int     `json:"jobs"`
	Messages    int     `json:"messages"`
	PublishRate float64 `json:"published_per_s"`
	Elapsed     float64 `json:"elapsed_s"`
	AppliedRate float64 `json:"applied_per_s"`
	LifeRate    float64 `json:"lives_per_s"`
	Latency     struct {
		P50 float64 `json:"p50_ms"`
		P90 float64 `json:"p90_ms"`
		P99 float64 `json:"p99_ms"`
		Max float64 `json:"max_ms"`
	} `json:"latency"`
	ServeCPU    float64 `json:"serve_cpu_ms_per_message,omitempty"`
	MachineBusy float64 `json:"machine_cpu_busy_percent"`
}

// runBus publishes jobs job lives under prefix: to ExecDB (s) or, with nullQueue, to the null
// pipeline.
func runBus(ctx context.Context, load, amqpURL, prefix, nullQueue string, jobs int, s *serve) (*busRun, error) {
	args := []string{"--amqp-url", amqpURL, "--topic-prefix", prefix, "--jobs", strconv.Itoa(jobs), "--json", "--timeout", "5m"}
	if nullQueue != "" {
		args = append(args, "--null-pipeline", "--null-queue", nullQueue)
	}
	var cpu0 time.Duration
	if s != nil {
		cpu0 = s.cpu()
	}
	m0 := readMachineCPU()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, load, args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	busy := m0.busyPercent()
	if err != nil {
		return nil, fmt.Errorf("execdb-load %s: %w\n%s", strings.Join(args, " "), err, tail(stderr.Bytes(), 2000))
	}
	r := &busRun{}
	if err := json.Unmarshal(stdout.Bytes(), r); err != nil {
		return nil, fmt.Errorf("execdb-load's summary: %w", err)
	}
	r.MachineBusy = busy
	if s != nil {
		s.notePeak()
		r.ServeCPU = float64(s.cpu()-cpu0) / float64(time.Millisecond) / float64(r.Messages)
	}
	return r, nil
}

// killResult is a kill -9 in the middle of an HTTP run and the check afterwards.
type killResult struct {
	Serve       string         `json:"serve"`
	Load        *httpRun       `json:"load"`
	KilledAfter float64        `json:"killed_after_s"`
	BackAfter   float64        `json:"back_after_s"` // from the kill to /readyz answering 200 again
	Answered    map[string]int `json:"answered"`     // jobs answered 2xx, by the last state vouched for
	Jobs        int            `json:"jobs"`
	Missing     int            `json:"missing"` // answered 2xx, not found after the restart
	Behind      int            `json:"behind"`  // found in an earlier state than an answer vouched for
	Examples    []string       `json:"examples,omitempty"`
}

var stateRank = map[string]int{"SCHEDULED": 1, "RUNNING": 2, "FINISHED": 3, "CRASHED": 3}

// killRun runs HTTP job lives at conns connections for twice d, kills serve with SIGKILL after
// d, starts it again at once on the same address, and then asks the restarted serve for every
// job that was answered 2xx.
func killRun(ctx context.Context, load string, s *serve, conns int, d time.Duration, work string) (*killResult, error) {
	k := &killResult{Serve: s.name, KilledAfter: d.Seconds()}
	record := filepath.Join(work, "kill-"+strings.ToLower(s.name)+".txt")
	fmt.Printf("\nkill -9: HTTP lives @%d on %s for %s, serve killed after %s and restarted …\n", conns, s.name, 2*d, d)
	type outcome struct {
		h   *httpRun
		err error
	}
	done := make(chan outcome, 1)
	go func() {
		h, err := runHTTP(ctx, load, s, "lives", conns, 2*d, record)
		done <- outcome{h, err}
	}()
	select {
	case <-time.After(d):
	case o := <-done:
		return k, fmt.Errorf("the load ended before the kill: %v", o.err)
	case <-ctx.Done():
		return k, ctx.Err()
	}
	t0 := time.Now()
	s.kill9()
	if err := s.start(ctx); err != nil {
		<-done
		return k, fmt.Errorf("restart: %w", err)
	}
	k.BackAfter = time.Since(t0).Seconds()
	o := <-done
	if o.err != nil {
		return k, o.err
	}
	k.Load = o.h
	if err := k.check(ctx, s, record); err != nil {
		return k, err
	}
	fmt.Printf("kill -9 %s: %d jobs answered 2xx (%s); after the restart %d missing, %d in an earlier state; serve ready again %.1fs after the kill%s\n",
		s.name, k.Jobs, fmtCounts(k.Answered), k.Missing, k.Behind, k.BackAfter, k.Load.trouble())
	for _, e := range k.Examples {
		fmt.Println("  ", e)
	}
	return k, nil
}

func (k *killResult) check(ctx context.Context, s *serve, record string) error {
	f, err := os.Open(record)
	if err != nil {
		return err
	}
	defer f.Close()
	want := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		id, state, ok := strings.Cut(sc.Text(), " ")
		if ok && stateRank[state] > stateRank[want[id]] {
			want[id] = state
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	k.Answered = map[string]int{}
	ids := make(chan string)
	var mu sync.Mutex
	var firstErr error
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for id := range ids {
				got, err := jobState(ctx, client, s.url(), id)
				mu.Lock()
				switch {
				case err != nil:
					if firstErr == nil {
						firstErr = err
					}
				case got == "":
					k.Missing++
					if len(k.Examples) < 5 {
						k.Examples = append(k.Examples, fmt.Sprintf("missing: %s answered %s", id, want[id]))
					}
				case stateRank[got] < stateRank[want[id]]:
					k.Behind++
					if len(k.Examples) < 5 {
						k.Examples = append(k.Examples, fmt.Sprintf("behind: %s answered %s, stored %s", id, want[id], got))
					}
				}
				mu.Unlock()
			}
		})
	}
	for id, state := range want {
		k.Answered[state]++
		ids <- id
	}
	close(ids)
	wg.Wait()
	k.Jobs = len(want)
	return firstErr
}

// jobState is the state of job id, "" when ExecDB does not know it.
func jobState(ctx context.Context, client *http.Client, server, id string) (string, error) {
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, server+"/api/v1/jobs/"+id, nil)
		if err != nil {
			return "", err
		}
		resp, err := client.Do(req)
		if err == nil {
			var job struct {
				State string `json:"state"`
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch {
			case resp.StatusCode == http.StatusNotFound:
				return "", nil
			case resp.StatusCode == http.StatusOK:
				if err := json.Unmarshal(body, &job); err != nil {
					return "", fmt.Errorf("GET job %s: %w", id, err)
				}
				return job.State, nil
			}
			err = fmt.Errorf("GET job %s: %s: %s", id, resp.Status, body)
		}
		if attempt == 5 {
			return "", err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func fmtCounts(m map[string]int) string {
	var parts []string
	for _, s := range []string{"SCHEDULED", "RUNNING", "CRASHED"} {
		if m[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d left %s", m[s], s))
		}
	}
	return strings.Join(parts, ", ")
}

// deleteQueues deletes the queue serve declared and its dead-letter queue and exchange.
func deleteQueues(amqpURL, queue string) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		fmt.Fprintf(os.Stderr, "execdb-perf: delete queue %s: %v\n", queue, err)
		return
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "execdb-perf: delete queue %s: %v\n", queue, err)
		return
	}
	defer ch.Close()
	var errs []error
	for _, q := range []string{queue, queue + ".rejected"} {
		if _, err := ch.QueueDelete(q, false, false, false); err != nil {
			errs = append(errs, err)
		}
	}
	if err := ch.ExchangeDelete(queue+".dlx", false, false); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintf(os.Stderr, "execdb-perf: delete queue %s: %v\n", queue, err)
	}
}

func rabbitVersion(amqpURL string) (string, error) {
	conn, err := amqp.Dial(amqpURL)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	v, _ := conn.Properties["version"].(string)
	return v, nil
}

func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil {
		return u.Redacted()
	}
	return "?"
}

func pgbenchVersion(bin string) string {
	out, err := exec.Command(bin, "--version").Output()
	if err != nil {
		return "not found: " + err.Error()
	}
	return strings.TrimSpace(string(out))
}

func machineFacts() map[string]string {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "load_at_start": loadAvg()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if rest, ok := strings.CutPrefix(line, "model name"); ok {
				m["cpu"] = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(rest), ":"))
				break
			}
		}
	}
	if kb, err := procMemTotalKB(); err == nil {
		m["memory"] = fmt.Sprintf("%.0f GiB", float64(kb)/(1<<20))
	}
	if out, err := exec.Command("go", "version").Output(); err == nil {
		m["go"] = strings.TrimSpace(string(out))
	}
	return m
}

func procMemTotalKB() (int, error) {
	b, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, errors.New("no MemTotal")
}
