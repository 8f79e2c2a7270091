package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/internal/command"
)

// TestUsage: execdb alone, or with help, lists every command in the table's order; an unknown
// command is a usage error.
func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args   []string
		code   int
		stdout bool // the usage goes to stdout (help asked for), else to stderr
	}{
		{nil, command.ExitUsage, false},
		{[]string{"help"}, command.ExitOK, true},
		{[]string{"--help"}, command.ExitOK, true},
		{[]string{"frobnicate"}, command.ExitUsage, false},
	} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), tc.args, command.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(string) string { return "" }})
		out := stderr.String()
		if tc.stdout {
			out = stdout.String()
		}
		if code != tc.code || !strings.HasPrefix(strings.TrimPrefix(out, "execdb: unknown command \"frobnicate\"\n\n"),
			"ExecDB keeps the execution state of Taskotron jobs.\n\nUsage: execdb <command> [flags]\n") {
			t.Errorf("execdb %v: got %d\n%s\nwant %d and the usage", tc.args, code, out, tc.code)
		}
		last := -1
		for _, c := range commands() {
			i := strings.Index(out, "\n  "+c.Name+" ")
			if i < 0 || i < last {
				t.Errorf("execdb %v: %s missing or out of order:\n%s", tc.args, c.Name, out)
			}
			last = i
		}
	}
}
