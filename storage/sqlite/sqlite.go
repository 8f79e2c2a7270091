// Package sqlite is the storage.Backend on an SQLite file, through the pure Go driver
// modernc.org/sqlite (no cgo).
//
// The database runs in WAL mode with synchronous=FULL, so a committed transaction survives a
// crash of the process or of the machine. Writes go through one connection whose transactions
// begin IMMEDIATE: writers queue in the connection pool instead of failing with SQLITE_BUSY, and
// reading a job inside a transaction already locks it against every other writer. Reads
// (Job, History, Outbox, Ping) use a separate pool of read-only connections, which WAL lets run
// alongside the writer.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"path/filepath"
	"runtime"
	"strings"
	"sync"

	"github.com/fedora-qa/execdb/storage"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// busyTimeoutMillis is how long a connection waits for a lock held by another process (a second
// execdb on the same file, `execdb migrate`, the sqlite3 shell) before giving up.
const busyTimeoutMillis = 10000

// Backend is the SQLite storage.Backend. It is safe for concurrent use.
type Backend struct {
	writer    *sql.DB    // one connection: every write transaction, in turn
	stmts     *stmtCache // the writer's prepared statements
	reader    *sql.DB    // read-only connections for Job, History, Outbox and Ping
	closeOnce sync.Once
	closeErr  error
	// queued receives a value after a transaction that wrote outbox messages commits: the
	// relay's wake (Lead). One process holds the file, so this notice reaches every relay.
	queued chan struct{}
}

var _ storage.Backend = (*Backend)(nil)

// Open opens the SQLite database at path, creating the file if it does not exist, and switches
// it to WAL mode. It does not migrate the schema; call Migrate for that.
func Open(ctx context.Context, path string) (*Backend, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("open sqlite %q: want the path of a database file", path)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	// The writer first: its first connection creates the file and turns WAL on, which the
	// read-only connections could not do.
	writer, err := sql.Open("sqlite", dsn(abs, "_txlock=immediate"))
	if err != nil {
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)
	if err := checkWAL(ctx, writer); err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}

	reader, err := sql.Open("sqlite", dsn(abs, "_pragma=query_only(1)"))
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	reader.SetMaxOpenConns(n)
	reader.SetMaxIdleConns(n)
	if err := reader.PingContext(ctx); err != nil {
		writer.Close()
		reader.Close()
		return nil, fmt.Errorf("open sqlite %s: %w", path, interpretError(err))
	}
	return &Backend{writer: writer, stmts: newStmtCache(writer), reader: reader, queued: make(chan struct{}, 1)}, nil
}

// dsn is the driver's name for the database file at the absolute path abs: a file: URI whose
// parameters set the pragmas on every connection the pool opens, plus extra.
func dsn(abs, extra string) string {
	params := []string{
		fmt.Sprintf("_pragma=busy_timeout(%d)", busyTimeoutMillis),
		"_pragma=journal_mode(WAL)",
		"_pragma=synchronous(FULL)",
		"_pragma=foreign_keys(ON)",
		extra,
	}
	u := url.URL{Scheme: "file", Path: filepath.ToSlash(abs), RawQuery: strings.Join(params, "&")}
	return u.String()
}

// checkWAL opens the first connection of db and verifies that the database is in WAL mode:
// SQLite silently keeps the old journal mode where WAL is impossible (some network file
// systems), and without WAL readers and the writer would block each other.
func checkWAL(ctx context.Context, db *sql.DB) error {
	var mode string
	if err := db.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		return interpretError(err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("journal mode is %s, want wal (does the file system support it?)", mode)
	}
	return nil
}

// InTx runs fn in one write transaction, committing when fn returns nil and rolling back
// otherwise (also when fn panics). Transactions run one at a time: InTx blocks until the writer
// connection is free or ctx is done. fn must not call InTx itself, that would wait forever.
func (b *Backend) InTx(ctx context.Context, fn func(storage.Tx) error) error {
	t := &tx{}
	err := b.writeTx(ctx, func(sqlTx *sql.Tx) error {
		*t = tx{tx: sqlTx, stmts: b.stmts}
		return fn(t)
	})
	if len(t.unprepared) > 0 {
		b.stmts.prepare(ctx, t.unprepared)
	}
	if err == nil && t.queued {
		select {
		case b.queued <- struct{}{}:
		default:
		}
	}
	return err
}

// Lead calls fn at once: an SQLite database serves one execdb process, which relays its outbox.
// (A second process on the same file would relay too; consumers drop the repeats by message
// id.) wake receives a value after each commit of this process that queued messages.
func (b *Backend) Lead(ctx context.Context, fn func(ctx context.Context, wake <-chan struct{}) error) error {
	return fn(ctx, b.queued)
}

// writeTx runs fn in a transaction on the writer connection; it begins IMMEDIATE (see dsn).
func (b *Backend) writeTx(ctx context.Context, fn func(*sql.Tx) error) error {
	sqlTx, err := b.writer.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin transaction: %w", interpretError(err))
	}
	defer sqlTx.Rollback() //nolint:errcheck // a no-op after Commit
	if err := fn(sqlTx); err != nil {
		return err
	}
	if err := sqlTx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", interpretError(err))
	}
	return nil
}

// readTx runs fn in a read transaction on a reader connection, so that the several queries fn
// makes see one snapshot of the database.
func (b *Backend) readTx(ctx context.Context, fn func(*sql.Tx) error) error {
	sqlTx, err := b.reader.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin read transaction: %w", interpretError(err))
	}
	defer sqlTx.Rollback() //nolint:errcheck // nothing to keep
	return fn(sqlTx)
}

// Ping checks that the database answers.
func (b *Backend) Ping(ctx context.Context) error {
	var one int
	if err := b.reader.QueryRowContext(ctx, "SELECT 1").Scan(&one); err != nil {
		return fmt.Errorf("ping sqlite: %w", interpretError(err))
	}
	return nil
}

// Close closes the reader and the writer connections. It waits for nothing: call it after the
// users of the backend have stopped. Calling it again returns the first call's result.
func (b *Backend) Close() error {
	b.closeOnce.Do(func() {
		b.stmts.close()
		b.closeErr = errors.Join(b.reader.Close(), b.writer.Close())
	})
	return b.closeErr
}

// interpretError maps driver errors onto the storage sentinels, in one place: no row is
// ErrNotFound, a taken primary or unique key is ErrConflict, a foreign key naming a job that
// does not exist is ErrNotFound; another constraint, a value too big or of the wrong type is
// ErrInvalidData; a database busy or locked beyond the busy timeout, or a file that cannot be
// read, written or grown, is ErrUnavailable. The driver error stays in the chain; other errors
// are returned unchanged.
func interpretError(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return storage.ErrNotFound
	}
	var serr *sqlite.Error
	if errors.As(err, &serr) {
		switch code := serr.Code(); code {
		case sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY, sqlite3.SQLITE_CONSTRAINT_UNIQUE:
			return fmt.Errorf("%w: %w", storage.ErrConflict, err)
		case sqlite3.SQLITE_CONSTRAINT_FOREIGNKEY:
			return fmt.Errorf("%w: %w", storage.ErrNotFound, err)
		default:
			switch code & 0xff { // the primary result code
			case sqlite3.SQLITE_CONSTRAINT, sqlite3.SQLITE_TOOBIG, sqlite3.SQLITE_MISMATCH, sqlite3.SQLITE_RANGE:
				return fmt.Errorf("%w: %w", storage.ErrInvalidData, err)
			case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CANTOPEN,
				sqlite3.SQLITE_FULL, sqlite3.SQLITE_READONLY, sqlite3.SQLITE_PROTOCOL:
				return fmt.Errorf("%w: %w", storage.ErrUnavailable, err)
			}
		}
	}
	return err
}
