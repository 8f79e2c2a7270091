package storage

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// Exporter reads a database whole, for Copy. Implementations are safe for concurrent use.
type Exporter interface {
	// ExportJobs returns up to limit jobs' marks, those with a uuid after the given one, in
	// uuid order.
	ExportJobs(ctx context.Context, after uuid.UUID, limit int) ([]JobMark, error)
	// ExportParked returns up to limit parked events with an id above the given one, in id
	// order, leaving them parked.
	ExportParked(ctx context.Context, afterID int64, limit int) ([]ParkedEvent, error)
}

// JobMark is a job's uuid with its automatic-reschedule mark, which the job itself does not
// carry.
type JobMark struct {
	UUID      uuid.UUID
	Auto      AutoStatus
	AutoDueAt *time.Time
}

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
func Copy(ctx context.Context, from, to Backend, progress func(CopyResult)) (CopyResult, error) {
	var res CopyResult
	if err := checkEmpty(ctx, to); err != nil {
		return res, err
	}
	report := func() {
		if progress != nil {
			progress(res)
		}
	}
	for after := uuid.Nil; ; {
		marks, err := from.ExportJobs(ctx, after, copyBatch)
		if err != nil {
			return res, fmt.Errorf("read jobs: %w", err)
		}
		if len(marks) == 0 {
			break
		}
		type jobCopy struct {
			job     statemachine.Job
			mark    JobMark
			history []HistoryEntry
		}
		batch := make([]jobCopy, 0, len(marks))
		for _, m := range marks {
			job, err := from.Job(ctx, m.UUID)
			if err != nil {
				return res, fmt.Errorf("read job %s: %w", m.UUID, err)
			}
			h, err := from.History(ctx, m.UUID)
			if err != nil {
				return res, fmt.Errorf("read the history of job %s: %w", m.UUID, err)
			}
			batch = append(batch, jobCopy{job, m, h})
		}
		err = to.InTx(ctx, func(tx Tx) error {
			for _, c := range batch {
				if err := tx.InsertJob(ctx, c.job); err != nil {
					return fmt.Errorf("job %s: %w", c.job.UUID, err)
				}
				if c.mark.Auto != AutoUndecided {
					if _, err := tx.MarkAuto(ctx, c.job.UUID, AutoUndecided, c.mark.Auto, c.mark.AutoDueAt); err != nil {
						return fmt.Errorf("job %s: %w", c.job.UUID, err)
					}
				}
				for _, e := range c.history {
					if err := tx.AppendHistory(ctx, e); err != nil {
						return fmt.Errorf("history of job %s: %w", c.job.UUID, err)
					}
				}
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("write jobs: %w", err)
		}
		for _, c := range batch {
			res.Jobs++
			res.History += len(c.history)
		}
		after = marks[len(marks)-1].UUID
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
		if err := to.InTx(ctx, func(tx Tx) error {
			for _, m := range msgs {
				if err := tx.AppendOutbox(ctx, m); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return res, fmt.Errorf("write the outbox: %w", err)
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
		if err := to.InTx(ctx, func(tx Tx) error {
			for _, p := range parked {
				if err := tx.Park(ctx, p); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return res, fmt.Errorf("write parked events: %w", err)
		}
		res.Parked += len(parked)
		afterID = parked[len(parked)-1].ID
		report()
	}
	// Rejected messages come newest first: read them all, write the oldest first.
	var rejected []RejectedMessage
	for before := int64(0); ; {
		page, err := from.Rejected(ctx, RejectedQuery{BeforeID: before, Limit: copyBatch})
		if err != nil {
			return res, fmt.Errorf("read rejected messages: %w", err)
		}
		if len(page) == 0 {
			break
		}
		rejected = append(rejected, page...)
		before = page[len(page)-1].ID
	}
	for end := len(rejected); end > 0; end -= copyBatch {
		chunk := rejected[max(0, end-copyBatch):end]
		if err := to.InTx(ctx, func(tx Tx) error {
			for i := len(chunk) - 1; i >= 0; i-- {
				if err := tx.AppendRejected(ctx, chunk[i]); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return res, fmt.Errorf("write rejected messages: %w", err)
		}
		res.Rejected += len(chunk)
		report()
	}
	return res, nil
}

// checkEmpty returns ErrNotEmpty unless db holds no job, outbox message, parked event or
// rejected message.
func checkEmpty(ctx context.Context, db Backend) error {
	marks, err := db.ExportJobs(ctx, uuid.Nil, 1)
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
	rejected, err := db.Rejected(ctx, RejectedQuery{Limit: 1})
	if err != nil {
		return err
	}
	if len(marks)+len(out)+len(parked)+len(rejected) > 0 {
		return ErrNotEmpty
	}
	return nil
}
