package main

import (
	"context"
	"fmt"
	"runtime/debug"
	"strings"
)

// buildInfo is what the binary knows of its own build, from the Go module's build info: the
// module version (a tag for a release, "(devel)" for a build from a checkout), the VCS commit
// and whether the tree had changes, and the Go version.
type buildInfo struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	Modified  bool   `json:"modified"`
	GoVersion string `json:"go_version"`
}

func readBuildInfo() buildInfo {
	b := buildInfo{Version: "(unknown)", Commit: "unknown"}
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
func (b buildInfo) String() string {
	commit := b.Commit
	if len(commit) > 12 {
		commit = commit[:12]
	}
	if b.Modified {
		commit += "+changes"
	}
	return fmt.Sprintf("execdb %s (commit %s, %s)", b.Version, commit, strings.TrimSpace(b.GoVersion))
}

const versionSynopsis = `Print the version of this execdb, the commit it was built from and the Go version.`

func cmdVersion(ctx context.Context, args []string, e env) int {
	for _, a := range args {
		switch a {
		case "-h", "-help", "--help":
			fmt.Fprintf(e.stdout, "Usage: execdb version\n\n%s\n", versionSynopsis)
			return exitOK
		default:
			fmt.Fprintf(e.stderr, "execdb version: unexpected argument %q\n", a)
			return exitUsage
		}
	}
	fmt.Fprintln(e.stdout, readBuildInfo())
	return exitOK
}
