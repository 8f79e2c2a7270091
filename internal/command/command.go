// Package command is what every execdb command shares, whichever package holds it: the streams
// and environment a command runs with, the exit codes, and the dispatch of a command or
// subcommand by name.
package command

import (
	"context"
	"fmt"
	"io"
)

// Exit codes of every command (CONTRACT section 7).
const (
	ExitOK      = 0
	ExitRefused = 1 // the server refused, or the service failed
	ExitUsage   = 2
)

// Env is what a command gets from the process: output streams and environment variables.
// main passes the process's; tests pass their own.
type Env struct {
	Stdout io.Writer
	Stderr io.Writer
	Getenv func(string) string
}

// Func is a command's entry point: it runs the command with args (the command's name left
// out) and returns the process's exit code.
type Func func(ctx context.Context, args []string, e Env) int

// Command is a command or subcommand: its name, its line in the usage, and its entry point.
type Command struct {
	Name    string
	Summary string
	Run     Func
}

// Dispatch runs the command args[0] names among cmds: prog is who dispatches ("execdb",
// "execdb job") and what what it dispatches ("command", "subcommand"). No name prints usage to
// stderr (exit 2), a help flag prints it to stdout (exit 0), an unknown name says so and
// prints usage to stderr (exit 2).
func Dispatch(ctx context.Context, prog, what string, cmds []Command, usage func(io.Writer), args []string, e Env) int {
	if len(args) == 0 {
		usage(e.Stderr)
		return ExitUsage
	}
	switch args[0] {
	case "-h", "-help", "--help", "help":
		usage(e.Stdout)
		return ExitOK
	}
	for _, c := range cmds {
		if c.Name == args[0] {
			return c.Run(ctx, args[1:], e)
		}
	}
	fmt.Fprintf(e.Stderr, "%s: unknown %s %q\n\n", prog, what, args[0])
	usage(e.Stderr)
	return ExitUsage
}

// PrintCommands prints cmds as the usage lists them: a line each, name and summary.
func PrintCommands(w io.Writer, cmds []Command) {
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-11s %s\n", c.Name, c.Summary)
	}
}
