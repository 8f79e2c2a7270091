package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// A transaction begins with its first statement: BEGIN goes out in the first pipeline
// (pgx's Batch.BeginTx; Tx.Load, or Write for a unit that loads nothing), not in a round trip
// of its own, so an HTTP write costs three round trips: BEGIN with the locks and reads, the
// writes, COMMIT.

// txn implements storage.Tx over one pooled connection; tx is nil until the transaction began.
type txn struct {
	conn *pgx.Conn
	tx   pgx.Tx
}

var _ storage.Tx = (*txn)(nil)

// rollbackTimeout bounds the ROLLBACK of a failed unit; a connection that does not roll back in
// time is closed, which rolls back too.
const rollbackTimeout = 5 * time.Second

// InTx runs fn in a READ COMMITTED transaction; jobs are locked row by row with FOR UPDATE.
// A transaction fn sends nothing in costs nothing.
func (b *Backend) InTx(ctx context.Context, fn func(storage.Tx) error) error {
	pooled, err := b.pool.Acquire(ctx)
	if err != nil {
		return interpretError(err)
	}
	// The pool closes, instead of reusing, a connection left inside a transaction (a panic).
	defer pooled.Release()
	t := &txn{conn: pooled.Conn()}
	err = fn(t)
	if t.tx == nil {
		return interpretError(err)
	}
	if err != nil {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		t.tx.Rollback(rctx) // closes the connection when it fails
		return interpretError(err)
	}
	return interpretError(t.tx.Commit(ctx))
}

// begin begins the transaction unless it has begun.
func (t *txn) begin(ctx context.Context) error {
	if t.tx != nil {
		return nil
	}
	tx, err := t.conn.Begin(ctx)
	if err != nil {
		return err
	}
	t.tx = tx
	return nil
}

// Query, QueryRow and SendBatch run in the transaction: the first of them begins it.

func (t *txn) Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error) {
	if err := t.begin(ctx); err != nil {
		return nil, err
	}
	return t.tx.Query(ctx, sql, args...)
}

func (t *txn) QueryRow(ctx context.Context, sql string, args ...any) pgx.Row {
	if err := t.begin(ctx); err != nil {
		return errRow{err}
	}
	return t.tx.QueryRow(ctx, sql, args...)
}

// SendBatch sends b in one round trip, beginning the transaction in it when it has not begun;
// the results are b's (the BEGIN's is read here).
func (t *txn) SendBatch(ctx context.Context, b *pgx.Batch) pgx.BatchResults {
	if t.tx != nil {
		return t.tx.SendBatch(ctx, b)
	}
	withBegin := &pgx.Batch{}
	withBegin.BeginTx(pgx.TxOptions{})
	withBegin.QueuedQueries = append(withBegin.QueuedQueries, b.QueuedQueries...)
	br := t.conn.SendBatch(ctx, withBegin)
	t.tx = br.Tx()
	if _, err := br.Exec(); err != nil {
		br.Close()
		return pgx.FailedBatchResults(b, err)
	}
	return br
}

type errRow struct{ err error }

func (r errRow) Scan(...any) error { return r.err }

// Load sends every step of l, and BEGIN when the transaction has not begun, in one pipeline.
func (t *txn) Load(ctx context.Context, l storage.Load) (storage.Loaded, error) {
	var out storage.Loaded
	b := &pgx.Batch{}
	if len(l.Keys) > 0 {
		b.Queue(lockKeysSQL, jobLockClass, lockKeys(l.Keys))
	}
	if len(l.SeenIDs) > 0 {
		b.Queue(markSeenSQL, l.SeenIDs, l.SeenAt)
	}
	if len(l.Jobs) > 0 {
		b.Queue(readJobsSQL(`WHERE uuid = ANY($1) ORDER BY uuid FOR UPDATE OF j`), rawUUIDs(l.Jobs))
	}
	if len(l.RequestIDs) > 0 {
		b.Queue(readJobsSQL(`WHERE request_id = ANY($1)`), l.RequestIDs)
	}
	if len(l.Parked) > 0 {
		b.Queue(`DELETE FROM parked_events WHERE job_uuid = ANY($1) RETURNING `+parkedColumns, rawUUIDs(l.Parked))
	}
	if b.Len() == 0 {
		return out, nil
	}
	br := t.SendBatch(ctx, b)
	defer br.Close()
	step := func(what string, err error) error {
		return fmt.Errorf("%s: %w", what, interpretError(err))
	}
	if len(l.Keys) > 0 {
		if _, err := br.Exec(); err != nil {
			return out, step(fmt.Sprintf("lock %d job keys", len(l.Keys)), err)
		}
	}
	if len(l.SeenIDs) > 0 {
		rows, err := br.Query()
		if err != nil {
			return out, step("mark message ids seen", err)
		}
		inserted, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return out, step("mark message ids seen", err)
		}
		out.Fresh = freshOf(l.SeenIDs, inserted)
	}
	if len(l.Jobs) > 0 {
		locked, err := queryJobs(br)
		if err != nil {
			return out, step(fmt.Sprintf("lock %d jobs", len(l.Jobs)), err)
		}
		out.Jobs = make(map[uuid.UUID]statemachine.Job, len(locked))
		for _, j := range locked {
			out.Jobs[j.UUID] = j
		}
	}
	if len(l.RequestIDs) > 0 {
		byReq, err := queryJobs(br)
		if err != nil {
			return out, step(fmt.Sprintf("jobs by %d request ids", len(l.RequestIDs)), err)
		}
		out.ByRequestID = make(map[string]statemachine.Job, len(byReq))
		for _, j := range byReq {
			out.ByRequestID[j.RequestID] = j
		}
	}
	if len(l.Parked) > 0 {
		rows, err := br.Query()
		if err != nil {
			return out, step(fmt.Sprintf("take events parked for %d jobs", len(l.Parked)), err)
		}
		if out.Parked, err = collectParked(rows); err != nil {
			return out, step(fmt.Sprintf("take events parked for %d jobs", len(l.Parked)), err)
		}
	}
	return out, interpretError(br.Close())
}

func queryJobs(br pgx.BatchResults) ([]statemachine.Job, error) {
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	return collectJobs(rows)
}
