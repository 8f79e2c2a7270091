// Command execdb is the ExecDB service (serve, migrate) and its command-line client (job, jobs,
// stats) in one binary. See README.md and docs/ for the whole story.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes of every command (CONTRACT section 7).
const (
	exitOK      = 0
	exitRefused = 1 // the server refused, or the service failed
	exitUsage   = 2
)

// env is what a command gets from the process: output streams and environment variables.
// Tests pass their own.
type env struct {
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, e env) int
}

func commands() []command {
	return []command{
		{"serve", "run the API, the consumers, the publisher and the watchdog", cmdServe},
		{"migrate", "apply the database schema migrations and exit", cmdMigrate},
		{"copy", "copy a database into another, empty one (SQLite to PostgreSQL)", cmdCopy},
		{"job", "create, start, finish, show, reschedule a job or list its events", cmdJob},
		{"jobs", "search jobs", cmdJobs},
		{"stats", "counts, rates and durations of jobs", cmdStats},
		{"reschedule", "reschedule crashed jobs matching filters", cmdReschedule},
		{"rejected", "list rejected bus messages, or replay one", cmdRejected},
		{"prune", "apply the retention now (or see what it would remove)", cmdPrune},
		{"version", "print the version", cmdVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], env{stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv})
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, e env) int {
	return dispatch(ctx, "execdb", "command", commands(), usage, args, e)
}

// dispatch runs the command args[0] names among cmds; no name prints usage (exit 2), a help
// flag prints it (exit 0).
func dispatch(ctx context.Context, prog, what string, cmds []command, usage func(io.Writer), args []string, e env) int {
	if len(args) == 0 {
		usage(e.stderr)
		return exitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(e.stdout)
		return exitOK
	case "--version", "-version":
		if prog == "execdb" {
			return cmdVersion(ctx, args[1:], e)
		}
	}
	for _, c := range cmds {
		if c.name == args[0] {
			return c.run(ctx, args[1:], e)
		}
	}
	fmt.Fprintf(e.stderr, "%s: unknown %s %q\n\n", prog, what, args[0])
	usage(e.stderr)
	return exitUsage
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ExecDB keeps the execution state of Taskotron jobs.")
	fmt.Fprintln(w, "\nUsage: execdb <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-11s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'execdb <command> --help' for the flags of a command.")
}
