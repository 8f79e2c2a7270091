package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fedora-qa/execdb/client"
	"github.com/google/uuid"
)

// execdb reschedule: a thin client of POST /api/v1/reschedule.

const rescheduleAbout = `
Reschedules the crashed jobs that match the filters: each gets a successor made from its stored
trigger data, as 'execdb job reschedule' makes one. Jobs that are not crashed, were rescheduled
already, or crashed fatally (without --force) are skipped, and the command says why. With
--dry-run nothing changes and the command says what it would do. At least one filter is
required; the server refuses filters matching more than 10000 jobs.

The command prints one line per matched job and a summary, or the API's JSON with --json. It
makes a single attempt (repeating it is safe: what was rescheduled is skipped the second time).
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

func cmdReschedule(ctx context.Context, args []string, e env) int {
	c := newCLI(e, "execdb reschedule", "KEY=VALUE... [--dry-run] [--force] [--reason TEXT] [flags]", rescheduleAbout)
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
	resp, err := c.post(ctx, cl, "/api/v1/reschedule", body)
	if err != nil {
		return c.fail(err)
	}
	if c.co.json {
		c.printRaw(resp.Body)
		return exitOK
	}
	var a bulkAnswer
	if err := json.Unmarshal(resp.Body, &a); err != nil {
		return c.fail(fmt.Errorf("decode answer: %w", err))
	}
	printBulk(e.stdout, a)
	return exitOK
}

// post sends body to path on the server once, with the token, and returns a 2xx answer; any
// other answer is a *client.APIError. The client package has no generic write yet.
func (c *cli) post(ctx context.Context, cl *client.Client, path string, body []byte) (*client.Response, error) {
	token := c.co.token
	if token == "" {
		token = c.e.getenv("EXECDB_TOKEN")
	}
	timeout := client.DefaultBudget
	if c.co.timeout.set {
		timeout = c.co.timeout.d
	} else if s := c.e.getenv("EXECDB_TIMEOUT"); s != "" {
		if d, err := time.ParseDuration(s); err == nil && d >= 0 {
			timeout = d
		}
	}
	if timeout <= 0 {
		timeout = client.DefaultAttemptTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := cl.BaseURL() + path
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "execdb-cli/1")
	req.Header.Set("X-Request-ID", uuid.NewString())
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("POST %s: %w", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("POST %s: read answer: %w", path, err)
	}
	out := &client.Response{Status: resp.StatusCode, Header: resp.Header, Body: b}
	if resp.StatusCode >= 300 {
		return nil, fmt.Errorf("POST %s: %w", path, apiError(out))
	}
	return out, nil
}

// apiError reads an error answer of the API.
func apiError(resp *client.Response) *client.APIError {
	e := &client.APIError{Status: resp.Status, Body: resp.Body}
	var eb struct {
		Error *struct {
			Message string `json:"message"`
			Field   string `json:"field"`
		} `json:"error"`
	}
	if json.Unmarshal(resp.Body, &eb) == nil && eb.Error != nil {
		e.Message, e.Field = eb.Error.Message, eb.Error.Field
	}
	if e.Message == "" {
		e.Message = strings.TrimSpace(string(resp.Body))
		if len(e.Message) > 200 {
			e.Message = e.Message[:200]
		}
	}
	if e.Message == "" {
		e.Message = http.StatusText(resp.Status)
	}
	return e
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
