//go:build drills

package drills

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binary    string
	binDir    string // removed by TestMain
	buildErr  error
)

// execdbBinary builds ./cmd/execdb of this module once (or takes EXECDB_DRILL_BIN).
func execdbBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		if cfg.bin != "" {
			binary = cfg.bin
			return
		}
		dir, err := os.MkdirTemp("", "execdb-drill-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir = dir
		binary = filepath.Join(dir, "execdb")
		// go test puts its own GOROOT/bin first on the PATH of the test binary.
		cmd := exec.Command("go", "build", "-o", binary, "./cmd/execdb")
		cmd.Dir = ".." // the module root
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build ./cmd/execdb: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binary
}

// serve is one running `execdb serve` process.
type serve struct {
	name      string
	cmd       *exec.Cmd
	url       string // http://127.0.0.1:port
	logPath   string
	done      chan struct{}
	exitErr   error
	hwm       atomic.Int64 // peak resident set (VmHWM), kB
	consumers atomic.Int32 // "amqp consumer connected" lines so far
	killed    bool
}

// startServe runs `execdb serve` with args (after --db, --listen and the log format), its
// JSON log written to logDir/<name>.log, and waits until it listens.
func startServe(t *testing.T, name, logDir, db, listen string, args ...string) *serve {
	t.Helper()
	all := append([]string{"serve", "--db", db, "--listen", listen, "--log-format", "json"}, args...)
	cmd := exec.Command(execdbBinary(t), all...)
	// Nothing of the caller's EXECDB_* configuration leaks into the drill.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EXECDB_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	s := &serve{name: name, cmd: cmd, logPath: filepath.Join(logDir, name+".log"), done: make(chan struct{})}
	logFile, err := os.Create(s.logPath)
	if err != nil {
		t.Fatal(err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = logFile
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	addr := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			line := sc.Bytes()
			logFile.Write(line)
			logFile.Write([]byte{'\n'})
			if !bytes.Contains(line, []byte(`"msg":"listening"`)) && !bytes.Contains(line, []byte(`"msg":"amqp consumer connected"`)) {
				continue
			}
			var entry struct {
				Msg  string `json:"msg"`
				Addr string `json:"addr"`
			}
			if json.Unmarshal(line, &entry) != nil {
				continue
			}
			switch entry.Msg {
			case "listening":
				select {
				case addr <- entry.Addr:
				default:
				}
			case "amqp consumer connected":
				s.consumers.Add(1)
			}
		}
		io.Copy(logFile, stderr)
	}()
	go func() {
		s.sampleRSS()
		<-scanned
		s.exitErr = cmd.Wait()
		logFile.Close()
		close(s.done)
	}()
	t.Cleanup(func() { s.kill9() })
	select {
	case a := <-addr:
		s.url = "http://" + a
	case <-s.done:
		t.Fatalf("%s exited at start: %v (log %s)", name, s.exitErr, s.logPath)
	case <-time.After(90 * time.Second):
		t.Fatalf("%s did not start listening in 90 s (log %s)", name, s.logPath)
	}
	return s
}

// sampleRSS keeps the process's VmHWM (peak resident set) every 100 ms until it exits.
func (s *serve) sampleRSS() {
	path := fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid)
	for {
		if !s.readHWM(path) {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// readHWM reads VmHWM once; false once the process is gone (a zombie has no VmHWM).
func (s *serve) readHWM(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err == nil && kb > s.hwm.Load() {
				s.hwm.Store(kb)
			}
			return true
		}
	}
	return false
}

// running reports whether the process has not exited.
func (s *serve) running() bool {
	select {
	case <-s.done:
		return false
	default:
		return true
	}
}

// kill9 reads the peak RSS one last time and kills the process with SIGKILL.
func (s *serve) kill9() {
	if !s.running() {
		return
	}
	s.readHWM(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	s.killed = true
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
}

// stop ends the process with SIGTERM, as an operator would; it must exit 0 within a minute.
func (s *serve) stop(t *testing.T) {
	t.Helper()
	if !s.running() {
		return
	}
	s.readHWM(fmt.Sprintf("/proc/%d/status", s.cmd.Process.Pid))
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		if s.exitErr != nil {
			t.Errorf("%s exited with %v after SIGTERM (log %s)", s.name, s.exitErr, s.logPath)
		}
	case <-time.After(time.Minute):
		t.Errorf("%s did not stop within a minute of SIGTERM (log %s)", s.name, s.logPath)
		s.kill9()
	}
}

// peakMB is the peak RSS in MB.
func (s *serve) peakMB() float64 { return float64(s.hwm.Load()) / 1024 }

// waitConsumer waits until the process has connected its AMQP consumer n times.
func (s *serve) waitConsumer(t *testing.T, n int32) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for s.consumers.Load() < n {
		if !s.running() || time.Now().After(deadline) {
			t.Fatalf("%s: AMQP consumer not connected (log %s)", s.name, s.logPath)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
