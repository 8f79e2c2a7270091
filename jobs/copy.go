package jobs

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// CopyResult counts what Copy copied.
type CopyResult struct {
	Jobs, History, Outbox, Parked, Rejected int
}

// copyBatch is how many jobs (or rows) one target transaction of Copy writes.
const copyBatch = 200

// ErrNotEmpty is a Copy target that already holds data.
var ErrNotEmpty = errors.New("the target database is not empty")

// Copy copies everything from one database to another, empty one (ErrNotEmpty otherwise), for
// moving from SQLite to PostgreSQL (or back): the jobs with their data, crash key-values,
// lineage and automatic-reschedule marks, every job's history in order, the outbox messages not
// published yet in order, the parked events and the rejected messages. The message ids seen on
// the bus are not copied (a redelivery of a message that came in before the copy is recognised
// by the state machine and the request ids instead). Stop every serve process that writes to
// from before: what it changes while Copy runs may be missed. progress, when not nil, is told
// what was copied after each batch.
func Copy(ctx context.Context, from, to storage.Backend, progress func(CopyResult)) (CopyResult, error) {
	var res CopyResult
	if err := checkEmpty(ctx, to); err != nil {
		return res, err
	}
	report := func() {
		if progress != nil {
			progress(res)
		}
	}
	write := func(what string, w storage.Writes) error {
		if err := to.InTx(ctx, func(tx storage.Tx) error { return tx.Write(ctx, w) }); err != nil {
			return fmt.Errorf("write %s: %w", what, err)
		}
		return nil
	}
	for after := uuid.Nil; ; {
		ids, err := from.ExportJobs(ctx, after, copyBatch)
		if err != nil {
			return res, fmt.Errorf("read jobs: %w", err)
		}
		if len(ids) == 0 {
			break
		}
		var w storage.Writes
		for _, id := range ids {
			job, err := from.Job(ctx, id)
			if err != nil {
				return res, fmt.Errorf("read job %s: %w", id, err)
			}
			h, err := from.History(ctx, id)
			if err != nil {
				return res, fmt.Errorf("read the history of job %s: %w", id, err)
			}
			w.NewJobs = append(w.NewJobs, job)
			w.History = append(w.History, h...)
		}
		if err := write("jobs", w); err != nil {
			return res, err
		}
		res.Jobs += len(w.NewJobs)
		res.History += len(w.History)
		after = ids[len(ids)-1]
		report()
	}
	for afterID := int64(0); ; {
		msgs, err := from.Outbox(ctx, afterID, copyBatch)
		if err != nil {
			return res, fmt.Errorf("read the outbox: %w", err)
		}
		if len(msgs) == 0 {
			break
		}
		if err := write("the outbox", storage.Writes{Outbox: msgs}); err != nil {
			return res, err
		}
		res.Outbox += len(msgs)
		afterID = msgs[len(msgs)-1].ID
		report()
	}
	for afterID := int64(0); ; {
		parked, err := from.ExportParked(ctx, afterID, copyBatch)
		if err != nil {
			return res, fmt.Errorf("read parked events: %w", err)
		}
		if len(parked) == 0 {
			break
		}
		if err := write("parked events", storage.Writes{Parked: parked}); err != nil {
			return res, err
		}
		res.Parked += len(parked)
		afterID = parked[len(parked)-1].ID
		report()
	}
	// Rejected messages come newest first: read them all, write the oldest first.
	var rejected []storage.RejectedMessage
	for before := int64(0); ; {
		page, err := from.Rejected(ctx, storage.RejectedQuery{BeforeID: before, Limit: copyBatch})
		if err != nil {
			return res, fmt.Errorf("read rejected messages: %w", err)
		}
		if len(page) == 0 {
			break
		}
		rejected = append(rejected, page...)
		before = page[len(page)-1].ID
	}
	slices.Reverse(rejected)
	for chunk := range slices.Chunk(rejected, copyBatch) {
		if err := write("rejected messages", storage.Writes{Rejected: chunk}); err != nil {
			return res, err
		}
		res.Rejected += len(chunk)
		report()
	}
	return res, nil
}

// checkEmpty returns ErrNotEmpty unless db holds no job, outbox message, parked event or
// rejected message.
func checkEmpty(ctx context.Context, db storage.Backend) error {
	ids, err := db.ExportJobs(ctx, uuid.Nil, 1)
	if err != nil {
		return err
	}
	out, err := db.Outbox(ctx, 0, 1)
	if err != nil {
		return err
	}
	parked, err := db.ExportParked(ctx, 0, 1)
	if err != nil {
		return err
	}
	rejected, err := db.Rejected(ctx, storage.RejectedQuery{Limit: 1})
	if err != nil {
		return err
	}
	if len(ids)+len(out)+len(parked)+len(rejected) > 0 {
		return ErrNotEmpty
	}
	return nil
}
