package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

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

func cmdCopy(ctx context.Context, args []string, e env) int {
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
			usage(e.stdout)
			return exitOK
		}
		fmt.Fprintf(e.stderr, "execdb copy: %v\n\n", err)
		usage(e.stderr)
		return exitUsage
	}
	if fs.NArg() > 0 || *from == "" || *to == "" {
		fmt.Fprintln(e.stderr, "execdb copy: give --from and --to, and nothing else")
		return exitUsage
	}
	for _, db := range []struct{ flag, v string }{{"--from", *from}, {"--to", *to}} {
		if err := checkDB(db.v); err != nil {
			fmt.Fprintf(e.stderr, "execdb copy: %s: %v\n", db.flag, err)
			return exitUsage
		}
	}
	if *from == *to {
		fmt.Fprintln(e.stderr, "execdb copy: --from and --to name the same database")
		return exitUsage
	}
	src, err := openBackend(ctx, *from)
	if err != nil {
		fmt.Fprintf(e.stderr, "execdb copy: --from: %v\n", err)
		return exitRefused
	}
	defer src.Close()
	dst, err := openBackend(ctx, *to)
	if err != nil {
		fmt.Fprintf(e.stderr, "execdb copy: --to: %v\n", err)
		return exitRefused
	}
	defer dst.Close()
	res, err := jobs.Copy(ctx, src, dst, func(r jobs.CopyResult) {
		fmt.Fprintf(e.stderr, "\rcopied %d jobs, %d history entries, %d messages to publish, %d parked, %d rejected",
			r.Jobs, r.History, r.Outbox, r.Parked, r.Rejected)
	})
	fmt.Fprintln(e.stderr)
	if err != nil {
		fmt.Fprintf(e.stderr, "execdb copy: %v\n", err)
		return exitRefused
	}
	fmt.Fprintf(e.stdout, "copied %d jobs, %d history entries, %d messages to publish, %d parked events and %d rejected messages from %s to %s\n",
		res.Jobs, res.History, res.Outbox, res.Parked, res.Rejected, redactURL(*from), redactURL(*to))
	return exitOK
}
