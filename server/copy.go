package server

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/jobs"
)

const copySynopsis = `Copy an ExecDB database into another, empty one: to move from the embedded SQLite to
PostgreSQL (or back). It copies the jobs with their data, key-values, lineage and automatic-
reschedule marks, every job's history, the messages not yet published, the parked events and
the rejected messages; both databases are migrated first. Stop every execdb serve that writes
to the source before, and start it on the target after:

    execdb copy --from sqlite:execdb.db --to 'postgres://execdb@db.example/execdb?sslmode=disable'
    EXECDB_DB='postgres://execdb@db.example/execdb?sslmode=disable' execdb serve

A target that already holds jobs or messages is refused, and nothing is written to it.`

// Copy is `execdb copy --from DB --to DB`: it copies one database into another, empty one
// (jobs.Copy), both migrated first.
func Copy(ctx context.Context, args []string, e command.Env) int {
	fs := flag.NewFlagSet("execdb copy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	from := fs.String("from", "", "the database to copy: sqlite:PATH or postgres://…")
	to := fs.String("to", "", "the empty database to copy into: postgres://… or sqlite:PATH")
	usage := func(w io.Writer) {
		fmt.Fprintf(w, "Usage: execdb copy --from DB --to DB\n\n%s\n\nFlags:\n", copySynopsis)
		fmt.Fprintln(w, "  --from DB   the database to copy: sqlite:PATH or postgres://…")
		fmt.Fprintln(w, "  --to DB     the empty database to copy into: postgres://… or sqlite:PATH")
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(e.Stdout)
			return command.ExitOK
		}
		fmt.Fprintf(e.Stderr, "execdb copy: %v\n\n", err)
		usage(e.Stderr)
		return command.ExitUsage
	}
	if fs.NArg() > 0 || *from == "" || *to == "" {
		fmt.Fprintln(e.Stderr, "execdb copy: give --from and --to, and nothing else")
		return command.ExitUsage
	}
	for _, db := range []struct{ flag, v string }{{"--from", *from}, {"--to", *to}} {
		if err := checkDB(db.v); err != nil {
			fmt.Fprintf(e.Stderr, "execdb copy: %s: %v\n", db.flag, err)
			return command.ExitUsage
		}
	}
	if *from == *to {
		fmt.Fprintln(e.Stderr, "execdb copy: --from and --to name the same database")
		return command.ExitUsage
	}
	src, err := openBackend(ctx, *from)
	if err != nil {
		fmt.Fprintf(e.Stderr, "execdb copy: --from: %v\n", err)
		return command.ExitRefused
	}
	defer src.Close()
	dst, err := openBackend(ctx, *to)
	if err != nil {
		fmt.Fprintf(e.Stderr, "execdb copy: --to: %v\n", err)
		return command.ExitRefused
	}
	defer dst.Close()
	res, err := jobs.Copy(ctx, src, dst, func(r jobs.CopyResult) {
		fmt.Fprintf(e.Stderr, "\rcopied %d jobs, %d history entries, %d messages to publish, %d parked, %d rejected",
			r.Jobs, r.History, r.Outbox, r.Parked, r.Rejected)
	})
	fmt.Fprintln(e.Stderr)
	if err != nil {
		fmt.Fprintf(e.Stderr, "execdb copy: %v\n", err)
		return command.ExitRefused
	}
	fmt.Fprintf(e.Stdout, "copied %d jobs, %d history entries, %d messages to publish, %d parked events and %d rejected messages from %s to %s\n",
		res.Jobs, res.History, res.Outbox, res.Parked, res.Rejected, redactURL(*from), redactURL(*to))
	return command.ExitOK
}
