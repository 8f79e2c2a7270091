package testenv

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/postgres"
	"github.com/fedora-qa/execdb/storage/sqlite"
)

// SQLite opens and migrates the SQLite database at path, a fresh one in t.TempDir() when path
// is empty, and closes it when the test ends. Several calls with one path open one database as
// several processes would.
func SQLite(t testing.TB, path string) storage.Backend {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "execdb.db")
	}
	b, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}

// Postgres opens and migrates the PostgreSQL database at url, a fresh schema of the test
// database when url is empty (skipping without EXECDB_TEST_POSTGRES_URL), and closes it when
// the test ends. Several calls with one url open one database as several processes would.
func Postgres(t testing.TB, url string) storage.Backend {
	t.Helper()
	if url == "" {
		url = PostgresSchema(t)
	}
	b, err := postgres.Open(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return b
}
