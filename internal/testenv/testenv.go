// Package testenv finds the services integration tests talk to. Unset variables skip the test
// with a message saying how to run it; a set variable pointing at a service that does not answer
// fails the test at once.
package testenv

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// PostgresURL returns EXECDB_TEST_POSTGRES_URL or skips the test.
func PostgresURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("EXECDB_TEST_POSTGRES_URL")
	if u == "" {
		t.Skip("EXECDB_TEST_POSTGRES_URL is unset; set it (e.g. postgres://postgres@127.0.0.1:5432/test) or run .ci/run")
	}
	return u
}

// AMQPURL returns EXECDB_TEST_AMQP_URL or skips the test.
func AMQPURL(t testing.TB) string {
	t.Helper()
	u := os.Getenv("EXECDB_TEST_AMQP_URL")
	if u == "" {
		t.Skip("EXECDB_TEST_AMQP_URL is unset; set it (e.g. amqp://guest:guest@127.0.0.1:5672/) or run .ci/run")
	}
	return u
}

// PostgresSchema creates a fresh schema in the test database, drops it when the test ends, and
// returns a URL whose connections use it. It skips when EXECDB_TEST_POSTGRES_URL is unset.
func PostgresSchema(t testing.TB) string {
	t.Helper()
	base := PostgresURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, base)
	if err != nil {
		t.Fatalf("EXECDB_TEST_POSTGRES_URL is set but PostgreSQL does not answer: %v", err)
	}
	defer conn.Close(ctx)
	schema := "t_" + strings.ReplaceAll(uuid.NewString(), "-", "")[:20]
	if _, err := conn.Exec(ctx, "CREATE SCHEMA "+schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, base)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA "+schema+" CASCADE"); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return withParam(t, base, "search_path", schema)
}

func withParam(t testing.TB, raw, key, value string) string {
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatalf("parse %q: %v", raw, err)
	}
	q := u.Query()
	q.Set(key, value)
	u.RawQuery = q.Encode()
	return fmt.Sprint(u)
}
