package main

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
			line("duration", j.FinishedAt.Sub(*j.StartedAt).Round(time.Second).String())
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

// printStats prints the rows of a stats answer, {"data": [{"group": {…}, "count": n,
// "share": 0.x, …}]}, as a table: the group columns (in groupBy's order first), a bucket column
// when rows have one, COUNT, PERCENT and the rows' other fields, flattened.
func printStats(w io.Writer, rows []map[string]any, groupBy []string) {
	if len(rows) == 0 {
		fmt.Fprintln(w, "no jobs")
		return
	}
	var groupCols []string
	seen := map[string]bool{}
	for _, g := range groupBy {
		if !seen[g] {
			seen[g] = true
			groupCols = append(groupCols, g)
		}
	}
	var more []string
	extra := map[string]bool{}
	for _, r := range rows {
		if g, ok := r["group"].(map[string]any); ok {
			var keys []string
			for k := range g {
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
			sort.Strings(keys)
			groupCols = append(groupCols, keys...)
		}
		for k := range flatten(r) {
			switch k {
			case "group", "count", "share", "bucket":
				continue
			}
			if !extra[k] {
				extra[k] = true
				more = append(more, k)
			}
		}
	}
	sort.Strings(more)
	hasBucket := false
	for _, r := range rows {
		if _, ok := r["bucket"]; ok {
			hasBucket = true
		}
	}
	var header []string
	for _, g := range groupCols {
		header = append(header, strings.ToUpper(g))
	}
	if hasBucket {
		header = append(header, "BUCKET")
	}
	header = append(header, "COUNT", "PERCENT")
	for _, k := range more {
		header = append(header, strings.ToUpper(k))
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, r := range rows {
		var cells []string
		g, _ := r["group"].(map[string]any)
		for _, col := range groupCols {
			cells = append(cells, formatCell(g[col]))
		}
		if hasBucket {
			cells = append(cells, formatCell(r["bucket"]))
		}
		cells = append(cells, formatCell(r["count"]))
		if share, ok := r["share"].(float64); ok {
			cells = append(cells, strconv.FormatFloat(share*100, 'f', 1, 64)+"%")
		} else {
			cells = append(cells, "-")
		}
		flat := flatten(r)
		for _, k := range more {
			cells = append(cells, formatCell(flat[k]))
		}
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
}

// flatten lists a stats row's scalar fields, and those of its objects (but group) one level down
// as "object.field": {"run_time": {"p50": 3}} gives "run_time.p50". Lists are left out.
func flatten(row map[string]any) map[string]any {
	out := map[string]any{}
	for k, v := range row {
		switch v := v.(type) {
		case []any:
		case map[string]any:
			if k == "group" {
				out[k] = v
				continue
			}
			for sub, sv := range v {
				switch sv.(type) {
				case []any, map[string]any:
				default:
					out[k+"."+sub] = sv
				}
			}
		default:
			out[k] = v
		}
	}
	return out
}

func formatCell(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case string:
		if v == "" {
			return `""`
		}
		return v
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	default:
		b, _ := json.Marshal(v)
		return string(b)
	}
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
