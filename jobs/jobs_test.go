package jobs_test

import (
	"testing"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs/jobstest"
	"github.com/fedora-qa/execdb/storage"
)

// backends opens a fresh backend of each kind; PostgreSQL's skips without
// EXECDB_TEST_POSTGRES_URL.
var backends = map[string]func(t testing.TB) storage.Backend{
	"sqlite":   func(t testing.TB) storage.Backend { return testenv.SQLite(t, "") },
	"postgres": func(t testing.TB) storage.Backend { return testenv.Postgres(t, "") },
}

// TestService runs the service's suite over every backend.
func TestService(t *testing.T) {
	for name, open := range backends {
		t.Run(name, func(t *testing.T) {
			jobstest.Run(t, func(t *testing.T) storage.Backend { return open(t) })
		})
	}
}

// BenchmarkLifecycle measures full job lives (create, start, crash) on each backend.
func BenchmarkLifecycle(b *testing.B) {
	for name, open := range backends {
		b.Run(name, func(b *testing.B) { jobstest.BenchmarkLifecycle(b, open(b)) })
	}
}
