// Package buildbot_test runs deploy/buildbot/master.cfg in a real Buildbot (Debian's buildbot
// and buildbot-worker 3.7) against a real `execdb serve`, with a fake runtask, and checks what
// ExecDB and Buildbot record for each way a job's build can go.
package buildbot_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Buildbot's result codes (buildbot.process.results).
const (
	success   = 0
	warnings  = 1
	failure   = 2
	cancelled = 6
)

var resultNames = map[int]string{0: "SUCCESS", 1: "WARNINGS", 2: "FAILURE", 3: "SKIPPED", 4: "EXCEPTION", 5: "RETRY", 6: "CANCELLED"}

func resultName(r *int) string {
	if r == nil {
		return "none"
	}
	return resultNames[*r]
}

const workerName = "e2e-worker"

// runtask is the fake runtask: a python3 script that does what its task's name says (the last
// argument, tasks/<taskname>), records its arguments, and writes its status file with
// execdb_messages.statusfile, the reference writer, so that ExecDB's reader is tested on it.
const runtask = `
import argparse, json, os, signal, sys, time
sys.path.insert(0, os.environ["EXECDB_MESSAGES"])
from execdb_messages.statusfile import write_status

p = argparse.ArgumentParser()
for opt in ("--item", "--type", "--arch", "--uuid", "--status-file"):
    p.add_argument(opt, required=True)
p.add_argument("task")
a = p.parse_args()
with open(os.environ["RUNTASK_LOG"], "a") as f:
    f.write(json.dumps(dict(vars(a), cwd=os.getcwd())) + "\n")
what = os.path.basename(a.task)


class CheckbError(Exception):
    pass


class CheckbMinionError(CheckbError):
    pass


class CheckbInterruptError(CheckbError):
    def __init__(self, signum, signame):
        self.signum, self.signame = signum, signame

    def __str__(self):
        return "Received system signal %d (%s)" % (self.signum, self.signame)


def interrupted(signum, frame):
    raise CheckbInterruptError(signum, signal.Signals(signum).name)


signal.signal(signal.SIGTERM, interrupted)
if what == "exit0-nofile":
    sys.exit(0)
if what == "exit1-nofile":
    sys.exit(1)
try:
    print("runtask: running", what, flush=True)
    if what == "crash":
        raise CheckbMinionError("Disposable client failed to boot")
    if what == "hang":
        time.sleep(60)  # until Buildbot's SIGTERM; bounded in case the test died
    if what == "slow":
        time.sleep(4)
except BaseException as e:
    keyvals = {"step": "MINION_CREATION"} if what == "crash" else {"step": "DIRECTIVE"}
    write_status(a.status_file, e, keyvals)
    print("runtask: crashed:", e, flush=True)
    sys.exit(1)
write_status(a.status_file)
print("runtask: done", flush=True)
`

// The stand-in for buildbot-www (not packaged in Debian): the `base` www plugin Buildbot needs
// before it serves its REST API, which lives in the master itself. It serves no UI.
var stubWWW = map[string]string{
	"stubwww/__init__.py":                      "from buildbot.www.plugin import Application\n\nep = Application(__name__, 'REST only: a stand-in for buildbot-www in ExecDB tests')\n",
	"stubwww/VERSION":                          "3.7.0\n",
	"stubwww/static/index.html":                "<!doctype html><title>buildbot</title>\n",
	"stubwww-3.7.0.dist-info/METADATA":         "Metadata-Version: 2.1\nName: stubwww\nVersion: 3.7.0\n",
	"stubwww-3.7.0.dist-info/entry_points.txt": "[buildbot.www]\nbase = stubwww:ep\n",
}

// env is one run of the whole stack.
type env struct {
	t          *testing.T
	dir        string
	execdbURL  string
	token      string
	wwwURL     string // Buildbot's URL, BUILDBOT_URL
	pbPort     int
	changePass string
	runtaskLog string
	procs      []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func TestBuildbot(t *testing.T) {
	skip := t.Skipf
	if os.Getenv("CI") != "" {
		skip = t.Fatalf // .ci/run installs what this test needs: in CI it must not skip
	}
	for _, bin := range []string{"buildbot", "buildbot-worker"} {
		if _, err := exec.LookPath(bin); err != nil {
			skip("%s is not installed: apt-get install buildbot buildbot-worker (Debian) to run the Buildbot end-to-end test", bin)
		}
	}
	python, err := exec.LookPath("/usr/bin/python3")
	if err != nil {
		if python, err = exec.LookPath("python3"); err != nil {
			skip("python3 is not installed: the fake runtask needs it")
		}
	}
	e := setup(t, python)

	// The jobs, each created in ExecDB first as Trigger does. "slow" keeps the worker busy
	// while the next five queue behind it: every one of them must run (collapseRequests=False).
	type job struct {
		task string
		uuid string
	}
	queued := []*job{{task: "slow"}, {task: "finish"}, {task: "crash"}, {task: "exit0-nofile"}, {task: "exit1-nofile"}, {task: "finish"}}
	for _, j := range queued {
		j.uuid = e.createJob(j.task)
	}
	for _, j := range queued {
		e.sendchange(j.uuid, j.task)
	}
	timeout := &job{task: "hang", uuid: e.createJob("hang")}
	e.sendchange(timeout.uuid, timeout.task)
	cancel := &job{task: "hang", uuid: e.createJob("hang")}
	e.sendchange(cancel.uuid, cancel.task)

	// Cancel the second hanging build once its runtask runs.
	e.waitRuntask(cancel.uuid, 120*time.Second)
	b := e.build(cancel.uuid)
	e.rpc(fmt.Sprintf("/api/v2/builds/%d", b.BuildID), "stop", map[string]any{"reason": "cancelled by the test"}, http.StatusOK)

	type want struct {
		state         string
		reason        string // crash keyvals reason
		exitCode      string // crash keyvals exit_code, "" for none
		buildResult   int
		finishResult  int
		runtaskResult int
		notify, cause string
	}
	checks := []struct {
		name string
		job  *job
		want want
	}{
		{"slow build that kept the worker busy", queued[0], want{state: "FINISHED", buildResult: success, finishResult: success, runtaskResult: success}},
		{"status file FINISHED", queued[1], want{state: "FINISHED", buildResult: success, finishResult: success, runtaskResult: success}},
		{"status file CRASHED with keyvals", queued[2], want{state: "CRASHED", reason: "CheckbMinionError", notify: "taskotron", cause: "minion",
			buildResult: failure, finishResult: success, runtaskResult: failure}},
		{"exit 0 without a status file", queued[3], want{state: "FINISHED", buildResult: success, finishResult: success, runtaskResult: success}},
		{"exit 1 without a status file", queued[4], want{state: "CRASHED", reason: "STATUS_FILE_MISSING", exitCode: "1", notify: "taskotron", cause: "unknown",
			buildResult: failure, finishResult: warnings, runtaskResult: failure}},
		{"another queued one", queued[5], want{state: "FINISHED", buildResult: success, finishResult: success, runtaskResult: success}},
		{"runtask timed out (maxTime): SIGTERM, its own crash", timeout, want{state: "CRASHED", reason: "CheckbInterruptError", notify: "taskotron", cause: "unknown",
			buildResult: failure, finishResult: success, runtaskResult: failure}},
		{"build cancelled: SIGTERM, its own crash", cancel, want{state: "CRASHED", reason: "CheckbInterruptError", notify: "taskotron", cause: "unknown",
			buildResult: cancelled, finishResult: success, runtaskResult: cancelled}},
	}
	// All of them run one after the other on the one worker, in well under two minutes; one
	// deadline for all, so that a broken run fails in that time rather than one wait per job.
	deadline := time.Now().Add(2 * time.Minute)
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			e := e.with(t)
			job := e.waitJob(c.job.uuid, deadline)
			b := e.waitBuild(c.job.uuid, deadline)
			if job.State != c.want.state {
				t.Errorf("job state %s, want %s (crash %+v)", job.State, c.want.state, job.Crash)
			}
			if c.want.state == "CRASHED" && job.Crash != nil {
				kv := job.Crash.KeyVals
				if got := strings.Join(kv["reason"], ","); got != c.want.reason {
					t.Errorf("crash reason %q, want %q (keyvals %v)", got, c.want.reason, kv)
				}
				if got := strings.Join(kv["exit_code"], ","); got != c.want.exitCode {
					t.Errorf("crash exit_code %q, want %q", got, c.want.exitCode)
				}
				if job.Crash.Notify != c.want.notify || job.Crash.Cause != c.want.cause {
					t.Errorf("crash %s/%s, want %s/%s", job.Crash.Notify, job.Crash.Cause, c.want.notify, c.want.cause)
				}
				if c.want.reason == "CheckbInterruptError" && strings.Join(kv["signal"], ",") != "15" {
					t.Errorf("interrupted runtask: keyvals %v, want signal=15 (SIGTERM)", kv)
				}
			}
			e.checkRunner(t, job, b)
			e.checkHistory(t, c.job.uuid)
			steps := e.steps(b.BuildID)
			if got := resultName(b.Results); got != resultNames[c.want.buildResult] {
				t.Errorf("build result %s, want %s; steps %s", got, resultNames[c.want.buildResult], steps)
			}
			for name, w := range map[string]int{"runtask": c.want.runtaskResult, "execdb finish": c.want.finishResult, "execdb start": success} {
				st, ok := steps[name]
				if !ok {
					t.Errorf("no step %q; steps %s", name, steps)
					continue
				}
				if got := resultName(st.Results); got != resultNames[w] {
					t.Errorf("step %q: result %s, want %s", name, got, resultNames[w])
				}
			}
		})
	}

	// Every job ran exactly once: no request was merged into another, none ran twice.
	t.Run("each job ran once", func(t *testing.T) {
		e := e.with(t)
		counts := map[string]int{}
		for _, inv := range e.runtaskCalls() {
			counts[inv["uuid"]]++
		}
		for _, j := range append(queued, timeout, cancel) {
			if counts[j.uuid] != 1 {
				t.Errorf("runtask ran %d times for %s (%s), want 1", counts[j.uuid], j.uuid, j.task)
			}
		}
		for _, r := range e.buildRequests() {
			if r.Results != nil && *r.Results == 3 {
				t.Errorf("build request %d was SKIPPED (merged into another)", r.BuildRequestID)
			}
		}
	})

	// The force form starts a build with the same properties.
	t.Run("force scheduler", func(t *testing.T) {
		e := e.with(t)
		id := e.createJob("finish")
		e.rpc("/api/v2/forceschedulers/force", "force", map[string]any{
			"builderid": e.builderID(), "uuid": id, "taskname": "finish", "item": "htop-3.3.0-1.fc45",
			"item_type": "koji_build", "arch": "x86_64", "reason": "test", "username": "tester <t@example.org>",
		}, http.StatusOK)
		deadline := time.Now().Add(time.Minute)
		job := e.waitJob(id, deadline)
		b := e.waitBuild(id, deadline)
		if job.State != "FINISHED" || resultName(b.Results) != "SUCCESS" {
			t.Errorf("forced build: job %s, build %s; want FINISHED, SUCCESS", job.State, resultName(b.Results))
		}
		e.checkRunner(t, job, b)
		var arch string
		for _, inv := range e.runtaskCalls() {
			if inv["uuid"] == id {
				arch = inv["arch"]
			}
		}
		if arch != "x86_64" {
			t.Errorf("forced build ran runtask with --arch %q, want x86_64", arch)
		}
	})

	// Rebuilding a finished build would run its job (its uuid) again: refused.
	t.Run("rebuild refused", func(t *testing.T) {
		e := e.with(t)
		b := e.build(queued[1].uuid)
		e.rpc(fmt.Sprintf("/api/v2/builds/%d", b.BuildID), "rebuild", map[string]any{}, http.StatusForbidden)
	})
}

// with is e for a subtest: its failures end t, not the whole test.
func (e *env) with(t *testing.T) *env {
	c := *e
	c.t = t
	return &c
}

// setup builds execdb, starts it, a Buildbot master from master.cfg and a worker.
func setup(t *testing.T, python string) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), token: "tok-" + uuid.NewString(), changePass: "change-" + uuid.NewString()}
	t.Cleanup(e.stop)
	bin := filepath.Join(e.dir, "bin")
	must(t, os.MkdirAll(bin, 0o755))

	out, err := exec.Command("go", "build", "-o", filepath.Join(bin, "execdb"), "../../cmd/execdb").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/execdb: %v\n%s", err, out)
	}
	must(t, os.WriteFile(filepath.Join(bin, "runtask"), []byte("#!"+python+"\n"+runtask), 0o755))

	// ExecDB, on SQLite, with a tokens file: the token Buildbot's steps use and the test's own
	// (Trigger's part).
	tokens := filepath.Join(e.dir, "tokens")
	must(t, os.WriteFile(tokens, []byte("buildbot:"+e.token+"\ntest:admin-"+e.token+"\n"), 0o600))
	execdbPort := freePort(t)
	e.execdbURL = fmt.Sprintf("http://127.0.0.1:%d", execdbPort)
	e.start("execdb", e.dir, []string{
		"EXECDB_DB=sqlite:" + filepath.Join(e.dir, "execdb.db"),
		fmt.Sprintf("EXECDB_LISTEN=127.0.0.1:%d", execdbPort),
		"EXECDB_TOKENS_FILE=" + tokens,
		"EXECDB_LOG_FORMAT=console",
	}, filepath.Join(bin, "execdb"), "serve")
	e.waitHTTP(e.execdbURL+"/readyz", 30*time.Second)

	// The master: create-master, our master.cfg, the token in its secrets directory, and the
	// stand-in www plugin on its PYTHONPATH.
	master := filepath.Join(e.dir, "master")
	e.run("buildbot", "create-master", "-q", master)
	cfg, err := os.ReadFile("master.cfg")
	must(t, err)
	must(t, os.WriteFile(filepath.Join(master, "master.cfg"), cfg, 0o644))
	must(t, os.Mkdir(filepath.Join(master, "secrets"), 0o700))
	must(t, os.WriteFile(filepath.Join(master, "secrets", "execdb_token"), []byte(e.token+"\n"), 0o600))
	stub := filepath.Join(e.dir, "stubwww")
	for name, content := range stubWWW {
		p := filepath.Join(stub, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), 0o644))
	}
	e.pbPort = freePort(t)
	wwwPort := freePort(t)
	e.wwwURL = fmt.Sprintf("http://127.0.0.1:%d/", wwwPort)
	e.start("master", master, []string{
		"PYTHONPATH=" + stub,
		"EXECDB_SERVER=" + e.execdbURL,
		"BUILDBOT_URL=" + e.wwwURL,
		"BUILDBOT_WORKER_NAME=" + workerName,
		"BUILDBOT_WORKER_PASSWORD=worker-" + e.token,
		fmt.Sprintf("BUILDBOT_WORKER_PORT=tcp:%d:interface=127.0.0.1", e.pbPort),
		"BUILDBOT_CHANGE_PASSWORD=" + e.changePass,
		fmt.Sprintf("BUILDBOT_WWW_PORT=tcp:%d:interface=127.0.0.1", wwwPort),
		// Short enough for the timeout case; the other builds take a few seconds at most.
		"RUNTASK_MAX_TIME=10s",
		"RUNTASK_SIGTERM_TIME=5s",
	}, "buildbot", "start", "--nodaemon", master)
	e.waitHTTP(e.wwwURL+"api/v2/builders", 60*time.Second)

	// The worker, on loopback, with execdb and the fake runtask first on its PATH.
	wdir := filepath.Join(e.dir, "worker")
	e.run("buildbot-worker", "create-worker", "-q", wdir, fmt.Sprintf("127.0.0.1:%d", e.pbPort), workerName, "worker-"+e.token)
	e.runtaskLog = filepath.Join(e.dir, "runtask.log")
	messages, err := filepath.Abs("../../schemas/python")
	must(t, err)
	e.start("worker", wdir, []string{
		"PATH=" + bin + ":" + os.Getenv("PATH"),
		"RUNTASK_LOG=" + e.runtaskLog,
		"EXECDB_MESSAGES=" + messages,
	}, "buildbot-worker", "start", "--nodaemon", wdir)
	deadline := time.Now().Add(60 * time.Second)
	for {
		var ws struct {
			Workers []struct {
				Name        string           `json:"name"`
				ConnectedTo []map[string]any `json:"connected_to"`
			} `json:"workers"`
		}
		e.get(e.wwwURL+"api/v2/workers", &ws)
		if len(ws.Workers) == 1 && ws.Workers[0].Name == workerName && len(ws.Workers[0].ConnectedTo) > 0 {
			break
		}
		if time.Now().After(deadline) {
			e.fatalf("the worker did not connect: %+v", ws)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return e
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// freePort is a TCP port on loopback that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// run runs a command to its end and fails the test if it fails.
func (e *env) run(name string, args ...string) string {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		e.fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// start starts a long-running process, its output in a log file; stop ends it.
func (e *env) start(name, dir string, vars []string, prog string, args ...string) {
	e.t.Helper()
	log := filepath.Join(e.dir, name+".log")
	f, err := os.Create(log)
	must(e.t, err)
	cmd := exec.Command(prog, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), vars...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		e.t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: log, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	e.procs = append(e.procs, p)
}

// stop ends the processes start started, last first: SIGTERM to each one's process group (the
// worker's runtask children included), SIGKILL after ten seconds.
func (e *env) stop() {
	for i := len(e.procs) - 1; i >= 0; i-- {
		p := e.procs[i]
		pgid := p.cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-p.done
		}
	}
	e.procs = nil
}

// fatalf fails the test with the logs of every process.
func (e *env) fatalf(format string, args ...any) {
	e.t.Helper()
	e.t.Fatalf(format+"\n%s", append(args, e.logs())...)
}

func (e *env) logs() string {
	var b strings.Builder
	files := []string{}
	for _, p := range e.procs {
		files = append(files, p.log)
	}
	files = append(files, filepath.Join(e.dir, "master", "twistd.log"), filepath.Join(e.dir, "worker", "twistd.log"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if len(data) > 6000 {
			data = data[len(data)-6000:]
		}
		fmt.Fprintf(&b, "--- %s (end) ---\n%s\n", f, data)
	}
	return b.String()
}

func (e *env) waitHTTP(url string, d time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		for _, p := range e.procs {
			select {
			case <-p.done:
				e.fatalf("%s exited: %v", p.name, p.err)
			default:
			}
		}
		if time.Now().After(deadline) {
			e.fatalf("%s did not answer 200 within %s (last error %v)", url, d, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// do makes an HTTP request with a JSON body and decodes a JSON answer into out.
func (e *env) do(method, url, token string, body, out any) (int, []byte) {
	e.t.Helper()
	var r io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		must(e.t, err)
		r = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, r)
	must(e.t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if out != nil && resp.StatusCode < 300 {
		if err := json.Unmarshal(data, out); err != nil {
			e.fatalf("%s %s: %v in %s", method, url, err, data)
		}
	}
	return resp.StatusCode, data
}

func (e *env) get(url string, out any) {
	e.t.Helper()
	if code, data := e.do("GET", url, "", nil, out); code != http.StatusOK {
		e.fatalf("GET %s: %d %s", url, code, data)
	}
}

// rpc calls a Buildbot REST control method and checks the HTTP status.
func (e *env) rpc(path, method string, params map[string]any, want int) {
	e.t.Helper()
	body := map[string]any{"jsonrpc": "2.0", "method": method, "id": 1, "params": params}
	code, data := e.do("POST", e.wwwURL+strings.TrimPrefix(path, "/"), "", body, nil)
	if code != want {
		e.fatalf("POST %s %s: %d %s, want %d", path, method, code, data, want)
	}
	if want == http.StatusOK && bytes.Contains(data, []byte(`"error"`)) {
		e.fatalf("POST %s %s: %s", path, method, data)
	}
}

// createJob creates a job in ExecDB, as Trigger does before it asks Buildbot for a build.
func (e *env) createJob(task string) string {
	e.t.Helper()
	id := uuid.NewString()
	body := map[string]any{"uuid": id, "taskname": task, "item": "htop-3.3.0-1.fc45", "item_type": "koji_build", "arch": "noarch"}
	if code, data := e.do("POST", e.execdbURL+"/api/v1/jobs", "admin-"+e.token, body, nil); code != http.StatusCreated {
		e.fatalf("create job: %d %s", code, data)
	}
	return id
}

// sendchange starts a build for the job, as Trigger does.
func (e *env) sendchange(id, task string) {
	e.t.Helper()
	e.run("buildbot", "sendchange",
		"--master", fmt.Sprintf("localhost:%d", e.pbPort),
		"--auth", "trigger:"+e.changePass,
		"--who", "trigger",
		"--property", "uuid:"+id,
		"--property", "taskname:"+task,
		"--property", "item:htop-3.3.0-1.fc45",
		"--property", "item_type:koji_build",
		"--property", "arch:noarch")
}

type execdbJob struct {
	UUID   string `json:"uuid"`
	State  string `json:"state"`
	LogURL string `json:"log_url"`
	Runner *struct {
		Name, JobID, Worker, URL string
	} `json:"runner"`
	Crash *struct {
		Notify  string              `json:"notify"`
		Cause   string              `json:"cause"`
		KeyVals map[string][]string `json:"keyvals"`
	} `json:"crash"`
}

func (e *env) waitJob(id string, deadline time.Time) execdbJob {
	e.t.Helper()
	for {
		var j execdbJob
		e.get(e.execdbURL+"/api/v1/jobs/"+id, &j)
		if j.State == "FINISHED" || j.State == "CRASHED" {
			return j
		}
		if time.Now().After(deadline) {
			e.fatalf("job %s still %s at the deadline", id, j.State)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

type bbBuild struct {
	BuildID    int  `json:"buildid"`
	Number     int  `json:"number"`
	BuilderID  int  `json:"builderid"`
	Complete   bool `json:"complete"`
	Results    *int `json:"results"`
	Properties map[string][]any
}

func (e *env) builds() []bbBuild {
	e.t.Helper()
	var r struct {
		Builds []bbBuild `json:"builds"`
	}
	e.get(e.wwwURL+"api/v2/builds?property=uuid", &r)
	return r.Builds
}

// build is the job's build; the test fails unless there is exactly one.
func (e *env) build(id string) bbBuild {
	e.t.Helper()
	var found []bbBuild
	for _, b := range e.builds() {
		if p, ok := b.Properties["uuid"]; ok && len(p) > 0 && p[0] == id {
			found = append(found, b)
		}
	}
	if len(found) != 1 {
		e.fatalf("job %s: %d builds, want 1", id, len(found))
	}
	return found[0]
}

func (e *env) waitBuild(id string, deadline time.Time) bbBuild {
	e.t.Helper()
	for {
		b := e.build(id)
		if b.Complete {
			return b
		}
		if time.Now().After(deadline) {
			e.fatalf("build %d of job %s not complete at the deadline", b.BuildID, id)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (e *env) builderID() int {
	e.t.Helper()
	var r struct {
		Builders []struct {
			BuilderID int    `json:"builderid"`
			Name      string `json:"name"`
		} `json:"builders"`
	}
	e.get(e.wwwURL+"api/v2/builders", &r)
	for _, b := range r.Builders {
		if b.Name == "all" {
			return b.BuilderID
		}
	}
	e.fatalf("no builder all: %+v", r)
	return 0
}

type bbStep struct {
	Number  int    `json:"number"`
	Name    string `json:"name"`
	Results *int   `json:"results"`
}

type stepSet map[string]bbStep

func (s stepSet) String() string {
	var parts []string
	for name, st := range s {
		parts = append(parts, fmt.Sprintf("%d %q %s", st.Number, name, resultName(st.Results)))
	}
	return "[" + strings.Join(parts, "; ") + "]"
}

func (e *env) steps(buildID int) stepSet {
	e.t.Helper()
	var r struct {
		Steps []bbStep `json:"steps"`
	}
	e.get(fmt.Sprintf("%sapi/v2/builds/%d/steps", e.wwwURL, buildID), &r)
	s := stepSet{}
	for _, st := range r.Steps {
		s[st.Name] = st
	}
	return s
}

type bbRequest struct {
	BuildRequestID int  `json:"buildrequestid"`
	Results        *int `json:"results"`
}

func (e *env) buildRequests() []bbRequest {
	e.t.Helper()
	var r struct {
		Requests []bbRequest `json:"buildrequests"`
	}
	e.get(e.wwwURL+"api/v2/buildrequests", &r)
	return r.Requests
}

// checkRunner: the runner ExecDB has is this build, with URLs under BUILDBOT_URL, and the log
// URL names runtask's step by its number.
func (e *env) checkRunner(t *testing.T, j execdbJob, b bbBuild) {
	t.Helper()
	if j.Runner == nil {
		t.Errorf("job %s has no runner", j.UUID)
		return
	}
	buildURL := fmt.Sprintf("%s#builders/%d/builds/%d", e.wwwURL, b.BuilderID, b.Number)
	if j.Runner.Name != "buildbot" || j.Runner.JobID != fmt.Sprintf("all/%d", b.Number) ||
		j.Runner.Worker != workerName || j.Runner.URL != buildURL {
		t.Errorf("runner %+v, want buildbot all/%d on %s at %s", *j.Runner, b.Number, workerName, buildURL)
	}
	steps := e.steps(b.BuildID)
	if want := fmt.Sprintf("%s/steps/%d/logs/stdio", buildURL, steps["runtask"].Number); j.LogURL != want {
		t.Errorf("log_url %q, want %q", j.LogURL, want)
	}
	// The log URL answers in Buildbot's REST API under the same path.
	var logs struct {
		Logs []struct {
			Name string `json:"name"`
		} `json:"logs"`
	}
	e.get(fmt.Sprintf("%sapi/v2/builds/%d/steps/%d/logs", e.wwwURL, b.BuildID, steps["runtask"].Number), &logs)
	if len(logs.Logs) == 0 || logs.Logs[0].Name != "stdio" {
		t.Errorf("runtask step %d has logs %+v, want stdio", steps["runtask"].Number, logs.Logs)
	}
}

// checkHistory: the job's history is a create, a start and an end, each applied, over HTTP,
// and then at most ExecDB's own note on automatic rescheduling (off here: declined).
func (e *env) checkHistory(t *testing.T, id string) {
	t.Helper()
	var evs struct {
		Data []map[string]any `json:"data"`
	}
	code, data := e.do("GET", e.execdbURL+"/api/v1/jobs/"+id+"/events", "", nil, &evs)
	if code != http.StatusOK {
		t.Fatalf("events: %d %s", code, data)
	}
	var kinds []string
	for _, ev := range evs.Data {
		kinds = append(kinds, fmt.Sprintf("%v/%v/%v", ev["kind"], ev["verdict"], ev["source"]))
	}
	want := []string{"create/applied/http", "start/applied/http", "end/applied/http"}
	ok := len(kinds) >= len(want) && slices.Equal(kinds[:len(want)], want)
	for _, k := range kinds[min(len(kinds), len(want)):] {
		ok = ok && strings.HasPrefix(k, "auto_reschedule/")
	}
	if !ok {
		t.Errorf("history %v, want %v (and at most an auto_reschedule note)\n%s", kinds, want, data)
	}
}

// runtaskCalls are the fake runtask's recorded arguments, one map a run.
func (e *env) runtaskCalls() []map[string]string {
	e.t.Helper()
	f, err := os.Open(e.runtaskLog)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	must(e.t, err)
	defer f.Close()
	var calls []map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]string
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			e.fatalf("runtask.log: %v", err)
		}
		calls = append(calls, m)
	}
	return calls
}

// waitRuntask waits until the fake runtask runs for the job.
func (e *env) waitRuntask(id string, d time.Duration) {
	e.t.Helper()
	deadline := time.Now().Add(d)
	for {
		for _, c := range e.runtaskCalls() {
			if c["uuid"] == id {
				time.Sleep(500 * time.Millisecond) // let it install its SIGTERM handler
				return
			}
		}
		if time.Now().After(deadline) {
			e.fatalf("runtask did not start for %s within %s", id, d)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
