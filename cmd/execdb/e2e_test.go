package main

import (
	"bufio"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/testenv"
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

// server is a running `execdb serve` process.
type server struct {
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
func startServer(t *testing.T, db string, extra ...string) *server {
	t.Helper()
	args := append([]string{"serve", "--db", db, "--listen", "127.0.0.1:0"}, extra...)
	cmd := exec.Command(execdbBinary(t), args...)
	cmd.Env = append(os.Environ(), "EXECDB_LOG_FORMAT=json")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := &server{cmd: cmd, logs: &syncBuffer{}, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			s.logs.Write([]byte(line + "\n"))
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal([]byte(line), &entry) == nil && entry.Msg == "listening" {
				addr <- entry.Addr
			}
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
	select {
	case a := <-addr:
		s.url = "http://" + a
	case err := <-s.done:
		t.Fatalf("execdb serve exited: %v\n%s", err, s.logs)
	case <-time.After(60 * time.Second):
		t.Fatalf("execdb serve did not start listening\n%s", s.logs)
	}
	return s
}

func (s *server) kill9(t *testing.T) {
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

func TestServeConfigErrors(t *testing.T) {
	bin := execdbBinary(t)
	emptyTokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(emptyTokens, []byte("# buildbot:change-me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		args   []string
		env    string
		code   int
		output string
	}{
		{[]string{"serve", "--help"}, "", 0, "EXECDB_RUN_TIMEOUT"},
		{[]string{"migrate", "--help"}, "", 0, "EXECDB_DB"},
		{[]string{"serve", "--run-timeout", "soon"}, "", 2, "--run-timeout"},
		{[]string{"serve", "--log-format", "xml"}, "", 2, "json or console"},
		{[]string{"serve"}, "EXECDB_AUTO_RESCHEDULE=-1", 2, "EXECDB_AUTO_RESCHEDULE"},
		{[]string{"serve", "--db", "mysql://x"}, "", 1, "postgres://"},
		{[]string{"serve", "extra"}, "", 2, "unexpected argument"},
		{[]string{"serve", "--tokens-file", emptyTokens, "--db", "sqlite:never.db"}, "", 1, "holds no tokens"},
		{[]string{"frobnicate"}, "", 2, "unknown command"},
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
