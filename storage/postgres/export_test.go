package postgres

import "github.com/fedora-qa/execdb/storage"

// StatsSQL is the statements Stats may send for s, in the order it tries them.
func (b *Backend) StatsSQL(s storage.StatsQuery) (sqls []string, args [][]any) {
	for _, st := range b.statsStatements(s) {
		sqls, args = append(sqls, st.sql), append(args, st.args)
	}
	return sqls, args
}

// SetTallyRows sets the most rows a stats question is counted from in Go; beyond them (0: every
// question with rows) it is answered with GROUP BY and percentile_disc.
func SetTallyRows(b *Backend, n int) { b.tallyRows = n }
