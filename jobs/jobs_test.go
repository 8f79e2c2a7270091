package jobs_test

import (
	"testing"

	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/jobs/jobstest"
	"github.com/fedora-qa/execdb/storage"
)

// backends opens a fresh backend of each kind; PostgreSQL's skips without
// EXECDB_TEST_POSTGRES_URL.
var backends = map[string]func(t testing.TB) storage.Backend{
	"sqlite":   func(t testing.TB) storage.Backend { return testenv.SQLite(t, "") },
	"postgres": func(t testing.TB) storage.Backend { return testenv.Postgres(t, "") },
}

// TestService runs the service's suite over every backend, each write a unit of its own and
// with group commit.
func TestService(t *testing.T) {
	for name, open := range backends {
		for mode, opts := range map[string]jobstest.Options{
			"alone":   {},
			"grouped": {GroupCommit: jobs.GroupCommit{Lanes: 2, MaxBatch: 8}},
		} {
			t.Run(name+"/"+mode, func(t *testing.T) {
				jobstest.Run(t, func(t *testing.T) storage.Backend { return open(t) }, opts)
			})
		}
	}
}

// BenchmarkLifecycle measures full job lives (create, start, crash) on each backend, each
// write a unit of its own and with group commit (one lane on SQLite, two on PostgreSQL).
func BenchmarkLifecycle(b *testing.B) {
	for name, open := range backends {
		lanes := map[string]int{"sqlite": 1, "postgres": 2}[name]
		for mode, group := range map[string]jobs.GroupCommit{"alone": {}, "grouped": {Lanes: lanes}} {
			b.Run(name+"/"+mode, func(b *testing.B) { jobstest.BenchmarkLifecycle(b, open(b), group) })
		}
	}
}

// BenchmarkApplyBus measures batches of bus messages applied on each backend.
func BenchmarkApplyBus(b *testing.B) {
	for name, open := range backends {
		b.Run(name, func(b *testing.B) { jobstest.BenchmarkApplyBus(b, open(b)) })
	}
}
