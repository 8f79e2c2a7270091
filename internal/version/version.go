// Package version is what the execdb binary knows of its own build, for `execdb version`, the
// start-up log line, /healthz and the execdb_build_info metric.
package version

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"

	"github.com/fedora-qa/execdb/internal/command"
)

// Info is what the binary knows of its own build, from the Go module's build info: the module
// version (a tag for a release, "(devel)" for a build from a checkout), the VCS commit and
// whether the tree had changes, and the Go version.
type Info struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
}

// Read reads the running binary's build info.
func Read() Info {
	b := Info{Version: "(unknown)", Commit: "unknown"}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return b
	}
	b.Version, b.GoVersion = info.Main.Version, info.GoVersion
	if b.Version == "" {
		b.Version = "(devel)"
	}
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Commit = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is the one line `execdb version` prints.
func (b Info) String() string {
	commit := b.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if b.Modified {
		commit += "+changes"
	}
	return fmt.Sprintf("execdb %s (commit %s, %s)", b.Version, commit, strings.TrimSpace(b.GoVersion))
}

const synopsis = `Print the version of this execdb, the commit it was built from and the Go version.`

// Command is `execdb version` (and `execdb --version`).
func Command(ctx context.Context, args []string, e command.Env) int {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			fmt.Fprintf(e.Stdout, "Usage: execdb version\n\n%s\n", synopsis)
			return command.ExitOK
		default:
			fmt.Fprintf(e.Stderr, "execdb version: unexpected argument %q\n", a)
			return command.ExitUsage
		}
	}
	fmt.Fprintln(e.Stdout, Read())
	return command.ExitOK
}
