package sqlite

import (
	"context"
	"database/sql"
	"sync"
)

// The driver prepares (parses and compiles) a statement each time it is run unless it was
// prepared before: a third of the writer's CPU went to parsing the same few statements. The
// writer's statements are therefore prepared once on its one connection and kept; a write
// transaction runs them through sql.Tx.StmtContext, which reuses what its connection prepared.

// maxWriterStatements bounds the statements kept; statements built with lists of varying
// length (IN (?, ?, …)) would otherwise grow the cache for ever.
const maxWriterStatements = 64

// stmtCache holds the writer's prepared statements, by their SQL. A statement a transaction ran
// unprepared is prepared after that transaction (the writer's one connection is busy during it).
type stmtCache struct {
	db *sql.DB // the writer

	mu    sync.RWMutex
	stmts map[string]*sql.Stmt
}

func newStmtCache(db *sql.DB) *stmtCache {
	return &stmtCache{db: db, stmts: map[string]*sql.Stmt{}}
}

func (c *stmtCache) get(query string) *sql.Stmt {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.stmts[query]
}

// prepare prepares the queries not in the cache yet, while there is room; a query that fails to
// prepare is left to run unprepared.
func (c *stmtCache) prepare(ctx context.Context, queries []string) {
	for _, q := range queries {
		c.mu.RLock()
		_, ok := c.stmts[q]
		full := len(c.stmts) >= maxWriterStatements
		c.mu.RUnlock()
		if ok || full {
			continue
		}
		st, err := c.db.PrepareContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if _, ok := c.stmts[q]; ok {
			st.Close()
		} else {
			c.stmts[q] = st
		}
		c.mu.Unlock()
	}
}

// close closes the statements; the writer closes after it.
func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, st := range c.stmts {
		st.Close()
		delete(c.stmts, q)
	}
}

// ExecContext, QueryContext and QueryRowContext run query in the transaction, prepared when the
// cache has it; otherwise unprepared, noting it for the cache.

func (t *tx) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if st := t.stmts.get(query); st != nil {
		return t.tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	t.unprepared = append(t.unprepared, query)
	return t.tx.ExecContext(ctx, query, args...)
}

func (t *tx) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if st := t.stmts.get(query); st != nil {
		return t.tx.StmtContext(ctx, st).QueryContext(ctx, args...)
	}
	t.unprepared = append(t.unprepared, query)
	return t.tx.QueryContext(ctx, query, args...)
}

func (t *tx) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	if st := t.stmts.get(query); st != nil {
		return t.tx.StmtContext(ctx, st).QueryRowContext(ctx, args...)
	}
	t.unprepared = append(t.unprepared, query)
	return t.tx.QueryRowContext(ctx, query, args...)
}
