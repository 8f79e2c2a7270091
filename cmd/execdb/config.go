package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// serveConfig is every setting of `execdb serve`. Each has a flag and an EXECDB_* variable
// (CONTRACT section 7); the flag wins over the variable, the variable over the default.
type serveConfig struct {
	DB              string
	Listen          string
	TopicPrefix     string
	AMQPURL         string
	AMQPExchange    string
	AMQPQueue       string
	FedmsgConnect   string
	FedmsgBind      string
	TokensFile      string
	ParkTTL         time.Duration
	RunTimeout      time.Duration
	ScheduleTimeout time.Duration
	AutoReschedule  int
	RescheduleDelay time.Duration
	LogFormat       string
	BaseURL         string
}

// setting describes one flag of serve or migrate.
type setting struct {
	flag, env, def, help string
	set                  func(c *serveConfig, v string) error
}

func stringSetting(flagName, env, def, help string, field func(*serveConfig) *string) setting {
	return setting{flagName, env, def, help, func(c *serveConfig, v string) error { *field(c) = v; return nil }}
}

func durationSetting(flagName, env, def, help string, field func(*serveConfig) *time.Duration) setting {
	return setting{flagName, env, def, help, func(c *serveConfig, v string) error {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return fmt.Errorf("want a positive duration such as 90s, 30m or 3h, got %q", v)
		}
		*field(c) = d
		return nil
	}}
}

func settings() []setting {
	return []setting{
		stringSetting("db", "EXECDB_DB", "sqlite:execdb.db", "database: postgres://… or sqlite:PATH", func(c *serveConfig) *string { return &c.DB }),
		stringSetting("listen", "EXECDB_LISTEN", "127.0.0.1:5003", "HTTP address to listen on", func(c *serveConfig) *string { return &c.Listen }),
		stringSetting("topic-prefix", "EXECDB_TOPIC_PREFIX", "org.fedoraproject.dev", "prefix of every topic in and out", func(c *serveConfig) *string { return &c.TopicPrefix }),
		stringSetting("amqp-url", "EXECDB_AMQP_URL", "", "AMQP broker to consume from and publish to (unset: no AMQP)", func(c *serveConfig) *string { return &c.AMQPURL }),
		stringSetting("amqp-exchange", "EXECDB_AMQP_EXCHANGE", "amq.topic", "AMQP exchange for both directions", func(c *serveConfig) *string { return &c.AMQPExchange }),
		stringSetting("amqp-queue", "EXECDB_AMQP_QUEUE", "execdb", "ExecDB's own durable AMQP queue", func(c *serveConfig) *string { return &c.AMQPQueue }),
		stringSetting("fedmsg-connect", "EXECDB_FEDMSG_CONNECT", "", "comma-separated ZeroMQ endpoints to subscribe to", func(c *serveConfig) *string { return &c.FedmsgConnect }),
		stringSetting("fedmsg-bind", "EXECDB_FEDMSG_BIND", "", "ZeroMQ endpoint to publish job-state messages on", func(c *serveConfig) *string { return &c.FedmsgBind }),
		stringSetting("tokens-file", "EXECDB_TOKENS_FILE", "", "file of name:token lines; unset: writes from loopback only", func(c *serveConfig) *string { return &c.TokensFile }),
		durationSetting("park-ttl", "EXECDB_PARK_TTL", "1h", "how long a message for an unknown job waits for it", func(c *serveConfig) *time.Duration { return &c.ParkTTL }),
		durationSetting("run-timeout", "EXECDB_RUN_TIMEOUT", "3h", "RUNNING longer than this: the watchdog crashes the job", func(c *serveConfig) *time.Duration { return &c.RunTimeout }),
		durationSetting("schedule-timeout", "EXECDB_SCHEDULE_TIMEOUT", "24h", "SCHEDULED longer than this: the watchdog crashes the job", func(c *serveConfig) *time.Duration { return &c.ScheduleTimeout }),
		{"auto-reschedule", "EXECDB_AUTO_RESCHEDULE", "0", "attempts allowed for automatic rescheduling of non-fatal crashes: a crashed job whose attempt is below it gets a successor; 0 (or 1) = off", func(c *serveConfig, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 {
				return fmt.Errorf("want a whole number ≥ 0, got %q", v)
			}
			c.AutoReschedule = n
			return nil
		}},
		durationSetting("reschedule-delay", "EXECDB_RESCHEDULE_DELAY", "30s", "wait before the first automatic reschedule of a crash; doubles with each further attempt", func(c *serveConfig) *time.Duration { return &c.RescheduleDelay }),
		{"base-url", "EXECDB_BASE_URL", "", "public URL ExecDB is served under, e.g. https://taskotron.example.org/execdb, for links in messages and pages", func(c *serveConfig, v string) error {
			if v == "" {
				return nil
			}
			u, err := url.Parse(v)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
				return fmt.Errorf("want an absolute http:// or https:// URL without query, e.g. https://taskotron.example.org/execdb, got %q", v)
			}
			c.BaseURL = strings.TrimRight(v, "/")
			return nil
		}},
		{"log-format", "EXECDB_LOG_FORMAT", "json", "log format: json or console", func(c *serveConfig, v string) error {
			if v != "json" && v != "console" {
				return fmt.Errorf("want json or console, got %q", v)
			}
			c.LogFormat = v
			return nil
		}},
	}
}

// parseServeConfig reads the settings named in only (all when empty) from args and the
// environment. It returns errUsage after printing help or a usage error to stderr.
func parseServeConfig(name, synopsis string, args []string, e env, only ...string) (serveConfig, error) {
	var cfg serveConfig
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
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(e.stdout)
			return cfg, errHelp
		}
		fmt.Fprintf(e.stderr, "execdb %s: %v\n\n", name, err)
		printUsage(e.stderr)
		return cfg, errUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(e.stderr, "execdb %s: unexpected argument %q\n", name, fs.Arg(0))
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
		v, from := s.def, "default"
		if ev := e.getenv(s.env); ev != "" {
			v, from = ev, s.env
		}
		if explicit[s.flag] {
			v, from = *values[s.flag], "--"+s.flag
		}
		if err := s.set(&cfg, v); err != nil {
			fmt.Fprintf(e.stderr, "execdb %s: %s: %v\n", name, from, err)
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
