package postgres_test

import (
	"context"
	"os"
	"testing"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs/jobstest"
	"github.com/fedora-qa/execdb/storage"
	"github.com/fedora-qa/execdb/storage/postgres"
	"github.com/fedora-qa/execdb/storage/storagetest"
)

func openTemp(t *testing.T) *postgres.Backend {
	t.Helper()
	ctx := context.Background()
	b, err := postgres.Open(ctx, testenv.PostgresSchema(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	if err := b.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) storage.Backend { return openTemp(t) })
}

func TestMigrateIsIdempotent(t *testing.T) {
	b := openTemp(t)
	if err := b.Migrate(context.Background()); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	var n int
	if err := b.Pool().QueryRow(context.Background(), `SELECT count(*) FROM schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	files, err := os.ReadDir("migrations")
	if err != nil {
		t.Fatal(err)
	}
	if n != len(files) {
		t.Errorf("got %d applied migrations, want %d (one per file)", n, len(files))
	}
}

// TestStatsInSQL runs the service's search and statistics tests with every stats question
// answered by GROUP BY and percentile_disc, as questions over more rows than Stats counts in Go
// are (whole history), to the same answers.
func TestStatsInSQL(t *testing.T) {
	jobstest.RunSearch(t, func(t *testing.T) storage.Backend {
		b := openTemp(t)
		postgres.SetTallyRows(b, 0)
		return b
	})
}
