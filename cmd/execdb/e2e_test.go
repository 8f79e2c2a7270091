package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/storage/postgres"
	"github.com/google/uuid"
	_ "modernc.org/sqlite"
)

// End-to-end tests of the execdb binary: built once, run as a separate process, driven over
// HTTP and through the client commands.

var (
	buildOnce sync.Once
	binary    string
	buildErr  error
)

func execdbBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "execdb-e2e")
		if err != nil {
			buildErr = err
			return
		}
		binary = filepath.Join(dir, "execdb")
		out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput()
		if err != nil {
			buildErr = &buildError{out: string(out), err: err}
		}
	})
	if buildErr != nil {
		t.Fatalf("build execdb: %v", buildErr)
	}
	return binary
}

type buildError struct {
	out string
	err error
}

func (e *buildError) Error() string { return e.err.Error() + "\n" + e.out }

// serveProcess is a running `execdb serve` process.
type serveProcess struct {
	cmd  *exec.Cmd
	url  string
	logs *syncBuffer
	done chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startServer runs `execdb serve` on a free loopback port with the given database and waits
// until it answers.
func startServer(t *testing.T, db string, extra ...string) *serveProcess {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := ln.Addr().String()
	ln.Close()
	args := append([]string{"serve", "--db", db, "--listen", listen}, extra...)
	cmd := exec.Command(execdbBinary(t), args...)
	cmd.Env = append(os.Environ(), "EXECDB_LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &serveProcess{cmd: cmd, logs: &syncBuffer{}, done: make(chan error, 1), url: "http://" + listen}
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			s.logs.Write([]byte(sc.Text() + "\n"))
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() { s.done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			<-s.done
		}
	})
	deadline := time.After(60 * time.Second)
	for {
		if resp, err := http.Get(s.url + "/healthz"); err == nil {
			resp.Body.Close()
			return s
		}
		select {
		case err := <-s.done:
			t.Fatalf("execdb serve exited: %v\n%s", err, s.logs)
		case <-deadline:
			t.Fatalf("execdb serve did not start listening\n%s", s.logs)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (s *serveProcess) kill9(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-s.done
}

func httpDo(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// databases are the EXECDB_DB values the end-to-end tests run on: SQLite always, PostgreSQL
// when the test database is configured.
func databases(t *testing.T) map[string]func(t *testing.T) string {
	return map[string]func(t *testing.T) string{
		"sqlite":   func(t *testing.T) string { return "sqlite:" + filepath.Join(t.TempDir(), "execdb.db") },
		"postgres": func(t *testing.T) string { return testenv.PostgresSchema(t) },
	}
}

// TestKill9KeepsAnsweredWrites: every write answered 2xx is there after the process is killed
// with SIGKILL and started again.
func TestKill9KeepsAnsweredWrites(t *testing.T) {
	for name, db := range databases(t) {
		t.Run(name, func(t *testing.T) {
			dsn := db(t)
			s := startServer(t, dsn)
			status, body := httpDo(t, "POST", s.url+"/api/v1/jobs", `{"taskname":"rpmlint","item":"foo-1-1.fc45","item_type":"koji_build","uuid":"0193a5c3-7c1e-7abc-8def-0123456789ab"}`)
			if status != 201 {
				t.Fatalf("create: got %d %s", status, body)
			}
			job := s.url + "/api/v1/jobs/0193a5c3-7c1e-7abc-8def-0123456789ab"
			if status, body = httpDo(t, "POST", job+"/start", ``); status != 200 {
				t.Fatalf("start: got %d %s", status, body)
			}
			if status, body = httpDo(t, "POST", job+"/finish", `{"state":"CRASHED","crash":{"cause":"minion"}}`); status != 200 {
				t.Fatalf("finish: got %d %s", status, body)
			}
			s.kill9(t)
			s = startServer(t, dsn)
			job = s.url + "/api/v1/jobs/0193a5c3-7c1e-7abc-8def-0123456789ab"
			status, body = httpDo(t, "GET", job, "")
			if status != 200 || !strings.Contains(body, `"state":"CRASHED"`) || !strings.Contains(body, `"cause":"minion"`) {
				t.Fatalf("after kill -9: got %d %s, want the CRASHED job", status, body)
			}
			status, body = httpDo(t, "GET", job+"/events", "")
			if status != 200 || strings.Count(body, `"verdict":"applied"`) != 3 {
				t.Errorf("history after kill -9: got %d %s, want 3 applied events", status, body)
			}
		})
	}
}

// TestKill9UnderConcurrentWrites: 16 clients run job lives (create, start, finish) at once, so
// that their writes share units (group commit), and the process is killed with SIGKILL in the
// middle: after the restart every write that was answered 2xx is there, each job at least as
// far as its last answer said.
func TestKill9UnderConcurrentWrites(t *testing.T) {
	for name, db := range databases(t) {
		t.Run(name, func(t *testing.T) {
			dsn := db(t)
			s := startServer(t, dsn)
			client := &http.Client{Timeout: 10 * time.Second}
			post := func(url, body string) int {
				resp, err := client.Post(url, "application/json", strings.NewReader(body))
				if err != nil {
					return 0 // killed: not answered
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			var (
				mu       sync.Mutex
				answered = map[string]string{} // job uuid -> the last state a 2xx answer gave it
				wg       sync.WaitGroup
				stop     = make(chan struct{})
			)
			for c := range 16 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; ; i++ {
						select {
						case <-stop:
							return
						default:
						}
						id := uuid.NewString()
						job := s.url + "/api/v1/jobs/" + id
						steps := []struct{ url, body, state string }{
							{s.url + "/api/v1/jobs", fmt.Sprintf(`{"uuid":%q,"taskname":"rpmlint","item":"pkg-%d-%d","item_type":"koji_build"}`, id, c, i), "SCHEDULED"},
							{job + "/start", ``, "RUNNING"},
							{job + "/finish", `{"state":"CRASHED","crash":{"cause":"minion","keyvals":{"step":["MINION_CREATION"]}}}`, "CRASHED"},
						}
						for _, st := range steps {
							code := post(st.url, st.body)
							if code < 200 || code > 299 {
								break
							}
							mu.Lock()
							answered[id] = st.state
							mu.Unlock()
						}
					}
				}()
			}
			// Kill once some work was answered.
			deadline := time.Now().Add(30 * time.Second)
			for {
				mu.Lock()
				n := len(answered)
				mu.Unlock()
				if n >= 200 || time.Now().After(deadline) {
					break
				}
				time.Sleep(10 * time.Millisecond)
			}
			s.kill9(t)
			close(stop)
			wg.Wait()
			s = startServer(t, dsn)
			order := map[string]int{"SCHEDULED": 0, "RUNNING": 1, "CRASHED": 2}
			mu.Lock()
			defer mu.Unlock()
			if len(answered) == 0 {
				t.Fatal("no write was answered before the kill")
			}
			lost := 0
			for id, state := range answered {
				status, body := httpDo(t, "GET", s.url+"/api/v1/jobs/"+id, "")
				var got struct{ State string }
				json.Unmarshal([]byte(body), &got)
				if status != 200 || order[got.State] < order[state] {
					lost++
					if lost <= 5 {
						t.Errorf("job %s: answered %s before the kill, got %d %s after", id, state, status, body)
					}
				}
			}
			if lost > 0 {
				t.Errorf("%d of %d answered jobs lost something", lost, len(answered))
			}
			t.Logf("%d jobs had answered writes when serve was killed", len(answered))
		})
	}
}

// TestLifecycleScript runs docs/examples/lifecycle.sh, the story of a job told with the client
// commands only, against a real server.
func TestLifecycleScript(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	for name, db := range databases(t) {
		t.Run(name, func(t *testing.T) {
			s := startServer(t, db(t))
			cmd := exec.Command("bash", "../../docs/examples/lifecycle.sh")
			cmd.Env = append(os.Environ(), "EXECDB="+execdbBinary(t), "EXECDB_SERVER="+s.url)
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("lifecycle.sh: %v\n%s\nserver log:\n%s", err, out, s.logs)
			}
			if !strings.Contains(string(out), "MINION_CREATION") {
				t.Errorf("lifecycle.sh output lacks the minion crash:\n%s", out)
			}
		})
	}
}

// TestServeShutsDownOnSIGTERM: SIGTERM stops the server cleanly with exit status 0.
func TestServeShutsDownOnSIGTERM(t *testing.T) {
	s := startServer(t, "sqlite:"+filepath.Join(t.TempDir(), "execdb.db"))
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-s.done; err != nil {
		t.Fatalf("got %v after SIGTERM, want exit status 0\n%s", err, s.logs)
	}
	if !strings.Contains(s.logs.String(), `"msg":"stopped"`) {
		t.Errorf("log lacks the stop:\n%s", s.logs)
	}
}

// TestServeConfigErrors: every setting is checked before serve opens anything, and a bad one
// exits 2 naming its variable and its flag; the port is not even bound, so a busy port does
// not hide a bad setting.
func TestServeConfigErrors(t *testing.T) {
	bin := execdbBinary(t)
	emptyTokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(emptyTokens, []byte("# buildbot:change-me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cases := []struct {
		args   []string
		env    string
		code   int
		output string
	}{
		{[]string{"serve", "--help"}, "", 0, "EXECDB_RUN_TIMEOUT"},
		{[]string{"migrate", "--help"}, "", 0, "EXECDB_DB"},
		{[]string{"serve", "--run-timeout", "soon"}, "", 2, "EXECDB_RUN_TIMEOUT (--run-timeout)"},
		{[]string{"serve", "--log-format", "xml"}, "", 2, "json or console"},
		{[]string{"serve", "--log-level", "loud"}, "", 2, "EXECDB_LOG_LEVEL (--log-level)"},
		{[]string{"serve"}, "EXECDB_AUTO_RESCHEDULE=-1", 2, "EXECDB_AUTO_RESCHEDULE (--auto-reschedule), from the environment"},
		{[]string{"serve", "--db", "mysql://x", "--listen", busy.Addr().String()}, "", 2, "EXECDB_DB (--db)"},
		{[]string{"serve", "--db", "postgres://u:secret@host:notaport/db"}, "", 2, "EXECDB_DB (--db)"},
		{[]string{"serve", "--db", "sqlite:/no/such/dir/execdb.db"}, "", 2, "does not exist"},
		{[]string{"serve", "--amqp-url", "http://x"}, "", 2, "EXECDB_AMQP_URL (--amqp-url)"},
		{[]string{"serve", "--fedmsg-connect", "hub.example.org:9940"}, "", 2, "EXECDB_FEDMSG_CONNECT (--fedmsg-connect)"},
		{[]string{"serve", "--fedmsg-connect", "tcp://a:1,tcp://*:2"}, "", 2, `"tcp://*:2"`},
		{[]string{"serve", "--fedmsg-bind", "*:3000"}, "", 2, "EXECDB_FEDMSG_BIND (--fedmsg-bind)"},
		{[]string{"serve", "--topic-prefix", "bad prefix#"}, "", 2, "EXECDB_TOPIC_PREFIX (--topic-prefix)"},
		{[]string{"serve", "--amqp-queue", "amq.mine"}, "", 2, "EXECDB_AMQP_QUEUE (--amqp-queue)"},
		{[]string{"serve", "--listen", "5003"}, "", 2, "EXECDB_LISTEN (--listen)"},
		{[]string{"serve", "--base-url", "taskotron.example.org/execdb"}, "", 2, "EXECDB_BASE_URL (--base-url)"},
		{[]string{"serve", "--resultsdb-url", "ftp://x"}, "", 2, "EXECDB_RESULTSDB_URL (--resultsdb-url)"},
		{[]string{"serve", "--retention", "FINISHED=90"}, "", 2, "EXECDB_RETENTION (--retention)"},
		{[]string{"serve", "extra"}, "", 2, "unexpected argument"},
		{[]string{"serve", "--tokens-file", emptyTokens}, "", 2, "holds no tokens"},
		{[]string{"serve", "--tokens-file", "/no/such/tokens"}, "", 2, "EXECDB_TOKENS_FILE (--tokens-file)"},
		{[]string{"serve", "--listen", busy.Addr().String()}, "", 1, "EXECDB_LISTEN"},
		{[]string{"frobnicate"}, "", 2, "unknown command"},
		{[]string{"--version"}, "", 0, "execdb "},
		{[]string{"version"}, "", 0, "commit"},
	}
	for _, tc := range cases {
		cmd := exec.Command(bin, tc.args...)
		cmd.Env = append(os.Environ(), tc.env)
		cmd.Dir = t.TempDir()
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != tc.code || !strings.Contains(string(out), tc.output) {
			t.Errorf("execdb %v (%s): got exit %d\n%s\nwant exit %d mentioning %q", tc.args, tc.env, code, out, tc.code, tc.output)
		}
	}
}

// TestMigrate applies the schema with the migrate command, twice.
func TestMigrate(t *testing.T) {
	for name, db := range databases(t) {
		t.Run(name, func(t *testing.T) {
			dsn := db(t)
			for range 2 {
				out, err := exec.Command(execdbBinary(t), "migrate", "--db", dsn).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "migrated") {
					t.Fatalf("migrate: %v\n%s", err, out)
				}
			}
		})
	}
}

// TestDatabaseFromTheFuture: a database a newer execdb migrated is refused by serve and
// migrate, with exit status 1 and both schema versions named.
func TestDatabaseFromTheFuture(t *testing.T) {
	for name, db := range databases(t) {
		t.Run(name, func(t *testing.T) {
			dsn := db(t)
			if out, err := exec.Command(execdbBinary(t), "migrate", "--db", dsn).CombinedOutput(); err != nil {
				t.Fatalf("migrate: %v\n%s", err, out)
			}
			future := `INSERT INTO schema_migrations (version, name, applied_at) VALUES (999, '0999_future.sql', '2030-01-01T00:00:00.000000Z')`
			if name == "postgres" {
				b := testenv.Postgres(t, dsn).(*postgres.Backend)
				if _, err := b.Pool().Exec(context.Background(), `INSERT INTO schema_migrations (version, name) VALUES (999, '0999_future.sql')`); err != nil {
					t.Fatal(err)
				}
			} else {
				sqldb, err := sql.Open("sqlite", strings.TrimPrefix(dsn, "sqlite:"))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := sqldb.Exec(future); err != nil {
					t.Fatal(err)
				}
				sqldb.Close()
			}
			for _, args := range [][]string{{"migrate", "--db", dsn}, {"serve", "--db", dsn, "--listen", "127.0.0.1:0"}} {
				cmd := exec.Command(execdbBinary(t), args...)
				out, _ := cmd.CombinedOutput()
				if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "version 999") ||
					!regexp.MustCompile(`this execdb knows \(version \d+\)`).Match(out) {
					t.Errorf("execdb %s: got exit %d\n%s\nwant exit 1 naming version 999 and the binary's", args[0], code, out)
				}
			}
		})
	}
}

// TestServeTellsItsVersion: the version is in the start-up log line, /healthz and a metric;
// --log-level warn keeps info lines out.
func TestServeTellsItsVersion(t *testing.T) {
	s := startServer(t, "sqlite:"+filepath.Join(t.TempDir(), "execdb.db"))
	if !strings.Contains(s.logs.String(), `"msg":"execdb starting","version":`) {
		t.Errorf("the start-up log line lacks the version:\n%s", s.logs)
	}
	if _, body := httpDo(t, "GET", s.url+"/healthz", ""); !strings.Contains(body, `"version":`) || !strings.Contains(body, `"commit":`) {
		t.Errorf("healthz: got %s", body)
	}
	if _, body := httpDo(t, "GET", s.url+"/metrics", ""); !strings.Contains(body, "execdb_build_info{commit=") {
		t.Errorf("metrics lack execdb_build_info")
	}
	quiet := startServer(t, "sqlite:"+filepath.Join(t.TempDir(), "execdb.db"), "--log-level", "warn")
	httpDo(t, "POST", quiet.url+"/api/v1/jobs", `{"taskname":"t","item":"i","item_type":"k"}`)
	if strings.Contains(quiet.logs.String(), `"level":"info"`) {
		t.Errorf("--log-level warn logged info lines:\n%s", quiet.logs)
	}
}

// TestCopyThenServe: the quick start's SQLite database, copied to PostgreSQL, serves the same
// jobs; a second copy into it is refused.
func TestCopyThenServe(t *testing.T) {
	sqlitePath := "sqlite:" + filepath.Join(t.TempDir(), "execdb.db")
	pg := testenv.PostgresSchema(t)
	s := startServer(t, sqlitePath)
	status, body := httpDo(t, "POST", s.url+"/api/v1/jobs", `{"taskname":"rpmlint","item":"foo-1-1.fc45","item_type":"koji_build","uuid":"0193a5c3-7c1e-7abc-8def-0123456789ab"}`)
	if status != 201 {
		t.Fatalf("create: %d %s", status, body)
	}
	httpDo(t, "POST", s.url+"/api/v1/jobs/0193a5c3-7c1e-7abc-8def-0123456789ab/finish", `{"state":"CRASHED","crash":{"cause":"minion"}}`)
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	<-s.done
	out, err := exec.Command(execdbBinary(t), "copy", "--from", sqlitePath, "--to", pg).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "copied 1 jobs, 2 history entries") {
		t.Fatalf("copy: %v\n%s", err, out)
	}
	cmd := exec.Command(execdbBinary(t), "copy", "--from", sqlitePath, "--to", pg)
	out, _ = cmd.CombinedOutput()
	if cmd.ProcessState.ExitCode() != 1 || !strings.Contains(string(out), "not empty") {
		t.Errorf("second copy: got exit %d\n%s", cmd.ProcessState.ExitCode(), out)
	}
	s = startServer(t, pg)
	_, body = httpDo(t, "GET", s.url+"/api/v1/jobs/0193a5c3-7c1e-7abc-8def-0123456789ab/events", "")
	if !strings.Contains(body, `"kind":"end"`) {
		t.Errorf("history on PostgreSQL: %s", body)
	}
	_, body = httpDo(t, "GET", s.url+"/api/v1/jobs/0193a5c3-7c1e-7abc-8def-0123456789ab", "")
	if !strings.Contains(body, `"state":"CRASHED"`) || !strings.Contains(body, `"cause":"minion"`) {
		t.Errorf("job on PostgreSQL: %s", body)
	}
}
