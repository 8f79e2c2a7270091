package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/fedora-qa/execdb/client"
	"github.com/fedora-qa/execdb/statemachine"
)

// Readable output of the client commands. --json prints the API's answers instead; this text is
// for people and may change.

// printJob prints a job as aligned "key: value" lines, leaving out what is unknown or empty.
func printJob(w io.Writer, j statemachine.Job) {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	opt := func(k, v string) {
		if v != "" {
			line(k, v)
		}
	}
	line("uuid", j.UUID.String())
	line("state", string(j.State))
	if j.Crash != nil {
		c := statemachine.NormalizeCrash(j.Crash)
		line("crash", fmt.Sprintf("notify=%s cause=%s fatal=%t", c.Notify, c.Cause, c.Fatal))
		opt("crash keyvals", formatKeyVals(c.KeyVals))
	}
	line("taskname", j.TaskName)
	line("item", j.Item)
	line("item_type", j.ItemType)
	line("arch", j.Arch)
	opt("data", formatKeyVals(j.Data))
	line("attempt", strconv.Itoa(j.Attempt))
	if j.RescheduledFrom != nil {
		line("rescheduled_from", j.RescheduledFrom.String())
	}
	if j.RescheduledTo != nil {
		line("rescheduled_to", j.RescheduledTo.String())
	}
	if j.Runner != nil {
		line("runner", formatPairs("name", j.Runner.Name, "jobid", j.Runner.JobID,
			"worker", j.Runner.Worker, "url", j.Runner.URL))
	}
	opt("artifacts_url", j.ArtifactsURL)
	opt("log_url", j.LogURL)
	if j.Source != nil {
		line("source", formatPairs("msg_id", j.Source.MsgID, "topic", j.Source.Topic))
	}
	opt("request_id", j.RequestID)
	line("created_at", formatTime(j.CreatedAt))
	if j.StartedAt != nil {
		line("started_at", formatTime(*j.StartedAt))
	}
	if j.FinishedAt != nil {
		line("finished_at", formatTime(*j.FinishedAt))
		if j.StartedAt != nil {
			// A server keeps finished_at >= started_at; one older than v1.1 may not have.
			line("duration", max(0, j.FinishedAt.Sub(*j.StartedAt)).Round(time.Second).String())
		}
	}
	line("updated_at", formatTime(j.UpdatedAt))
	tw.Flush()
}

// jobSummary is a one-line description of a job, for messages.
func jobSummary(j statemachine.Job) string {
	s := fmt.Sprintf("%s %s", j.UUID, j.State)
	if j.Crash != nil {
		c := statemachine.NormalizeCrash(j.Crash)
		s += fmt.Sprintf(" (notify=%s cause=%s", c.Notify, c.Cause)
		if c.Fatal {
			s += " fatal"
		}
		if kv := formatKeyVals(c.KeyVals); kv != "" {
			s += " " + kv
		}
		s += ")"
	}
	return s
}

// printEvents prints a job's history as a table.
func printEvents(w io.Writer, events []client.HistoryEntry) {
	if len(events) == 0 {
		fmt.Fprintln(w, "no events")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tRECORDED_AT\tKIND\tVERDICT\tSOURCE\tSTATE\tACTOR\tMESSAGE_ID\tDETAIL")
	for _, e := range events {
		state := string(e.StateTo)
		if e.StateFrom != "" && e.StateFrom != e.StateTo {
			state = string(e.StateFrom) + "→" + state
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.ID, formatTime(e.RecordedAt), e.Kind, e.Verdict,
			e.Source, dash(state), dash(e.Actor), dash(e.MessageID), dash(summarizeDetail(e.Detail)))
	}
	tw.Flush()
}

// summarizeDetail shortens an event's payload to what a person scans for: the outcome of an end,
// the runner of a start, what a create asked for; anything else as compact JSON.
func summarizeDetail(raw json.RawMessage) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var d struct {
		State    string               `json:"state"`
		Crash    *statemachine.Crash  `json:"crash"`
		Runner   *statemachine.Runner `json:"runner"`
		TaskName string               `json:"taskname"`
		Item     string               `json:"item"`
		ItemType string               `json:"item_type"`
	}
	if json.Unmarshal(raw, &d) == nil {
		switch {
		case d.State != "":
			s := d.State
			if d.Crash != nil {
				c := statemachine.NormalizeCrash(d.Crash)
				s += fmt.Sprintf(" %s/%s", c.Notify, c.Cause)
				if c.Fatal {
					s += " fatal"
				}
				if kv := formatKeyVals(c.KeyVals); kv != "" {
					s += " " + kv
				}
			}
			return cut(s, 80)
		case d.TaskName != "":
			return cut(fmt.Sprintf("%s on %s %s", d.TaskName, d.ItemType, d.Item), 80)
		case d.Runner != nil:
			return cut("runner "+formatPairs("name", d.Runner.Name, "jobid", d.Runner.JobID, "worker", d.Runner.Worker), 80)
		}
	}
	var buf bytes.Buffer
	if json.Compact(&buf, raw) != nil || buf.String() == "{}" {
		return ""
	}
	return cut(buf.String(), 80)
}

// printJobList prints search results as a table.
func printJobList(w io.Writer, jobs []statemachine.Job, now time.Time) {
	if len(jobs) == 0 {
		fmt.Fprintln(w, "no jobs")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "UUID\tSTATE\tTASKNAME\tITEM\tARCH\tCRASH\tAGE")
	for _, j := range jobs {
		crash := "-"
		if j.Crash != nil {
			c := statemachine.NormalizeCrash(j.Crash)
			crash = string(c.Notify) + "/" + string(c.Cause)
			if c.Fatal {
				crash += " fatal"
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", j.UUID, j.State, j.TaskName, j.Item, j.Arch, crash,
			formatAge(now.Sub(j.CreatedAt)))
	}
	tw.Flush()
}

// statsRow is one row of GET /api/v1/stats (storage.StatsRow on the wire).
type statsRow struct {
	Group     map[string]*string `json:"group"`
	Bucket    *time.Time         `json:"bucket"`
	Count     int64              `json:"count"`
	Share     float64            `json:"share"`
	QueueWait *durations         `json:"queue_wait"`
	RunTime   *durations         `json:"run_time"`
}

type durations struct {
	P50 float64 `json:"p50"`
	P90 float64 `json:"p90"`
	Max float64 `json:"max"`
}

// printStats prints a stats answer as a table: the group columns in groupBy's order, the bucket
// when there is one, the count, its share, and the queue wait and run time percentiles.
func printStats(w io.Writer, rows []statsRow, groupBy []string) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no jobs")
		return
	}
	var header []string
	for _, g := range groupBy {
		header = append(header, strings.ToUpper(g))
	}
	hasBucket := rows[0].Bucket != nil
	if hasBucket {
		header = append(header, "BUCKET")
	}
	header = append(header, "COUNT", "PERCENT", "WAIT P50", "WAIT P90", "RUN P50", "RUN P90", "RUN MAX")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		var cells []string
		for _, g := range groupBy {
			v := r.Group[g]
			if v == nil {
				cells = append(cells, "-")
			} else {
				cells = append(cells, *v)
			}
		}
		if hasBucket {
			cells = append(cells, r.Bucket.UTC().Format(time.RFC3339))
		}
		cells = append(cells, strconv.FormatInt(r.Count, 10), strconv.FormatFloat(r.Share*100, 'f', 1, 64)+"%")
		cells = append(cells, seconds(r.QueueWait, func(d durations) float64 { return d.P50 }),
			seconds(r.QueueWait, func(d durations) float64 { return d.P90 }),
			seconds(r.RunTime, func(d durations) float64 { return d.P50 }),
			seconds(r.RunTime, func(d durations) float64 { return d.P90 }),
			seconds(r.RunTime, func(d durations) float64 { return d.Max }))
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// seconds formats one of a group's durations, rounded to the second, or "-" without any.
func seconds(d *durations, pick func(durations) float64) string {
	if d == nil {
		return "-"
	}
	return (time.Duration(pick(*d) * float64(time.Second))).Round(time.Second).String()
}

// formatKeyVals prints key-values the way the command line takes them: key=value, a key
// repeated for each of its values, keys sorted.
func formatKeyVals(kv statemachine.KeyVals) string {
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		for _, v := range kv[k] {
			parts = append(parts, k+"="+quoteIfNeeded(v))
		}
	}
	return strings.Join(parts, " ")
}

// formatPairs prints the non-empty ones of name, value, name, value… as name=value.
func formatPairs(pairs ...string) string {
	var parts []string
	for i := 0; i+1 < len(pairs); i += 2 {
		if pairs[i+1] != "" {
			parts = append(parts, pairs[i]+"="+quoteIfNeeded(pairs[i+1]))
		}
	}
	return strings.Join(parts, " ")
}

func quoteIfNeeded(s string) string {
	if s == "" || strings.IndexFunc(s, func(r rune) bool {
		return unicode.IsSpace(r) || r == '"' || r == '\'' || r == '\\' || !unicode.IsPrint(r)
	}) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}

// formatAge prints a duration in its largest whole unit: 45s, 12m, 5h, 3d.
func formatAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	default:
		return fmt.Sprintf("%dd", int(d.Hours()/24))
	}
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-1]) + "…"
}
