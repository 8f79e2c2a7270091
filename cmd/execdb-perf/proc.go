package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// serve is one `execdb serve` process the driver started, restarted after a kill -9 under the
// same name, address and environment.
type serve struct {
	name    string // as the report names it: "PostgreSQL", "SQLite", "bus"
	bin     string
	env     []string
	addr    string
	logPath string
	log     *os.File
	cmd     *exec.Cmd
	exited  chan struct{}
	// peakKB is the highest VmHWM of every process of this serve so far (a kill -9 ends one).
	peakKB int
}

// startServe starts execdb serve on a free loopback port with env (EXECDB_* of the caller's
// environment are dropped, so that only what the driver sets applies) and waits until /readyz
// answers 200.
func startServe(ctx context.Context, name, bin, workdir string, env map[string]string) (*serve, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	s := &serve{name: name, bin: bin, addr: fmt.Sprintf("127.0.0.1:%d", port),
		logPath: fmt.Sprintf("%s/serve-%s.log", workdir, strings.ToLower(name))}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "EXECDB_") {
			s.env = append(s.env, kv)
		}
	}
	s.env = append(s.env, "EXECDB_LISTEN="+s.addr)
	for k, v := range env {
		s.env = append(s.env, k+"="+v)
	}
	if s.log, err = os.OpenFile(s.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		s.log.Close()
		return nil, err
	}
	return s, nil
}

func (s *serve) url() string { return "http://" + s.addr }

func (s *serve) start(ctx context.Context) error {
	s.cmd = exec.Command(s.bin, "serve")
	s.cmd.Env = s.env
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	if err := s.cmd.Start(); err != nil {
		return fmt.Errorf("start execdb serve (%s): %w", s.name, err)
	}
	s.exited = make(chan struct{})
	go func(cmd *exec.Cmd, exited chan struct{}) {
		cmd.Wait()
		close(exited)
	}(s.cmd, s.exited)
	return s.waitReady(ctx, 90*time.Second)
}

func (s *serve) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: 3 * time.Second}
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("execdb serve (%s) exited at start: %s; see %s", s.name, s.cmd.ProcessState, s.logPath)
		default:
		}
		if resp, err := client.Get(s.url() + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("execdb serve (%s) not ready after %s; see %s", s.name, limit, s.logPath)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *serve) pid() int { return s.cmd.Process.Pid }

// notePeak reads the process's peak resident set (VmHWM) into peakKB.
func (s *serve) notePeak() {
	if kb, err := procStatusKB(s.pid(), "VmHWM"); err == nil && kb > s.peakKB {
		s.peakKB = kb
	}
}

// cpu is the CPU time the running process used so far.
func (s *serve) cpu() time.Duration {
	d, _ := procCPU(s.pid())
	return d
}

// kill9 kills the process with SIGKILL, as a crash would, and waits for it.
func (s *serve) kill9() {
	s.notePeak()
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.exited
}

// stop ends the process with SIGTERM (SIGKILL after 30 s) and closes the log.
func (s *serve) stop() {
	select {
	case <-s.exited:
	default:
		s.notePeak()
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(30 * time.Second):
			s.cmd.Process.Signal(syscall.SIGKILL)
			<-s.exited
		}
	}
	s.log.Close()
}

// logSummary counts the serve log's errors and warnings and keeps the first few distinct ones,
// leaving out the warning every serve without tokens logs at start.
func (s *serve) logSummary() (errs, warns int, first []string) {
	f, err := os.Open(s.logPath)
	if err != nil {
		return 0, 0, []string{err.Error()}
	}
	defer f.Close()
	seen := map[string]bool{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !bytes.Contains(line, []byte(`"level":"error"`)) && !bytes.Contains(line, []byte(`"level":"warn"`)) &&
			!bytes.HasPrefix(line, []byte("panic")) && !bytes.HasPrefix(line, []byte("fatal")) {
			continue
		}
		var e struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Error string `json:"error"`
		}
		if json.Unmarshal(line, &e) != nil {
			e.Level, e.Msg = "error", string(line)
		}
		if strings.HasPrefix(e.Msg, "no tokens configured") {
			continue
		}
		if e.Level == "warn" {
			warns++
		} else {
			errs++
		}
		key := e.Level + ": " + e.Msg
		if !seen[key] && len(first) < 8 {
			seen[key] = true
			if e.Error != "" {
				key += ": " + e.Error
			}
			if len(key) > 300 {
				key = key[:300] + "…"
			}
			first = append(first, key)
		}
	}
	return errs, warns, first
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// procStatusKB reads a "Name: N kB" line of /proc/<pid>/status.
func procStatusKB(pid int, name string) (int, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, name+":"); ok {
			return strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
		}
	}
	return 0, fmt.Errorf("no %s in /proc/%d/status", name, pid)
}

// clockTick is USER_HZ, the unit of /proc CPU times: 100 on every Linux architecture Go runs on
// but alpha and ia64.
const clockTick = 100

// procCPU is the user and system time of a process from /proc/<pid>/stat.
func procCPU(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name, in parentheses, may contain spaces: count fields after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("unreadable /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, errors.New("short /proc stat")
	}
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / clockTick, nil
}

// machineCPU is the machine's busy and total CPU time so far, from /proc/stat.
type machineCPU struct{ busy, total int64 }

func readMachineCPU() machineCPU {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return machineCPU{}
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	var m machineCPU
	for i, v := range f[1:] {
		n, _ := strconv.ParseInt(v, 10, 64)
		if i >= 8 { // guest time is counted in user already
			break
		}
		m.total += n
		if i != 3 && i != 4 { // idle, iowait
			m.busy += n
		}
	}
	return m
}

// busyPercent is the share of the machine's CPU time that was busy since m.
func (m machineCPU) busyPercent() float64 {
	now := readMachineCPU()
	if now.total <= m.total {
		return 0
	}
	return 100 * float64(now.busy-m.busy) / float64(now.total-m.total)
}

func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}
