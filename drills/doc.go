//go:build drills

// Package drills holds ExecDB's fault drills: real `execdb serve` processes on private
// PostgreSQL and RabbitMQ instances that the drills start themselves (on ports of their own,
// never the machine's 5432 and 5672), driven with thousands of job lives while processes,
// the broker and the database are killed, and then counted exactly: jobs expected and found per
// state, events applied twice, starts applied after their end, announcements missing, out of
// order or duplicated, rejected messages per reason, and the peak RSS of every serve process.
//
// Every file carries the build tag drills, so `go test ./...` and CI never build them. Run:
//
//	go test -tags drills -v -timeout 60m ./drills/
//
// docs/reliability.md describes each drill, the settings (EXECDB_DRILL_*) and the last figures.
package drills
