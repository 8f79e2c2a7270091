package postgres

import "github.com/fedora-qa/execdb/storage"

// StatsSQL is the statement Stats sends for s.
func StatsSQL(s storage.StatsQuery) (string, []any) { return statsStatement(s) }
