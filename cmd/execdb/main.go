// Command execdb is the ExecDB service (serve, migrate, copy: package server) and its
// command-line client (job, jobs, stats, …: package client/cli) in one binary. This file only
// dispatches. See README.md and docs/ for the whole story.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/fedora-qa/execdb/client/cli"
	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/internal/version"
	"github.com/fedora-qa/execdb/server"
)

func commands() []command.Command {
	return []command.Command{
		{Name: "serve", Summary: "run the API, the consumers, the publisher and the watchdog", Run: server.Serve},
		{Name: "migrate", Summary: "apply the database schema migrations and exit", Run: server.Migrate},
		{Name: "copy", Summary: "copy a database into another, empty one (SQLite to PostgreSQL)", Run: server.Copy},
		{Name: "job", Summary: "create, start, finish, show, reschedule a job or list its events", Run: cli.Job},
		{Name: "jobs", Summary: "search jobs", Run: cli.Jobs},
		{Name: "stats", Summary: "counts, rates and durations of jobs", Run: cli.Stats},
		{Name: "reschedule", Summary: "reschedule crashed jobs matching filters", Run: cli.Reschedule},
		{Name: "rejected", Summary: "list rejected bus messages, or replay one", Run: cli.Rejected},
		{Name: "prune", Summary: "apply the retention now (or see what it would remove)", Run: cli.Prune},
		{Name: "version", Summary: "print the version", Run: version.Command},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], command.Env{Stdout: os.Stdout, Stderr: os.Stderr, Getenv: os.Getenv})
	stop()
	os.Exit(code)
}

// run runs the command args[0] names; --version is the version command.
func run(ctx context.Context, args []string, e command.Env) int {
	if len(args) > 0 && (args[0] == "--version" || args[0] == "-version") {
		return version.Command(ctx, args[1:], e)
	}
	return command.Dispatch(ctx, "execdb", "command", commands(), usage, args, e)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "ExecDB keeps the execution state of Taskotron jobs.")
	fmt.Fprintln(w, "\nUsage: execdb <command> [flags]\n\nCommands:")
	command.PrintCommands(w, commands())
	fmt.Fprintln(w, "\nRun 'execdb <command> --help' for the flags of a command.")
}
