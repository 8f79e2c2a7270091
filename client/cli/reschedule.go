package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/fedora-qa/execdb/internal/command"
	"github.com/google/uuid"
)

// execdb reschedule: a thin client of POST /api/v1/reschedule.

const rescheduleAbout = `
Reschedules the crashed jobs that match the filters: each gets a successor made from its stored
trigger data, as 'execdb job reschedule' makes one. Jobs that are not crashed, were rescheduled
already, crashed fatally (without --force), or whose successor's request id
(reschedule:<uuid>) a client took for a job of its own are skipped, and the command says why.
With --dry-run nothing changes and the command says what it would do. At least one filter is
required; the server refuses filters matching more than 10000 jobs.

The command prints one line per matched job and a summary, or the API's JSON with --json. Like
every write, it retries connection errors and 5xx answers until --timeout. Repeating the
request is safe, and a retried one says what it found: the jobs an earlier attempt rescheduled
(one whose answer was lost) are skipped as already rescheduled, with their successors.
` + filterHelp + `

Retry last night's minion timeouts, looking first:

    execdb reschedule state=CRASHED cause=minion kv.reason=TIMED_OUT since=12h --dry-run
    execdb reschedule state=CRASHED cause=minion kv.reason=TIMED_OUT since=12h`

// bulkAnswer is the body of a POST /api/v1/reschedule answer.
type bulkAnswer struct {
	DryRun      bool       `json:"dry_run"`
	Force       bool       `json:"force"`
	Matched     int        `json:"matched"`
	Rescheduled int        `json:"rescheduled"`
	Skipped     int        `json:"skipped"`
	Data        []bulkItem `json:"data"`
}

type bulkItem struct {
	UUID      uuid.UUID  `json:"uuid"`
	TaskName  string     `json:"taskname"`
	Item      string     `json:"item"`
	Arch      string     `json:"arch"`
	State     string     `json:"state"`
	Attempt   int        `json:"attempt"`
	Outcome   string     `json:"outcome"`
	Reason    string     `json:"reason"`
	Successor *uuid.UUID `json:"successor"`
}

// Reschedule is `execdb reschedule`: a bulk reschedule by filters.
func Reschedule(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb reschedule", "KEY=VALUE... [--dry-run] [--force] [--reason TEXT] [flags]", rescheduleAbout)
	var filters multiFlag
	var dryRun, force bool
	var reason string
	c.multiVar(&filters, "filter", "a `KEY=VALUE` filter; repeat it for more")
	c.boolVar(&dryRun, "dry-run", "change nothing; say what would be rescheduled and what skipped")
	c.boolVar(&force, "force", "reschedule fatal crashes too")
	c.stringVar(&reason, "reason", "a few words of `TEXT` saying why, kept in the history of the jobs")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	q, err := filterQuery(append(pos, filters...))
	if err != nil {
		return c.usageError("%v", err)
	}
	if len(q) == 0 {
		return c.usageError("give at least one filter, e.g. state=CRASHED since=1d")
	}
	filter := map[string][]string{}
	for k, vs := range q {
		filter[k] = vs
	}
	body, err := json.Marshal(struct {
		Filter map[string][]string `json:"filter"`
		DryRun bool                `json:"dry_run"`
		Force  bool                `json:"force"`
		Reason string              `json:"reason,omitempty"`
	}{filter, dryRun, force, reason})
	if err != nil {
		return c.fail(err)
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.Post(ctx, "/reschedule", json.RawMessage(body))
	if err != nil {
		return c.fail(err)
	}
	if c.co.json {
		c.printRaw(resp.Body)
		return command.ExitOK
	}
	var a bulkAnswer
	if err := json.Unmarshal(resp.Body, &a); err != nil {
		return c.fail(fmt.Errorf("decode answer: %w", err))
	}
	printBulk(e.Stdout, a)
	return command.ExitOK
}

// printBulk prints a bulk answer: a line per job, then a summary.
func printBulk(w io.Writer, a bulkAnswer) {
	if a.DryRun {
		fmt.Fprintln(w, "Dry run: nothing was changed.")
	}
	if len(a.Data) > 0 {
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "OUTCOME\tJOB\tTASK\tITEM\tARCH\tATTEMPT\tSUCCESSOR OR REASON")
		for _, it := range a.Data {
			detail := ""
			switch {
			case it.Outcome == "skipped" && it.Reason == "fatal":
				detail = "fatal crash (use --force)"
			case it.Outcome == "skipped" && it.Reason == "not_crashed":
				detail = "not crashed: " + it.State
			case it.Outcome == "skipped" && it.Reason == "already_rescheduled" && it.Successor != nil:
				detail = "already rescheduled as " + it.Successor.String()
			case it.Outcome == "skipped" && it.Reason == "successor_request_id_taken":
				detail = "request id reschedule:" + it.UUID.String() + " is taken by another job"
			case it.Outcome == "skipped":
				detail = strings.ReplaceAll(it.Reason, "_", " ")
			case it.Successor != nil:
				detail = it.Successor.String()
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", strings.ReplaceAll(it.Outcome, "_", " "),
				it.UUID, cut(it.TaskName, 24), cut(it.Item, 40), it.Arch, it.Attempt, detail)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
	verb := "rescheduled"
	if a.DryRun {
		verb = "would be rescheduled"
	}
	reasons := map[string]int{}
	for _, it := range a.Data {
		if it.Outcome == "skipped" {
			reasons[strings.ReplaceAll(it.Reason, "_", " ")]++
		}
	}
	var parts []string
	for r, n := range reasons {
		parts = append(parts, fmt.Sprintf("%d %s", n, r))
	}
	sort.Strings(parts)
	skipped := fmt.Sprintf("%d skipped", a.Skipped)
	if len(parts) > 0 {
		skipped += " (" + strings.Join(parts, ", ") + ")"
	}
	fmt.Fprintf(w, "%d matched: %d %s, %s.\n", a.Matched, a.Rescheduled, verb, skipped)
}
