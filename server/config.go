package server

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/jackc/pgx/v5/pgxpool"
	amqp "github.com/rabbitmq/amqp091-go"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// Config is every setting of `execdb serve`, and what Run needs besides. Each setting has a
// flag and an EXECDB_* variable (CONTRACT section 7, settings below); the flag wins over the
// variable, the variable over the default. Serve checks every setting as it reads it
// (parseConfig), before it opens anything. For Run, a zero setting is its default.
type Config struct {
	DB              string               // EXECDB_DB: postgres://… or sqlite:PATH
	Listen          string               // EXECDB_LISTEN: the HTTP address, HOST:PORT (port 0: any free one)
	TopicPrefix     string               // EXECDB_TOPIC_PREFIX: the prefix of every topic in and out
	AMQPURL         string               // EXECDB_AMQP_URL: the broker; empty: no AMQP
	AMQPExchange    string               // EXECDB_AMQP_EXCHANGE
	AMQPQueue       string               // EXECDB_AMQP_QUEUE: ExecDB's own durable queue
	FedmsgConnect   []string             // EXECDB_FEDMSG_CONNECT: ZeroMQ endpoints to subscribe to
	FedmsgBind      string               // EXECDB_FEDMSG_BIND: the ZeroMQ endpoint to publish on; empty: none
	TokensFile      string               // EXECDB_TOKENS_FILE: where Tokens were read from
	Tokens          map[string]api.Token // read from TokensFile; empty: writes from loopback only
	ParkTTL         time.Duration        // EXECDB_PARK_TTL
	RunTimeout      time.Duration        // EXECDB_RUN_TIMEOUT
	ScheduleTimeout time.Duration        // EXECDB_SCHEDULE_TIMEOUT
	AutoReschedule  int                  // EXECDB_AUTO_RESCHEDULE: 0 (and 1) is off
	RescheduleDelay time.Duration        // EXECDB_RESCHEDULE_DELAY
	LogFormat       string               // EXECDB_LOG_FORMAT: Serve builds Log with it
	LogLevel        zapcore.Level        // EXECDB_LOG_LEVEL: likewise
	BaseURL         string               // EXECDB_BASE_URL, without a trailing slash
	ResultsDBURL    string               // EXECDB_RESULTSDB_URL, without a trailing slash
	Retention       jobs.Retention       // EXECDB_RETENTION: zero keeps everything
	Pprof           string               // EXECDB_PPROF: HOST:PORT of the profiling listener; empty: none

	// Log is the service's log; nil logs nothing.
	Log *zap.Logger
	// Listening, when set, is told the HTTP address once Run accepts connections, so that a
	// caller listening on port 0 learns the port.
	Listening func(addr string)
}

// withDefaults is c with every zero setting replaced by its default.
func (c Config) withDefaults() Config {
	var d Config
	for _, s := range settings() {
		if err := s.set(&d, s.def); err != nil {
			panic(err) // a bad default is a programming error
		}
	}
	for _, f := range []struct{ v, def *string }{{&c.DB, &d.DB}, {&c.Listen, &d.Listen}, {&c.TopicPrefix, &d.TopicPrefix},
		{&c.AMQPExchange, &d.AMQPExchange}, {&c.AMQPQueue, &d.AMQPQueue}} {
		if *f.v == "" {
			*f.v = *f.def
		}
	}
	for _, f := range []struct{ v, def *time.Duration }{{&c.ParkTTL, &d.ParkTTL}, {&c.RunTimeout, &d.RunTimeout},
		{&c.ScheduleTimeout, &d.ScheduleTimeout}, {&c.RescheduleDelay, &d.RescheduleDelay}} {
		if *f.v == 0 {
			*f.v = *f.def
		}
	}
	if c.Log == nil {
		c.Log = zap.NewNop()
	}
	return c
}

// setting describes one flag of serve or migrate.
type setting struct {
	flag, env, def, help string
	set                  func(c *Config, v string) error
}

func durationSetting(flagName, env, def, help string, field func(*Config) *time.Duration) setting {
	return setting{flagName, env, def, help, func(c *Config, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 90s, 30m or 3h, got %q", v)
		}
		*field(c) = d
		return nil
	}}
}

// topicPrefixPattern is a topic prefix: dot-separated words, as fedmsg and AMQP topic
// routing keys have them (no wildcards, no spaces).
var topicPrefixPattern = regexp.MustCompile(`^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$`)

// amqpNamePattern is an exchange or queue name ExecDB accepts: AMQP allows more, but a name
// with spaces or control characters is a mistake rather than a wish.
var amqpNamePattern = regexp.MustCompile(`^[A-Za-z0-9_.:/-]{1,255}$`)

func settings() []setting {
	return []setting{
		{"db", "EXECDB_DB", "sqlite:execdb.db", "database: postgres://… or sqlite:PATH", func(c *Config, v string) error {
			if err := checkDB(v); err != nil {
				return err
			}
			c.DB = v
			return nil
		}},
		{"listen", "EXECDB_LISTEN", "127.0.0.1:5003", "HTTP address to listen on, HOST:PORT", func(c *Config, v string) error {
			_, port, err := net.SplitHostPort(v)
			if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
				return fmt.Errorf("want HOST:PORT such as 127.0.0.1:5003 or :5003, got %q", v)
			}
			c.Listen = v
			return nil
		}},
		{"topic-prefix", "EXECDB_TOPIC_PREFIX", "org.fedoraproject.dev", "prefix of every topic in and out", func(c *Config, v string) error {
			if !topicPrefixPattern.MatchString(v) {
				return fmt.Errorf("want dot-separated words of letters, digits, _ and - (no spaces, * or #), e.g. org.fedoraproject.prod, got %q", v)
			}
			c.TopicPrefix = v
			return nil
		}},
		{"amqp-url", "EXECDB_AMQP_URL", "", "AMQP broker to consume from and publish to, amqp:// or amqps:// (unset: no AMQP)", func(c *Config, v string) error {
			if v == "" {
				return nil
			}
			u, err := amqp.ParseURI(v)
			if err != nil || u.Host == "" {
				return fmt.Errorf("want amqp://user:password@host:5672/vhost or amqps://…, got %q", redactURL(v))
			}
			c.AMQPURL = v
			return nil
		}},
		{"amqp-exchange", "EXECDB_AMQP_EXCHANGE", "amq.topic", "AMQP topic exchange for both directions", func(c *Config, v string) error {
			if !amqpNamePattern.MatchString(v) {
				return fmt.Errorf("want an exchange name of letters, digits and _ . : / -, got %q", v)
			}
			c.AMQPExchange = v
			return nil
		}},
		{"amqp-queue", "EXECDB_AMQP_QUEUE", "execdb", "ExecDB's own durable AMQP queue", func(c *Config, v string) error {
			if !amqpNamePattern.MatchString(v) || strings.HasPrefix(v, "amq.") {
				return fmt.Errorf("want a queue name of letters, digits and _ . : / -, not starting with amq., got %q", v)
			}
			c.AMQPQueue = v
			return nil
		}},
		{"fedmsg-connect", "EXECDB_FEDMSG_CONNECT", "", "comma-separated ZeroMQ endpoints to subscribe to, e.g. tcp://hub.example.org:9940", func(c *Config, v string) error {
			c.FedmsgConnect = nil
			for _, ep := range splitList(v) {
				if err := checkEndpoint(ep, false); err != nil {
					return err
				}
				c.FedmsgConnect = append(c.FedmsgConnect, ep)
			}
			return nil
		}},
		{"fedmsg-bind", "EXECDB_FEDMSG_BIND", "", "ZeroMQ endpoint to publish job-state messages on, e.g. tcp://*:3000", func(c *Config, v string) error {
			if v != "" {
				if err := checkEndpoint(v, true); err != nil {
					return err
				}
			}
			c.FedmsgBind = v
			return nil
		}},
		{"tokens-file", "EXECDB_TOKENS_FILE", "", "file of name:token[:scope,…] lines; unset: writes from loopback only", func(c *Config, v string) error {
			tokens, err := loadTokens(v)
			if err != nil {
				return err
			}
			c.TokensFile, c.Tokens = v, tokens
			return nil
		}},
		durationSetting("park-ttl", "EXECDB_PARK_TTL", "1h", "how long a message for an unknown job waits for it", func(c *Config) *time.Duration { return &c.ParkTTL }),
		durationSetting("run-timeout", "EXECDB_RUN_TIMEOUT", "3h", "RUNNING longer than this: the watchdog crashes the job", func(c *Config) *time.Duration { return &c.RunTimeout }),
		durationSetting("schedule-timeout", "EXECDB_SCHEDULE_TIMEOUT", "24h", "SCHEDULED longer than this: the watchdog crashes the job", func(c *Config) *time.Duration { return &c.ScheduleTimeout }),
		{"auto-reschedule", "EXECDB_AUTO_RESCHEDULE", "0", "attempts allowed for automatic rescheduling of non-fatal crashes: a crashed job whose attempt is below it gets a successor; 0 (or 1) = off", func(c *Config, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("want a whole number ≥ 0, got %q", v)
			}
			c.AutoReschedule = n
			return nil
		}},
		durationSetting("reschedule-delay", "EXECDB_RESCHEDULE_DELAY", "30s", "wait before the first automatic reschedule of a crash; doubles with each further attempt", func(c *Config) *time.Duration { return &c.RescheduleDelay }),
		{"retention", "EXECDB_RETENTION", "", "what serve prunes, and after how long, e.g. FINISHED=90d,CRASHED=365d,rejected=30d (unset: keep all)", func(c *Config, v string) error {
			r, err := jobs.ParseRetention(v)
			if err != nil {
				return err
			}
			c.Retention = r
			return nil
		}},
		{"base-url", "EXECDB_BASE_URL", "", "public URL ExecDB is served under, e.g. https://taskotron.example.org/execdb, for links in messages and pages", func(c *Config, v string) error {
			u, err := checkHTTPURL(v)
			c.BaseURL = u
			return err
		}},
		{"resultsdb-url", "EXECDB_RESULTSDB_URL", "", "ResultsDB API base, e.g. https://taskotron.example.org/resultsdb_api/api/v2.0, for links to a job's results", func(c *Config, v string) error {
			u, err := checkHTTPURL(v)
			c.ResultsDBURL = u
			return err
		}},
		{"pprof", "EXECDB_PPROF", "", "HOST:PORT to serve Go's profiles on (/debug/pprof/), e.g. 127.0.0.1:6060; unset: none. Anyone who reaches it can read the process's memory and stacks: keep it on loopback", func(c *Config, v string) error {
			if v == "" {
				return nil
			}
			_, port, err := net.SplitHostPort(v)
			if n, perr := strconv.Atoi(port); err != nil || perr != nil || n < 0 || n > 65535 {
				return fmt.Errorf("want HOST:PORT such as 127.0.0.1:6060, got %q", v)
			}
			c.Pprof = v
			return nil
		}},
		{"log-format", "EXECDB_LOG_FORMAT", "json", "log format: json or console", func(c *Config, v string) error {
			if v != "json" && v != "console" {
				return fmt.Errorf("want json or console, got %q", v)
			}
			c.LogFormat = v
			return nil
		}},
		{"log-level", "EXECDB_LOG_LEVEL", "info", "least important level logged: debug, info, warn or error", func(c *Config, v string) error {
			l, err := zapcore.ParseLevel(v)
			if err != nil || !slices.Contains([]string{"debug", "info", "warn", "error"}, v) {
				return fmt.Errorf("want debug, info, warn or error, got %q", v)
			}
			c.LogLevel = l
			return nil
		}},
	}
}

// checkDB checks an EXECDB_DB value without connecting: a PostgreSQL URL pgx can parse, or
// sqlite:PATH whose directory exists.
func checkDB(v string) error {
	switch {
	case strings.HasPrefix(v, "postgres://"), strings.HasPrefix(v, "postgresql://"):
		if _, err := pgxpool.ParseConfig(v); err != nil {
			return fmt.Errorf("not a PostgreSQL URL pgx understands: %s: %v", redactURL(v), errors.Unwrap(err))
		}
	case strings.HasPrefix(v, "sqlite:"):
		path := strings.TrimPrefix(v, "sqlite:")
		if path == "" {
			return errors.New("sqlite: needs a path, e.g. sqlite:execdb.db")
		}
		if info, err := os.Stat(filepath.Dir(path)); err != nil || !info.IsDir() {
			return fmt.Errorf("the directory of %s does not exist", path)
		}
	default:
		return fmt.Errorf("want postgres://… or sqlite:PATH, got %q", redactURL(v))
	}
	return nil
}

// checkEndpoint checks a ZeroMQ endpoint: tcp://HOST:PORT (a bind may use * as the host) or
// ipc://PATH.
func checkEndpoint(ep string, bind bool) error {
	scheme, addr, ok := strings.Cut(ep, "://")
	switch {
	case !ok:
		return fmt.Errorf("%q: want tcp://HOST:PORT or ipc://PATH (the scheme is missing)", ep)
	case scheme == "ipc" && addr != "":
		return nil
	case scheme == "tcp":
		host, port, err := net.SplitHostPort(addr)
		n, perr := strconv.Atoi(port)
		if err != nil || perr != nil || n < 0 || n > 65535 || host == "" || (host == "*" && !bind) {
			return fmt.Errorf("%q: want tcp://HOST:PORT", ep)
		}
		return nil
	}
	return fmt.Errorf("%q: want tcp://HOST:PORT or ipc://PATH", ep)
}

// checkHTTPURL checks an absolute http:// or https:// URL without query or fragment and returns
// it without a trailing slash; "" is no URL.
func checkHTTPURL(v string) (string, error) {
	if v == "" {
		return "", nil
	}
	u, err := url.Parse(v)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("want an absolute http:// or https:// URL without a query, got %q", v)
	}
	return strings.TrimRight(v, "/"), nil
}

// loadTokens reads a tokens file (api.ParseTokens); no file gives no tokens, a file without
// any is an error (it would silently refuse every write from elsewhere).
func loadTokens(path string) (map[string]api.Token, error) {
	if path == "" {
		return nil, nil
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	tokens, err := api.ParseTokens(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(tokens) == 0 {
		return nil, fmt.Errorf("%s holds no tokens; add name:token lines, or unset it to accept writes from loopback only", path)
	}
	return tokens, nil
}

// parseConfig reads the settings named in only (all when empty) from args and the
// environment and checks each; a bad one is a usage error naming its variable and flag. It
// returns errUsage after printing help or a usage error to stderr.
func parseConfig(name, synopsis string, args []string, e command.Env, only ...string) (Config, error) {
	var cfg Config
	fs := flag.NewFlagSet("execdb "+name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	chosen := map[string]setting{}
	values := map[string]*string{}
	for _, s := range settings() {
		if len(only) > 0 && !slices.Contains(only, s.flag) {
			continue
		}
		chosen[s.flag] = s
		values[s.flag] = fs.String(s.flag, "", s.help)
	}
	printUsage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: execdb %s [flags]\n\n%s\n\nFlags (each also read from its environment variable):\n", name, synopsis)
		for _, s := range settings() {
			if _, ok := chosen[s.flag]; !ok {
				continue
			}
			def := ""
			if s.def != "" {
				def = " (default " + s.def + ")"
			}
			fmt.Fprintf(w, "  --%-17s %-24s %s%s\n", s.flag, s.env, s.help, def)
		}
		fmt.Fprintln(w, "\nA flag wins over its variable. Every setting is checked before anything starts: a bad one")
		fmt.Fprintln(w, "exits with status 2 naming it.")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(e.Stdout)
			return cfg, errHelp
		}
		fmt.Fprintf(e.Stderr, "execdb %s: %v\n\n", name, err)
		printUsage(e.Stderr)
		return cfg, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.Stderr, "execdb %s: unexpected argument %q\n", name, fs.Arg(0))
		return cfg, errUsage
	}
	explicit := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { explicit[f.Name] = true })
	for _, s := range settings() {
		if _, ok := chosen[s.flag]; !ok {
			if err := s.set(&cfg, s.def); err != nil {
				panic(err) // a bad default is a programming error
			}
			continue
		}
		v, from := s.def, "the default"
		if ev := e.Getenv(s.env); ev != "" {
			v, from = ev, "the environment"
		}
		if explicit[s.flag] {
			v, from = *values[s.flag], "the command line"
		}
		if err := s.set(&cfg, v); err != nil {
			fmt.Fprintf(e.Stderr, "execdb %s: %s (--%s), from %s: %v\n", name, s.env, s.flag, from, err)
			return cfg, errUsage
		}
	}
	return cfg, nil
}

var (
	errUsage = errors.New("usage error")
	errHelp  = errors.New("help shown")
)

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// redactURL hides a password in a URL for messages and logs.
func redactURL(raw string) string {
	if u, err := url.Parse(raw); err == nil && u.User != nil {
		return u.Redacted()
	}
	return raw
}
