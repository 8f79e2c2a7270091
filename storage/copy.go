package storage

import (
	"context"

	"github.com/google/uuid"
)

// Exporter reads a database whole, for copying it to another. Implementations are safe for concurrent use.
type Exporter interface {
	// ExportJobs returns the uuids of up to limit jobs, those after the given one, in uuid
	// order.
	ExportJobs(ctx context.Context, after uuid.UUID, limit int) ([]uuid.UUID, error)
	// ExportParked returns up to limit parked events with an id above the given one, in id
	// order, leaving them parked.
	ExportParked(ctx context.Context, afterID int64, limit int) ([]ParkedEvent, error)
}
