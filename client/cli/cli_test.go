package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/client"
	"github.com/fedora-qa/execdb/client/clienttest"
	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// Tests of the client commands against the real API, which clienttest starts on a SQLite
// database.

func init() {
	// Retry in milliseconds rather than seconds.
	extraClientOptions = []client.Option{client.WithBackoff(time.Millisecond, 5*time.Millisecond)}
}

// run runs the client command args[0] names with the rest of args, as execdb does.
func run(ctx context.Context, args []string, e command.Env) int {
	cmds := []command.Command{{Name: "job", Run: Job}, {Name: "jobs", Run: Jobs}, {Name: "stats", Run: Stats},
		{Name: "reschedule", Run: Reschedule}, {Name: "rejected", Run: Rejected}, {Name: "prune", Run: Prune}}
	return command.Dispatch(ctx, "execdb", "command", cmds, func(io.Writer) {}, args, e)
}

type cliResult struct {
	code           int
	stdout, stderr string
}

// runCLI runs execdb with args and the environment vars (nothing else of the process's).
func runCLI(t *testing.T, vars map[string]string, args ...string) cliResult {
	t.Helper()
	var stdout, stderr bytes.Buffer
	e := command.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return vars[k] }}
	code := run(context.Background(), args, e)
	return cliResult{code, stdout.String(), stderr.String()}
}

// cliServer starts the API and returns it with the environment pointing at it.
func cliServer(t *testing.T) (*clienttest.Server, map[string]string) {
	t.Helper()
	srv := clienttest.New(t, clienttest.Options{Token: "s3cret"})
	return srv, map[string]string{"EXECDB_SERVER": srv.URL, "EXECDB_TOKEN": "s3cret", "EXECDB_TIMEOUT": "5s"}
}

func wantCode(t *testing.T, r cliResult, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status: got %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

func createJob(t *testing.T, vars map[string]string, extra ...string) uuid.UUID {
	t.Helper()
	args := append([]string{"job", "create", "--quiet", "--taskname", "rpmlint", "--item", "foo-1.0-1.fc40", "--item-type", "koji_build"}, extra...)
	r := runCLI(t, vars, args...)
	wantCode(t, r, command.ExitOK)
	id, err := uuid.Parse(strings.TrimSpace(r.stdout))
	if err != nil {
		t.Fatalf("create --quiet printed %q, want a UUID alone", r.stdout)
	}
	return id
}

func TestClientUsageErrors(t *testing.T) {
	t.Parallel()
	u := uuid.NewString()
	// An unreachable server and a single attempt: a usage error must come before any request.
	vars := map[string]string{"EXECDB_SERVER": "http://127.0.0.1:1", "EXECDB_TIMEOUT": "0"}
	create := []string{"job", "create", "--taskname", "t", "--item", "i", "--item-type", "k"}
	cases := [][]string{
		{"job"},
		{"job", "frob"},
		{"job", "create"},
		{"job", "create", "--taskname", "t", "--item", "i"},
		append(create, "--data", "novalue"),
		append(create, "--data", "a:b=c"),
		append(create, "--uuid", "nope"),
		append(create, "--source-topic", "org.fedoraproject.prod.buildsys.build.state.change"),
		append(create, "--quiet", "--json"),
		append(create, "extra"),
		append(create, "--bogus"),
		append(create, "--taskname"),
		{"job", "start"},
		{"job", "start", "not-a-uuid"},
		{"job", "start", u, u},
		{"job", "start", u, "--started-at", "yesterday"},
		{"job", "finish", u},
		{"job", "finish", u, "--finished", "--crashed"},
		{"job", "finish", u, "--finished", "--status-file", "/tmp/x"},
		{"job", "finish", u, "--finished", "--notify", "task"},
		{"job", "finish", u, "--status-file", "/tmp/x", "--kv", "a=b"},
		{"job", "finish", u, "--crashed", "--notify", "nobody"},
		{"job", "finish", u, "--crashed", "--cause", "gremlins"},
		{"job", "finish", u, "--crashed", "--kv", "novalue"},
		{"job", "finish", u, "--finished", "--finished-at", "5pm"},
		{"job", "finish", u, "--finished", "--exit-code", "0"},
		{"job", "finish", u, "--crashed", "--exit-code", "1"},
		{"job", "finish", u, "--status-file", "/tmp/x", "--exit-code", "one"},
		{"job", "finish", u, "--status-file", "/tmp/x", "--exit-code", "1.5"},
		{"job", "show"},
		{"job", "show", "00000000-0000-0000-0000-000000000000"},
		{"job", "events", u, "--timeout", "-1s"},
		{"job", "events", u, "--timeout", "soon"},
		{"job", "show", u, "--server", "ftp://example.org"},
		{"job", "reschedule", u, "--force=maybe"},
		{"jobs", "novalue"},
		{"jobs", "--filter", "=x"},
		{"stats", "novalue"},
	}
	for _, args := range cases {
		r := runCLI(t, vars, args...)
		if r.code != command.ExitUsage {
			t.Errorf("execdb %s: exit status %d, want %d\nstderr: %s", strings.Join(args, " "), r.code, command.ExitUsage, r.stderr)
			continue
		}
		if !strings.Contains(r.stderr, "--help") && !strings.Contains(r.stderr, "Usage:") {
			t.Errorf("execdb %s: stderr %q, want a pointer to the help", strings.Join(args, " "), r.stderr)
		}
		if r.stdout != "" {
			t.Errorf("execdb %s: stdout %q, want nothing", strings.Join(args, " "), r.stdout)
		}
	}
	r := runCLI(t, map[string]string{"EXECDB_TIMEOUT": "whenever"}, "job", "show", u)
	if r.code != command.ExitUsage || !strings.Contains(r.stderr, "EXECDB_TIMEOUT") {
		t.Errorf("bad EXECDB_TIMEOUT: got %d %q, want a usage error naming it", r.code, r.stderr)
	}
}

func TestClientHelp(t *testing.T) {
	t.Parallel()
	flags := map[string][]string{
		"job create":     {"--taskname", "--item", "--item-type", "--arch", "--data", "--uuid", "--request-id", "--source-msg-id", "--source-topic", "--quiet"},
		"job start":      {"--started-at", "--runner-name", "--runner-jobid", "--runner-worker", "--runner-url"},
		"job finish":     {"--status-file", "--finished", "--crashed", "--notify", "--cause", "--fatal", "--kv", "--finished-at", "--artifacts-url", "--log-url", "--runner-name", "STATUS_FILE_MISSING", "--exit-code", "exits 3"},
		"job show":       nil,
		"job events":     nil,
		"job reschedule": {"--force"},
		"jobs":           {"--filter", "kv.<key>"},
		"stats":          {"--filter", "--group-by", "--bucket"},
	}
	for cmd, want := range flags {
		for _, h := range []string{"--help", "-h"} {
			r := runCLI(t, nil, append(strings.Fields(cmd), h)...)
			if r.code != command.ExitOK {
				t.Errorf("execdb %s %s: exit status %d, want 0", cmd, h, r.code)
			}
			for _, w := range append(want, "Usage: execdb "+cmd, "--server", "EXECDB_SERVER", "--token", "EXECDB_TOKEN", "--json", "--timeout", "Exit status") {
				if !strings.Contains(r.stdout, w) {
					t.Errorf("execdb %s %s: help lacks %q:\n%s", cmd, h, w, r.stdout)
				}
			}
		}
	}
	r := runCLI(t, nil, "job", "--help")
	if r.code != command.ExitOK || !strings.Contains(r.stdout, "reschedule") || !strings.Contains(r.stdout, "events") {
		t.Errorf("execdb job --help: got %d %q, want the subcommands", r.code, r.stdout)
	}
}

// TestClientHelpHidesToken: the token from the environment never shows in the help.
func TestClientHelpHidesToken(t *testing.T) {
	t.Parallel()
	r := runCLI(t, map[string]string{"EXECDB_TOKEN": "hunter2"}, "job", "start", "--help")
	if strings.Contains(r.stdout, "hunter2") {
		t.Errorf("help shows the token:\n%s", r.stdout)
	}
}

func TestClientLifecycle(t *testing.T) {
	t.Parallel()
	srv, vars := cliServer(t)
	id := createJob(t, vars, "--data", "koji_tag=f40-updates", "--data", "koji_tag=f40", "--arch", "x86_64",
		"--source-msg-id", "2024-abc", "--source-topic", "org.fedoraproject.prod.buildsys.build.state.change")
	// A reported time is kept when it fits between the create and now (a little ahead is clock
	// skew); written in another zone, it is shown in UTC.
	startedAt := time.Now().Add(time.Minute).Truncate(time.Second)
	r := runCLI(t, vars, "job", "start", id.String(), "--runner-name", "buildbot", "--runner-jobid", "all/4821",
		"--runner-worker", "client10-3", "--started-at", startedAt.In(time.FixedZone("CEST", 2*3600)).Format(time.RFC3339))
	wantCode(t, r, command.ExitOK)
	for _, w := range []string{"state:", "RUNNING", "runner:", "jobid=all/4821", startedAt.UTC().Format(time.RFC3339)} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("start: output lacks %q:\n%s", w, r.stdout)
		}
	}
	status := filepath.Join(t.TempDir(), "status.json")
	os.WriteFile(status, []byte(`{"state":"CRASHED","crash":{"notify":"taskotron","cause":"minion","keyvals":{"step":"MINION_CREATION","reason":"TIMED_OUT"}}}`), 0o644)
	r = runCLI(t, vars, "job", "finish", id.String(), "--status-file", status, "--log-url", "http://logs/4821")
	wantCode(t, r, command.ExitOK)
	if r.stderr != "" {
		t.Errorf("finish from a good status file: stderr %q, want nothing", r.stderr)
	}
	r = runCLI(t, vars, "job", "show", id.String())
	wantCode(t, r, command.ExitOK)
	for _, w := range []string{
		"uuid:", id.String(), "CRASHED", "notify=taskotron cause=minion fatal=false",
		"reason=TIMED_OUT step=MINION_CREATION", "koji_tag=f40-updates koji_tag=f40", "x86_64",
		"msg_id=2024-abc", "log_url:", "http://logs/4821", "duration:",
	} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("show: output lacks %q:\n%s", w, r.stdout)
		}
	}
	if !regexp.MustCompile(`(?m)^state: +CRASHED$`).MatchString(r.stdout) {
		t.Errorf("show: want aligned key: value lines:\n%s", r.stdout)
	}
	r = runCLI(t, vars, "job", "show", id.String(), "--json")
	wantCode(t, r, command.ExitOK)
	var job statemachine.Job
	if err := json.Unmarshal([]byte(r.stdout), &job); err != nil || job.UUID != id || job.State != statemachine.Crashed {
		t.Errorf("show --json: got %q (%v), want the job", r.stdout, err)
	}
	r = runCLI(t, vars, "job", "events", id.String())
	wantCode(t, r, command.ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") || !strings.Contains(lines[3], "SCHEDULED→CRASHED") && !strings.Contains(lines[3], "RUNNING→CRASHED") {
		t.Errorf("events: got\n%s\nwant a header and 3 rows ending in the crash", r.stdout)
	}
	if !strings.Contains(lines[3], "CRASHED taskotron/minion") {
		t.Errorf("events: the end row lacks its summary:\n%s", lines[3])
	}
	r = runCLI(t, vars, "job", "events", "--json", id.String())
	wantCode(t, r, command.ExitOK)
	var events struct{ Data []client.HistoryEntry }
	if err := json.Unmarshal([]byte(r.stdout), &events); err != nil || len(events.Data) != 3 {
		t.Errorf("events --json: got %q (%v), want 3 entries", r.stdout, err)
	}
	// Every write carried the token; reads none.
	for _, req := range srv.Requests() {
		auth := req.Header.Get("Authorization")
		if req.Method == http.MethodPost && auth != "Bearer s3cret" || req.Method == http.MethodGet && auth != "" {
			t.Errorf("%s %s: Authorization %q", req.Method, req.Path, auth)
		}
	}
}

func TestClientFlagsWinOverEnv(t *testing.T) {
	t.Parallel()
	srv, vars := cliServer(t)
	good := vars["EXECDB_SERVER"]
	vars["EXECDB_SERVER"] = "http://127.0.0.1:1"
	vars["EXECDB_TOKEN"] = "wrong"
	r := runCLI(t, vars, "job", "create", "--server", good, "--token", "s3cret", "--taskname", "t", "--item", "i", "--item-type", "k")
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stdout, "Created job") {
		t.Errorf("create: got %q", r.stdout)
	}
	if n := len(srv.Jobs(t)); n != 1 {
		t.Errorf("jobs: got %d, want 1", n)
	}
}

func TestClientCreateRepeated(t *testing.T) {
	t.Parallel()
	srv, vars := cliServer(t)
	a := createJob(t, vars, "--request-id", "trigger-7")
	r := runCLI(t, vars, "job", "create", "--taskname", "rpmlint", "--item", "foo-1.0-1.fc40", "--item-type", "koji_build", "--request-id", "trigger-7")
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stdout, "already existed") || !strings.Contains(r.stdout, a.String()) {
		t.Errorf("repeated create: got %q, want the existing job", r.stdout)
	}
	if n := len(srv.Jobs(t)); n != 1 {
		t.Errorf("jobs: got %d, want 1", n)
	}
	given := uuid.New()
	if got := createJob(t, vars, "--uuid", given.String()); got != given {
		t.Errorf("create --uuid: got %s, want %s", got, given)
	}
	// A re-run step repeats the create of the uuid it was given: the same job, not a conflict.
	if got := createJob(t, vars, "--uuid", given.String()); got != given {
		t.Errorf("repeated create --uuid: got %s, want %s", got, given)
	}
}

func TestClientStatusFileCases(t *testing.T) {
	t.Parallel()
	_, vars := cliServer(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cases := []struct {
		name, path string
		state      statemachine.State
		reason     string
	}{
		{"finished", write("ok.json", `{"state":"FINISHED"}`), statemachine.Finished, ""},
		{"missing", filepath.Join(dir, "absent.json"), statemachine.Crashed, "STATUS_FILE_MISSING"},
		{"empty", write("empty.json", ""), statemachine.Crashed, "STATUS_FILE_INVALID"},
		{"unparsable", write("bad.json", "{state: FINISHED}"), statemachine.Crashed, "STATUS_FILE_INVALID"},
		{"unknown field", write("typo.json", `{"state":"FINISHED","sate":"x"}`), statemachine.Crashed, "STATUS_FILE_INVALID"},
	}
	for _, c := range cases {
		id := createJob(t, vars)
		r := runCLI(t, vars, "job", "finish", id.String(), "--status-file", c.path, "--json")
		if c.reason == "" {
			wantCode(t, r, command.ExitOK)
		} else {
			wantCode(t, r, exitSynthesisedCrash) // CONTRACT section 5 (v1.1)
		}
		var job statemachine.Job
		if err := json.Unmarshal([]byte(r.stdout), &job); err != nil {
			t.Fatalf("%s: stdout %q: %v", c.name, r.stdout, err)
		}
		if job.State != c.state {
			t.Errorf("%s: state %s, want %s", c.name, job.State, c.state)
		}
		if c.reason == "" {
			if r.stderr != "" {
				t.Errorf("%s: stderr %q, want nothing", c.name, r.stderr)
			}
			continue
		}
		if got := job.Crash.KeyVals["reason"]; len(got) != 1 || got[0] != c.reason ||
			job.Crash.Notify != statemachine.NotifyTaskotron || job.Crash.Cause != statemachine.CauseUnknown {
			t.Errorf("%s: crash %+v, want taskotron/unknown reason=%s", c.name, job.Crash, c.reason)
		}
		if !strings.Contains(r.stderr, c.path) || !strings.Contains(r.stderr, "reason="+c.reason) {
			t.Errorf("%s: stderr %q, want a warning naming the file and the reason", c.name, r.stderr)
		}
	}
}

// TestClientFinishExitCode: --exit-code is the fallback for a missing status file, and a crash
// the command made up exits 3 (CONTRACT section 5, v1.1).
func TestClientFinishExitCode(t *testing.T) {
	t.Parallel()
	_, vars := cliServer(t)
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	missing := filepath.Join(dir, "absent.json")
	cases := []struct {
		name, path, exitCode string
		code                 int
		state                statemachine.State
		crash                statemachine.KeyVals // the keyvals reason and exit_code, nil for none
	}{
		{"missing, exit 0", missing, "0", command.ExitOK, statemachine.Finished, nil},
		{"missing, exit 1", missing, "1", exitSynthesisedCrash, statemachine.Crashed,
			statemachine.KeyVals{"reason": {"STATUS_FILE_MISSING"}, "exit_code": {"1"}}},
		{"missing, killed (-1)", missing, "-1", exitSynthesisedCrash, statemachine.Crashed,
			statemachine.KeyVals{"reason": {"STATUS_FILE_MISSING"}, "exit_code": {"-1"}}},
		{"missing, no exit code", missing, "", exitSynthesisedCrash, statemachine.Crashed,
			statemachine.KeyVals{"reason": {"STATUS_FILE_MISSING"}}},
		{"invalid, exit 0", write("bad.json", "{"), "0", exitSynthesisedCrash, statemachine.Crashed,
			statemachine.KeyVals{"reason": {"STATUS_FILE_INVALID"}, "exit_code": {"0"}}},
		{"finished file wins over exit 1", write("ok.json", `{"state":"FINISHED"}`), "1", command.ExitOK, statemachine.Finished, nil},
		{"crash file wins over exit 0", write("crash.json", `{"state":"CRASHED","crash":{"notify":"task","cause":"task","keyvals":{"reason":"EXCEPTION"}}}`),
			"0", command.ExitOK, statemachine.Crashed, statemachine.KeyVals{"reason": {"EXCEPTION"}}},
	}
	for _, c := range cases {
		id := createJob(t, vars)
		args := []string{"job", "finish", id.String(), "--status-file", c.path, "--json"}
		if c.exitCode != "" {
			args = append(args, "--exit-code", c.exitCode)
		}
		r := runCLI(t, vars, args...)
		if r.code != c.code {
			t.Errorf("%s: exit status %d, want %d\nstderr: %s", c.name, r.code, c.code, r.stderr)
			continue
		}
		var job statemachine.Job
		if err := json.Unmarshal([]byte(r.stdout), &job); err != nil {
			t.Fatalf("%s: stdout %q: %v", c.name, r.stdout, err)
		}
		if job.State != c.state {
			t.Errorf("%s: state %s, want %s", c.name, job.State, c.state)
			continue
		}
		if c.crash == nil {
			if job.Crash != nil {
				t.Errorf("%s: crash %+v, want none", c.name, job.Crash)
			}
			continue
		}
		got := statemachine.KeyVals{}
		for _, k := range []string{"reason", "exit_code"} {
			if v, ok := job.Crash.KeyVals[k]; ok {
				got[k] = v
			}
		}
		if !reflect.DeepEqual(got, c.crash) {
			t.Errorf("%s: keyvals reason and exit_code %v, want %v", c.name, got, c.crash)
		}
		if c.code == exitSynthesisedCrash {
			if job.Crash.Notify != statemachine.NotifyTaskotron || job.Crash.Cause != statemachine.CauseUnknown {
				t.Errorf("%s: crash %s/%s, want taskotron/unknown", c.name, job.Crash.Notify, job.Crash.Cause)
			}
			if !strings.Contains(r.stderr, c.path) || !strings.Contains(r.stderr, "reporting CRASHED") {
				t.Errorf("%s: stderr %q, want a note naming the file and the crash", c.name, r.stderr)
			}
		}
	}

	// A made-up crash the server refuses (the job already finished) is a refusal: exit 1.
	id := createJob(t, vars)
	wantCode(t, runCLI(t, vars, "job", "finish", id.String(), "--finished"), command.ExitOK)
	wantCode(t, runCLI(t, vars, "job", "finish", id.String(), "--status-file", missing, "--exit-code", "1"), command.ExitRefused)
	// Repeating the made-up crash: the server has it (a duplicate), still exit 3.
	id = createJob(t, vars)
	for range 2 {
		wantCode(t, runCLI(t, vars, "job", "finish", id.String(), "--status-file", missing, "--exit-code", "2"), exitSynthesisedCrash)
	}
}

func TestClientFinishCrashedFlags(t *testing.T) {
	t.Parallel()
	_, vars := cliServer(t)
	id := createJob(t, vars)
	finishedAt := time.Now().Add(time.Minute).UTC().Truncate(time.Second)
	r := runCLI(t, vars, "job", "finish", id.String(), "--crashed", "--notify", "task", "--cause", "task", "--fatal",
		"--kv", "step=FORMULA_PARSING", "--kv", "error=line 12: unknown directive", "--finished-at", finishedAt.Format(time.RFC3339),
		"--artifacts-url", "http://artifacts/x", "--json")
	wantCode(t, r, command.ExitOK)
	var job statemachine.Job
	json.Unmarshal([]byte(r.stdout), &job)
	c := job.Crash
	if c == nil || c.Notify != "task" || c.Cause != "task" || !c.Fatal || c.KeyVals["error"][0] != "line 12: unknown directive" ||
		job.ArtifactsURL != "http://artifacts/x" || job.FinishedAt == nil || !job.FinishedAt.Equal(finishedAt) {
		t.Errorf("finish --crashed: got %+v crash %+v", job, c)
	}
	// The same report again is fine; another one is refused with the job as it stands.
	r = runCLI(t, vars, "job", "finish", id.String(), "--crashed", "--notify", "task", "--cause", "task", "--fatal",
		"--kv", "step=FORMULA_PARSING", "--kv", "error=line 12: unknown directive")
	wantCode(t, r, command.ExitOK)
	r = runCLI(t, vars, "job", "finish", id.String(), "--finished")
	wantCode(t, r, command.ExitRefused)
	for _, w := range []string{"409", "conflict", "the job as it stands", "CRASHED (notify=task cause=task fatal"} {
		if !strings.Contains(r.stderr, w) {
			t.Errorf("conflicting finish: stderr lacks %q:\n%s", w, r.stderr)
		}
	}
	// A late start is refused too.
	r = runCLI(t, vars, "job", "start", id.String())
	wantCode(t, r, command.ExitRefused)
	// With --json the answer's body goes to stdout as well.
	r = runCLI(t, vars, "job", "finish", id.String(), "--finished", "--json")
	wantCode(t, r, command.ExitRefused)
	var body struct {
		Error struct{ Status int }
		Job   statemachine.Job
	}
	if err := json.Unmarshal([]byte(r.stdout), &body); err != nil || body.Error.Status != 409 || body.Job.UUID != id {
		t.Errorf("conflicting finish --json: stdout %q, want the error body with the job", r.stdout)
	}
}

func TestClientRefusals(t *testing.T) {
	t.Parallel()
	_, vars := cliServer(t)
	r := runCLI(t, vars, "job", "show", uuid.NewString())
	wantCode(t, r, command.ExitRefused)
	if !strings.Contains(r.stderr, "404") {
		t.Errorf("unknown job: stderr %q, want the 404", r.stderr)
	}
	noToken := map[string]string{"EXECDB_SERVER": vars["EXECDB_SERVER"]}
	r = runCLI(t, noToken, "job", "create", "--taskname", "t", "--item", "i", "--item-type", "k")
	wantCode(t, r, command.ExitRefused)
	if !strings.Contains(r.stderr, "401") || !strings.Contains(r.stderr, "missing bearer token") {
		t.Errorf("no token: stderr %q, want the 401 and its message", r.stderr)
	}

	// A 400 names the field.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		w.Write([]byte(`{"error":{"status":400,"message":"must be one of minion, task","field":"crash.cause"}}`))
	}))
	defer srv.Close()
	r = runCLI(t, map[string]string{"EXECDB_SERVER": srv.URL}, "job", "finish", uuid.NewString(), "--crashed")
	wantCode(t, r, command.ExitRefused)
	if !strings.Contains(r.stderr, "must be one of minion, task") || !strings.Contains(r.stderr, "field crash.cause") {
		t.Errorf("400: stderr %q, want the message and the field", r.stderr)
	}
}

func TestClientRetries(t *testing.T) {
	t.Parallel()
	srv, vars := cliServer(t)
	id := createJob(t, vars)
	srv.Inject(clienttest.Fault{Status: 503}, clienttest.Fault{Status: 500, Apply: true})
	r := runCLI(t, vars, "job", "finish", id.String(), "--finished")
	wantCode(t, r, command.ExitOK)
	if strings.Count(r.stderr, "retrying") != 2 {
		t.Errorf("stderr %q, want two retry notes", r.stderr)
	}
	if !strings.Contains(r.stdout, "FINISHED") {
		t.Errorf("stdout %q, want the finished job", r.stdout)
	}
	// The second attempt took effect though its answer was lost; the third was a duplicate.
	history, err := srv.Store.History(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	var verdicts []string
	for _, h := range history {
		verdicts = append(verdicts, string(h.Kind)+":"+string(h.Verdict))
	}
	if got, want := strings.Join(verdicts, " "), "create:applied end:applied end:duplicate"; got != want {
		t.Errorf("history: got %s, want %s", got, want)
	}

	// Nobody listening, a short timeout: exit 1 saying so.
	l, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := l.Addr().String()
	l.Close()
	start := time.Now()
	r = runCLI(t, map[string]string{"EXECDB_SERVER": "http://" + addr}, "job", "show", id.String(), "--timeout", "100ms")
	wantCode(t, r, command.ExitRefused)
	if !strings.Contains(r.stderr, "gave up after") || !strings.Contains(r.stderr, "refused") {
		t.Errorf("unreachable: stderr %q, want it to give up on the refused connection", r.stderr)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("unreachable: took %s with a 100ms timeout", d)
	}
}

// TestClientServerComesUpLate: a finish survives an ExecDB restart: the port refuses connections
// until the server comes up, and the command retries until it does.
func TestClientServerComesUpLate(t *testing.T) {
	t.Parallel()
	srv, vars := cliServer(t)
	id := createJob(t, vars)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	done := make(chan *httptest.Server, 1)
	go func() {
		time.Sleep(200 * time.Millisecond)
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("listen on %s again: %v", addr, err)
			done <- nil
			return
		}
		late := httptest.NewUnstartedServer(srv.Handler())
		late.Listener = l
		late.Start()
		done <- late
	}()
	vars["EXECDB_SERVER"] = "http://" + addr
	r := runCLI(t, vars, "job", "finish", id.String(), "--finished", "--timeout", "20s")
	if late := <-done; late != nil {
		defer late.Close()
	}
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stderr, "retrying") {
		t.Errorf("stderr %q, want retry notes", r.stderr)
	}
	if jobs := srv.Jobs(t); len(jobs) != 1 || jobs[0].State != statemachine.Finished {
		t.Errorf("jobs: got %+v, want the one job, FINISHED", jobs)
	}
}

func TestClientReschedule(t *testing.T) {
	t.Parallel()
	srv, vars := cliServer(t)
	id := createJob(t, vars)
	wantCode(t, runCLI(t, vars, "job", "finish", id.String(), "--crashed", "--cause", "task", "--fatal"), command.ExitOK)
	r := runCLI(t, vars, "job", "reschedule", id.String())
	wantCode(t, r, command.ExitRefused)
	if !strings.Contains(r.stderr, "409") || !strings.Contains(r.stderr, "fatal") {
		t.Errorf("reschedule of a fatal crash: stderr %q, want a 409 that says the crash is fatal", r.stderr)
	}
	r = runCLI(t, vars, "job", "reschedule", id.String(), "--force")
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stdout, "Rescheduled "+id.String()) || !strings.Contains(r.stdout, "attempt:") {
		t.Errorf("reschedule --force: got %q", r.stdout)
	}
	reqs := srv.Requests()
	if last := reqs[len(reqs)-1]; string(last.Body) != `{"force":true}` {
		t.Errorf("reschedule --force: body %s, want {\"force\":true}", last.Body)
	}
	r = runCLI(t, vars, "job", "reschedule", id.String())
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stdout, "already rescheduled") {
		t.Errorf("repeated reschedule: got %q", r.stdout)
	}
}

func TestClientJobsAndStats(t *testing.T) {
	t.Parallel()
	srv, vars := cliServer(t)
	var crashed []uuid.UUID
	for i, cause := range []string{"minion", "minion", "network", ""} {
		id := createJob(t, vars, "--data", "n="+string(rune('0'+i)))
		args := []string{"job", "finish", id.String(), "--finished"}
		if cause != "" {
			args = []string{"job", "finish", id.String(), "--crashed", "--notify", "taskotron", "--cause", cause, "--kv", "reason=TIMED_OUT"}
			crashed = append(crashed, id)
		}
		wantCode(t, runCLI(t, vars, args...), command.ExitOK)
	}
	r := runCLI(t, vars, "jobs", "state=CRASHED", "--filter", "taskname=rpmlint")
	wantCode(t, r, command.ExitOK)
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	if len(lines) != 4 || !strings.Contains(lines[0], "UUID") || !strings.Contains(lines[0], "CRASH") {
		t.Fatalf("jobs: got\n%s\nwant a header and 3 rows", r.stdout)
	}
	if !strings.Contains(r.stdout, crashed[0].String()) || !strings.Contains(r.stdout, "taskotron/minion") {
		t.Errorf("jobs: got\n%s", r.stdout)
	}
	reqs := srv.Requests()
	if q := reqs[len(reqs)-1].Query; q != "state=CRASHED&taskname=rpmlint" {
		t.Errorf("jobs: query %q", q)
	}

	r = runCLI(t, vars, "stats", "state=CRASHED", "--group-by", "cause", "--group-by", "kv.reason", "--bucket", "day")
	wantCode(t, r, command.ExitOK)
	for _, w := range []string{"CAUSE", "KV.REASON", "COUNT", "PERCENT", "minion", "66.7%", "network", "33.3%", "TIMED_OUT"} {
		if !strings.Contains(r.stdout, w) {
			t.Errorf("stats: output lacks %q:\n%s", w, r.stdout)
		}
	}
	reqs = srv.Requests()
	if q := reqs[len(reqs)-1].Query; q != "bucket=day&group_by=cause%2Ckv.reason&state=CRASHED" {
		t.Errorf("stats: query %q", q)
	}
	r = runCLI(t, vars, "stats", "--json")
	wantCode(t, r, command.ExitOK)
	if !json.Valid([]byte(r.stdout)) {
		t.Errorf("stats --json: got %q, want JSON", r.stdout)
	}
}

func TestPrintStats(t *testing.T) {
	t.Parallel()
	var rows []statsRow
	err := json.Unmarshal([]byte(`[
		{"group":{"cause":"minion","kv.reason":null},"bucket":"2024-05-01T00:00:00Z","count":3,"share":0.75,"queue_wait":{"p50":12.4,"p90":30,"max":31},"run_time":{"p50":90,"p90":3600,"max":4000}},
		{"group":{"cause":"network","kv.reason":"DNS"},"bucket":"2024-05-02T00:00:00Z","count":1,"share":0.25,"queue_wait":null,"run_time":null}
	]`), &rows)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	printStats(&b, rows, []string{"kv.reason", "cause"})
	want := "KV.REASON  CAUSE    BUCKET                COUNT  PERCENT  WAIT P50  WAIT P90  RUN P50  RUN P90  RUN MAX\n" +
		"-          minion   2024-05-01T00:00:00Z  3      75.0%    12s       30s       1m30s    1h0m0s   1h6m40s\n" +
		"DNS        network  2024-05-02T00:00:00Z  1      25.0%    -         -         -        -        -\n"
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
}

func TestParseInterleaved(t *testing.T) {
	t.Parallel()
	c := newInvocation(command.Env{Stdout: &bytes.Buffer{}, Stderr: &bytes.Buffer{}, Getenv: func(string) string { return "" }}, "x", "", "")
	var a string
	c.stringVar(&a, "a", "")
	pos, _, ok := c.parse([]string{"p1", "--a", "1", "p2", "--json", "--", "--p3"})
	if !ok || a != "1" || !c.co.json || strings.Join(pos, " ") != "p1 p2 --p3" {
		t.Errorf("got %v %q %v, want [p1 p2 --p3], a=1, json", pos, a, c.co.json)
	}
}
