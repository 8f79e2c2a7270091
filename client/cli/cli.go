// Package cli is the execdb command line's client commands: job (create, start, finish, show,
// events, reschedule), jobs, stats, reschedule, rejected and prune. Each is a thin client of the
// HTTP API (package client) with retries; each takes flags and EXECDB_SERVER, EXECDB_TOKEN and
// EXECDB_TIMEOUT, prints text or the API's JSON (--json), and exits 0, 1 when the server refused
// or could not be reached, 2 on a usage error (CONTRACT sections 6 and 7).
package cli

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/client"
	"github.com/fedora-qa/execdb/internal/command"
)

// Plumbing the client commands share: flag sets with interleaved positional arguments, help
// texts that name the environment variables, the client flags and the error reporting.

// invocation is one client command being run: its flags, its help and its streams.
type invocation struct {
	e        command.Env
	name     string // e.g. "execdb job start"
	synopsis string // what follows the name in the usage line
	about    string // what the command does, a paragraph or two
	fs       *flag.FlagSet
	order    []string // own flags in the order they were declared
	co       clientOpts
}

// clientOpts are the flags every client command takes.
type clientOpts struct {
	server  string
	token   string
	json    bool
	timeout durationFlag
}

// durationFlag is a duration flag that remembers whether it was set.
type durationFlag struct {
	d   time.Duration
	set bool
}

func (f *durationFlag) String() string {
	if f == nil || !f.set {
		return ""
	}
	return f.d.String()
}

func (f *durationFlag) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("not a duration like 90s or 5m")
	}
	if d < 0 {
		return errors.New("must not be negative")
	}
	f.d, f.set = d, true
	return nil
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, ",") }
func (m *multiFlag) Set(s string) error { *m = append(*m, s); return nil }

// extraClientOptions are added to every client's options; tests set them to retry in
// milliseconds.
var extraClientOptions []client.Option

// clientFlagNames are the flags addClientFlags declares, listed apart in the help.
var clientFlagNames = []string{"server", "token", "json", "timeout"}

func newInvocation(e command.Env, name, synopsis, about string) *invocation {
	c := &invocation{e: e, name: name, synopsis: synopsis, about: about}
	c.fs = flag.NewFlagSet(name, flag.ContinueOnError)
	c.fs.SetOutput(io.Discard) // errors and help are printed by parse
	c.fs.StringVar(&c.co.server, "server", "",
		"the ExecDB server's `URL` (env EXECDB_SERVER, default "+client.DefaultServer+")")
	c.fs.StringVar(&c.co.token, "token", "",
		"the API `TOKEN` sent with writes (env EXECDB_TOKEN); the server needs one once it has tokens configured")
	c.fs.BoolVar(&c.co.json, "json", false, "print the API's JSON instead of readable text")
	c.fs.Var(&c.co.timeout, "timeout",
		"give up retrying connection errors and 5xx answers after this `DURATION` (env EXECDB_TIMEOUT, default "+
			client.DefaultBudget.String()+", but a read from a server that never answers at all gives up after "+
			client.DefaultUnansweredRead.String()+"; 0 makes a single attempt)")
	return c
}

func (c *invocation) stringVar(p *string, name, usage string) {
	c.fs.StringVar(p, name, "", usage)
	c.order = append(c.order, name)
}

func (c *invocation) boolVar(p *bool, name, usage string) {
	c.fs.BoolVar(p, name, false, usage)
	c.order = append(c.order, name)
}

func (c *invocation) multiVar(p *multiFlag, name, usage string) {
	c.fs.Var(p, name, usage)
	c.order = append(c.order, name)
}

// parse parses args, flags and positional arguments in any order ("--" ends the flags). When
// ok is false the command is over with the exit code code: help was asked for (0) or the
// arguments are wrong (2, with the reason on stderr).
func (c *invocation) parse(args []string) (positional []string, code int, ok bool) {
	for {
		err := c.fs.Parse(args)
		if errors.Is(err, flag.ErrHelp) {
			c.usage(c.e.Stdout)
			return nil, command.ExitOK, false
		}
		if err != nil {
			return nil, c.usageError("%v", err), false
		}
		rest := c.fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), command.ExitOK, true
		}
		if len(rest) == 0 {
			return positional, command.ExitOK, true
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// usageError prints a usage error and a pointer to the help; it returns command.ExitUsage.
func (c *invocation) usageError(format string, args ...any) int {
	fmt.Fprintf(c.e.Stderr, "%s: %s\n", c.name, fmt.Sprintf(format, args...))
	fmt.Fprintf(c.e.Stderr, "Run '%s --help' for usage.\n", c.name)
	return command.ExitUsage
}

// usage prints the command's help.
func (c *invocation) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s %s\n\n%s\n", c.name, c.synopsis, strings.TrimSpace(c.about))
	if len(c.order) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		for _, name := range c.order {
			printFlag(w, c.fs.Lookup(name))
		}
	}
	fmt.Fprintln(w, "\nClient flags (every client command has them):")
	for _, name := range clientFlagNames {
		printFlag(w, c.fs.Lookup(name))
	}
	fmt.Fprintln(w, "\nA flag given on the command line wins over its environment variable.")
	fmt.Fprintln(w, "Exit status: 0 done; 1 the server refused, or could not be reached before the")
	fmt.Fprintln(w, "timeout; 2 usage error.")
}

func printFlag(w io.Writer, f *flag.Flag) {
	name, usage := flag.UnquoteUsage(f)
	if name != "" {
		name = " " + name
	}
	if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
		name = ""
	}
	fmt.Fprintf(w, "  --%s%s\n", f.Name, name)
	fmt.Fprintf(w, "        %s\n", strings.ReplaceAll(usage, "\n", "\n        "))
}

// client makes the API client from the client flags and the environment. An error is a usage
// error.
func (c *invocation) client() (*client.Client, error) {
	server := c.co.server
	if server == "" {
		server = c.e.Getenv("EXECDB_SERVER")
	}
	token := c.co.token
	if token == "" {
		token = c.e.Getenv("EXECDB_TOKEN")
	}
	budget, unanswered := client.DefaultBudget, client.DefaultUnansweredRead
	if c.co.timeout.set {
		budget, unanswered = c.co.timeout.d, 0 // a timeout asked for is the reads' too
	} else if s := c.e.Getenv("EXECDB_TIMEOUT"); s != "" {
		var d durationFlag
		if err := d.Set(s); err != nil {
			return nil, fmt.Errorf("EXECDB_TIMEOUT=%q: %v", s, err)
		}
		budget, unanswered = d.d, 0
	}
	attempt := client.DefaultAttemptTimeout
	if budget > 0 && budget < attempt {
		attempt = budget
	}
	opts := []client.Option{
		client.WithBudget(budget),
		client.WithUnansweredRead(unanswered),
		client.WithAttemptTimeout(attempt),
		client.WithUserAgent("execdb-cli/1"),
		client.WithLogf(func(format string, args ...any) {
			fmt.Fprintf(c.e.Stderr, "%s: %s\n", c.name, fmt.Sprintf(format, args...))
		}),
	}
	opts = append(opts, extraClientOptions...)
	cl, err := client.New(server, token, opts...)
	if err != nil {
		return nil, fmt.Errorf("--server: %v", err)
	}
	return cl, nil
}

// fail reports an error from the server or the network and returns command.ExitRefused. With --json an
// answer's body goes to stdout as well, so that a script sees e.g. the job of a 409.
func (c *invocation) fail(err error) int {
	fmt.Fprintf(c.e.Stderr, "%s: %v\n", c.name, err)
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		if c.co.json && len(apiErr.Body) > 0 {
			c.printRaw(apiErr.Body)
		}
		if apiErr.Job != nil {
			fmt.Fprintf(c.e.Stderr, "%s: the job as it stands: %s\n", c.name, jobSummary(*apiErr.Job))
		}
	}
	return command.ExitRefused
}

// printRaw prints an API answer as sent, ending in a newline.
func (c *invocation) printRaw(body []byte) {
	c.e.Stdout.Write(body)
	if len(body) == 0 || body[len(body)-1] != '\n' {
		fmt.Fprintln(c.e.Stdout)
	}
}
