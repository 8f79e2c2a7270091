//go:build drills

package drills

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// The private services every drill runs against, started once for the whole run and stopped
// by TestMain. They listen on ports of their own (settings), never the machine's own
// PostgreSQL and RabbitMQ.
var (
	servicesOnce sync.Once
	services     struct {
		pg   *postgres
		rmq  *rabbit
		skip string
		err  error
	}
)

// needServices starts the private services the first time it is called, and skips the test
// when PostgreSQL or RabbitMQ is not installed.
func needServices(t *testing.T) (*postgres, *rabbit) {
	t.Helper()
	servicesOnce.Do(startServices)
	if services.skip != "" {
		t.Skip(services.skip)
	}
	if services.err != nil {
		t.Fatal(services.err)
	}
	return services.pg, services.rmq
}

func startServices() {
	pgBin := pgBinDir()
	if _, err := os.Stat(filepath.Join(pgBin, "pg_ctl")); pgBin == "" || err != nil {
		services.skip = "PostgreSQL is not installed (no pg_ctl under /usr/lib/postgresql/*/bin or on PATH; set EXECDB_DRILL_PG_BIN)"
		return
	}
	rmqServer, rmqCtl := rabbitBinaries()
	if rmqServer == "" || rmqCtl == "" {
		services.skip = "RabbitMQ is not installed (no rabbitmq-server and rabbitmqctl)"
		return
	}
	for _, port := range []int{cfg.pgPort, cfg.amqpPort, cfg.distPort} {
		if portInUse(port) {
			services.err = fmt.Errorf("port %d is in use (a drill service left running? the EXECDB_DRILL_*_PORT variables choose others)", port)
			return
		}
	}
	pg, err := newPostgres(pgBin, cfg.pgPort)
	if err != nil {
		services.err = err
		return
	}
	services.pg = pg
	rmq, err := newRabbit(rmqServer, rmqCtl, cfg.amqpPort, cfg.distPort, cfg.node)
	if err != nil {
		services.err = err
		return
	}
	services.rmq = rmq
}

// stopServices stops what startServices started and removes their directories.
func stopServices() {
	if services.rmq != nil {
		services.rmq.shutdown()
	}
	if services.pg != nil {
		services.pg.shutdown()
	}
}

func portInUse(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return true
	}
	ln.Close()
	return false
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// asUser returns the command to run name as the service's own user when we are root (initdb
// and the RabbitMQ scripts refuse root), else as ourselves.
func asUser(account, name string, args ...string) *exec.Cmd {
	if os.Geteuid() == 0 && account != "" {
		return exec.Command("runuser", append([]string{"-u", account, "--", name}, args...)...)
	}
	return exec.Command(name, args...)
}

// chownTo gives path (recursively) to account when we are root.
func chownTo(account, path string) error {
	if os.Geteuid() != 0 {
		return nil
	}
	u, err := user.Lookup(account)
	if err != nil {
		return fmt.Errorf("user %s: %w", account, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return filepath.Walk(path, func(p string, _ os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return os.Lchown(p, uid, gid)
	})
}

// --- PostgreSQL ---

type postgres struct {
	bin  string // directory of pg_ctl, initdb, postgres
	dir  string // owned by the postgres user: data/, log, the socket
	port int
	user string // the OS account running the server: postgres when we are root
}

func pgBinDir() string {
	if d := os.Getenv("EXECDB_DRILL_PG_BIN"); d != "" {
		return d
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	slices.SortFunc(dirs, func(a, b string) int { // the newest version first
		va, _ := strconv.Atoi(filepath.Base(filepath.Dir(a)))
		vb, _ := strconv.Atoi(filepath.Base(filepath.Dir(b)))
		return vb - va
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "pg_ctl")); err == nil {
			return d
		}
	}
	if p, err := exec.LookPath("pg_ctl"); err == nil {
		return filepath.Dir(p)
	}
	return ""
}

func newPostgres(bin string, port int) (*postgres, error) {
	dir, err := os.MkdirTemp("", "execdb-drill-pg-")
	if err != nil {
		return nil, err
	}
	p := &postgres{bin: bin, dir: dir, port: port}
	if os.Geteuid() == 0 {
		p.user = "postgres"
		if err := chownTo(p.user, dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	if out, err := p.run("initdb", "-D", filepath.Join(dir, "data"), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync").CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	if err := p.start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	return p, nil
}

func (p *postgres) run(name string, args ...string) *exec.Cmd {
	return asUser(p.user, filepath.Join(p.bin, name), args...)
}

// start starts the server and waits until it accepts connections.
func (p *postgres) start() error {
	opts := fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c max_connections=200", p.port, p.dir)
	out, err := p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-o", opts, "-l", filepath.Join(p.dir, "log"), "-w", "-t", "120", "start").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl start: %v: %s", err, out)
	}
	return nil
}

// stopImmediate stops the server at once: every backend is killed, no checkpoint, crash
// recovery at the next start (pg_ctl -m immediate).
func (p *postgres) stopImmediate() error {
	out, err := p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "immediate", "-w", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop -m immediate: %v: %s", err, out)
	}
	return nil
}

func (p *postgres) shutdown() {
	p.run("pg_ctl", "-D", filepath.Join(p.dir, "data"), "-m", "fast", "-w", "stop").Run()
	os.RemoveAll(p.dir)
}

// url is the URL of database db.
func (p *postgres) url(db string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable", p.port, db)
}

// newDatabase creates a fresh database for one drill and returns its URL.
func (p *postgres) newDatabase(t *testing.T, name string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, p.url("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		t.Fatal(err)
	}
	return p.url(name)
}

func (p *postgres) version() string {
	out, err := exec.Command(filepath.Join(p.bin, "postgres"), "--version").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// --- RabbitMQ ---

type rabbit struct {
	server, ctl string
	dir         string // owned by the rabbitmq user: mnesia/, log/, plugins, rabbitmq.conf, pid
	port        int
	node        string
	env         []string
	user        string
}

func rabbitBinaries() (server, ctl string) {
	if os.Geteuid() == 0 {
		// The packaged wrappers switch to the rabbitmq user themselves.
		server, _ = exec.LookPath("rabbitmq-server")
		ctl, _ = exec.LookPath("rabbitmqctl")
		return server, ctl
	}
	for _, dir := range []string{"/usr/lib/rabbitmq/bin"} {
		s, c := filepath.Join(dir, "rabbitmq-server"), filepath.Join(dir, "rabbitmqctl")
		if _, err := os.Stat(s); err == nil {
			return s, c
		}
	}
	server, _ = exec.LookPath("rabbitmq-server")
	ctl, _ = exec.LookPath("rabbitmqctl")
	return server, ctl
}

func newRabbit(server, ctl string, port, distPort int, node string) (*rabbit, error) {
	dir, err := os.MkdirTemp("", "execdb-drill-rabbitmq-")
	if err != nil {
		return nil, err
	}
	r := &rabbit{server: server, ctl: ctl, dir: dir, port: port, node: node}
	for _, d := range []string{"mnesia", "log"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "plugins"), nil, 0o644); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("listeners.tcp.default = 127.0.0.1:%d\nloopback_users = none\n", port)
	if err := os.WriteFile(filepath.Join(dir, "rabbitmq.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, err
	}
	if os.Geteuid() == 0 {
		r.user = "rabbitmq"
		if err := chownTo(r.user, dir); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	r.env = append(os.Environ(),
		"RABBITMQ_NODENAME="+node,
		"RABBITMQ_DIST_PORT="+strconv.Itoa(distPort),
		"RABBITMQ_MNESIA_BASE="+filepath.Join(dir, "mnesia"),
		"RABBITMQ_LOG_BASE="+filepath.Join(dir, "log"),
		"RABBITMQ_ENABLED_PLUGINS_FILE="+filepath.Join(dir, "plugins"),
		"RABBITMQ_CONFIG_FILE="+filepath.Join(dir, "rabbitmq.conf"),
		"RABBITMQ_PID_FILE="+r.pidFile(),
	)
	if err := r.start(); err != nil {
		r.shutdown()
		return nil, err
	}
	return r, nil
}

func (r *rabbit) pidFile() string { return filepath.Join(r.dir, "pid") }

// url is the AMQP URL of the private broker.
func (r *rabbit) url() string { return fmt.Sprintf("amqp://guest:guest@127.0.0.1:%d/", r.port) }

func (r *rabbit) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = r.env
	cmd.Dir = r.dir
	return cmd
}

// start starts the broker detached and waits until it runs (rabbitmqctl wait).
func (r *rabbit) start() error {
	os.Remove(r.pidFile()) // a stale one would make `wait` watch a dead process
	if out, err := r.command(r.server, "-detached").CombinedOutput(); err != nil {
		return fmt.Errorf("rabbitmq-server -detached: %v: %s", err, out)
	}
	out, err := r.command(r.ctl, "-n", r.node, "wait", r.pidFile(), "--timeout", "120").CombinedOutput()
	if err != nil {
		return fmt.Errorf("rabbitmqctl wait: %v: %s (logs in %s)", err, out, filepath.Join(r.dir, "log"))
	}
	return nil
}

func (r *rabbit) pid() (int, error) {
	b, err := os.ReadFile(r.pidFile())
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// kill9 kills the broker's Erlang VM with SIGKILL and waits until it is gone.
func (r *rabbit) kill9() error {
	pid, err := r.pid()
	if err != nil {
		return fmt.Errorf("broker pid: %w", err)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 %d: %w", pid, err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) && !portInUse(r.port) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("broker %d still there 30 s after kill -9", pid)
}

func (r *rabbit) shutdown() {
	if err := r.command(r.ctl, "-n", r.node, "stop").Run(); err != nil {
		if pid, err := r.pid(); err == nil {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	os.RemoveAll(r.dir)
}

func (r *rabbit) version() string {
	out, err := r.command(r.ctl, "-n", r.node, "version").Output()
	if err != nil {
		return "unknown"
	}
	return "RabbitMQ " + strings.TrimSpace(string(out))
}

// listQueues is rabbitmqctl's list of the broker's queues, for diagnosis.
func (r *rabbit) listQueues() string {
	out, err := r.command(r.ctl, "-n", r.node, "list_queues", "name", "type", "messages_ready", "messages_unacknowledged", "consumers", "state").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("rabbitmqctl list_queues: %v: %s", err, out)
	}
	return string(out)
}

// suspendQueue suspends the Erlang process of quorum queue name (its Ra server, registered as
// '%2F_<name>' for the default vhost): the queue takes nothing and confirms nothing until
// resumeQueue, as a queue whose leader never came back after a crash.
func (r *rabbit) suspendQueue(name string) error { return r.sys("suspend", name) }

func (r *rabbit) resumeQueue(name string) error { return r.sys("resume", name) }

func (r *rabbit) sys(call, name string) error {
	expr := fmt.Sprintf("case whereis('%%2F_%s') of undefined -> no_such_queue; P -> sys:%s(P) end.", name, call)
	out, err := r.command(r.ctl, "-n", r.node, "eval", expr).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		return fmt.Errorf("rabbitmqctl eval %s: %v: %s", expr, err, out)
	}
	return nil
}
