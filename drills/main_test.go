//go:build drills

package drills

import (
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// settings are the drills' knobs, read from the environment once.
type settings struct {
	jobs     int     // job lives per drill
	rate     float64 // AMQP messages published per second by the drills' publisher
	clients  int     // concurrent HTTP clients of the HTTP drill
	pgPort   int     // the private PostgreSQL
	amqpPort int     // the private RabbitMQ
	distPort int     // its Erlang distribution port
	node     string  // its node name
	report   string  // a file to write the table to, besides stdout
	bin      string  // a prebuilt execdb binary; empty: build ./cmd/execdb
	keepLogs bool    // keep the serve logs of drills that passed too
}

var cfg = settings{
	jobs:     envInt("EXECDB_DRILL_JOBS", 3000),
	rate:     float64(envInt("EXECDB_DRILL_RATE", 1000)),
	clients:  envInt("EXECDB_DRILL_HTTP_CLIENTS", 16),
	pgPort:   envInt("EXECDB_DRILL_PG_PORT", 55432),
	amqpPort: envInt("EXECDB_DRILL_AMQP_PORT", 55672),
	distPort: envInt("EXECDB_DRILL_AMQP_DIST_PORT", 55673),
	node:     envOr("EXECDB_DRILL_AMQP_NODE", "execdb-drill@localhost"),
	report:   os.Getenv("EXECDB_DRILL_REPORT"),
	bin:      os.Getenv("EXECDB_DRILL_BIN"),
	keepLogs: os.Getenv("EXECDB_DRILL_KEEP_LOGS") != "",
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		fmt.Fprintf(os.Stderr, "drills: %s=%q is not a positive integer; using %d\n", name, v, def)
		return def
	}
	return n
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	stopServices()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	if len(rows) > 0 {
		fmt.Println()
		writeReport(os.Stdout)
		if cfg.report != "" {
			f, err := os.Create(cfg.report)
			if err == nil {
				writeReport(f)
				err = f.Close()
			}
			if err != nil {
				fmt.Fprintln(os.Stderr, "drills: write report:", err)
			}
		}
	}
	os.Exit(code)
}

// row is one drill's figures: the line of the table.
type row struct {
	drill    string
	jobsExp  int
	jobsGot  int
	stateExp map[string]int
	stateGot map[string]int
	// Doubly applied: extra history entries with verdict applied for one (job, kind), and
	// extra applied entries for one bus message id.
	doubleJobKind int
	doubleMsgID   int
	late          int // starts recorded late (applied after their end)
	annMissing    int // (job, announcement) pairs never received
	annOrder      int // jobs whose announcements came out of order
	annExtra      int // announcements beyond scheduled, running, end for a job, or for no expected job
	annDup        int // deliveries of a message id already received (at-least-once: allowed)
	rejExp        int
	rejGot        int
	rss           []string // peak RSS of each serve process, in start order
	took          time.Duration
	failed        bool
	details       []string // further lines under the table
}

var (
	rowsMu sync.Mutex
	rows   []*row
)

var states = []string{"SCHEDULED", "RUNNING", "FINISHED", "CRASHED"}

func addRow(r *row) {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	rows = append(rows, r)
}

// header and line render the table in Markdown.
func header() string {
	cols := []string{"drill", "result", "jobs exp/found"}
	cols = append(cols, states...)
	cols = append(cols, "doubly applied (job,kind / msg id)", "late starts", "ann. missing", "ann. out of order",
		"ann. extra", "ann. duplicates", "rejected exp/found", "RSS peak MB (each serve)", "time")
	seps := make([]string, len(cols))
	for i := range seps {
		seps[i] = "---"
	}
	return "| " + strings.Join(cols, " | ") + " |\n|" + strings.Join(seps, "|") + "|\n"
}

func (r *row) line() string {
	result := "ok"
	if r.failed {
		result = "**FAIL**"
	}
	cols := []string{r.drill, result, fmt.Sprintf("%d/%d", r.jobsExp, r.jobsGot)}
	for _, s := range states {
		cols = append(cols, fmt.Sprintf("%d/%d", r.stateExp[s], r.stateGot[s]))
	}
	cols = append(cols, fmt.Sprintf("%d / %d", r.doubleJobKind, r.doubleMsgID), strconv.Itoa(r.late),
		strconv.Itoa(r.annMissing), strconv.Itoa(r.annOrder), strconv.Itoa(r.annExtra), strconv.Itoa(r.annDup),
		fmt.Sprintf("%d/%d", r.rejExp, r.rejGot), strings.Join(r.rss, ", "), r.took.Round(time.Second).String())
	return "| " + strings.Join(cols, " | ") + " |\n"
}

func writeReport(w io.Writer) {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	fmt.Fprint(w, header())
	for _, r := range rows {
		fmt.Fprint(w, r.line())
	}
	fmt.Fprintln(w)
	for _, r := range rows {
		if len(r.details) == 0 {
			continue
		}
		fmt.Fprintf(w, "%s:\n", r.drill)
		for _, d := range r.details {
			fmt.Fprintf(w, "- %s\n", d)
		}
	}
}

// sortedCounts renders a map of counts as "a=1 b=2", keys sorted.
func sortedCounts(m map[string]int) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%d", k, m[k])
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, " ")
}
