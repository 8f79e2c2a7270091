package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
)

// The operators' client commands: execdb rejected [replay], execdb prune, execdb stats retries,
// over the HTTP API (CONTRACT sections 6 and 7).

func rejectedSubcommands() []command.Command {
	return []command.Command{
		{Name: "replay", Summary: "apply a rejected message again, once its cause is fixed", Run: cmdRejectedReplay},
	}
}

// Rejected is `execdb rejected` (the rejected bus messages) and `execdb rejected replay ID`.
func Rejected(ctx context.Context, args []string, e command.Env) int {
	if len(args) > 0 && args[0] == "replay" {
		return command.Dispatch(ctx, "execdb rejected", "subcommand", rejectedSubcommands(), func(io.Writer) {}, args, e)
	}
	c := newInvocation(e, "execdb rejected", "[KEY=VALUE]... [--limit N] [--before ID] [flags]\n       execdb rejected replay ID [flags]", `
Lists the bus messages ExecDB rejected, newest first, with the reason, the field at fault, the
job the message names and what was wrong; or the API's JSON with --json. Filters are
KEY=VALUE: reason (undecodable, schema, unknown_topic, topic_mismatch, unknown_job, conflict,
unprocessable), transport (amqp, fedmsg), message_id, job (a uuid). When there are more, the
command says on stderr how to get the next page.

    execdb rejected reason=schema transport=amqp
    execdb rejected job=0193a5c3-7c1e-7abc-8def-0123456789ab

'execdb rejected replay ID' applies a rejected message again once its cause is fixed (see its
--help).`)
	var limit, before string
	c.stringVar(&limit, "limit", "at most `N` messages (1–500, default 50)")
	c.stringVar(&before, "before", "only messages older than the one with this `ID`, to continue a listing")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	q, err := filterQuery(pos)
	if err != nil {
		return c.usageError("%v", err)
	}
	if limit != "" {
		q.Set("limit", limit)
	}
	if before != "" {
		q.Set("before", before)
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.Get(ctx, "/rejected", q)
	if err != nil {
		return c.fail(err)
	}
	if c.co.json {
		c.printRaw(resp.Body)
		return command.ExitOK
	}
	var page struct {
		Data []storage.RejectedMessage `json:"data"`
		Next *string                   `json:"next"`
	}
	if err := json.Unmarshal(resp.Body, &page); err != nil {
		return c.fail(fmt.Errorf("decode rejected messages: %w", err))
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREJECTED\tTRANSPORT\tREASON\tFIELD\tJOB\tMESSAGE ID\tDETAIL")
	for _, m := range page.Data {
		job := "-"
		if m.JobUUID != nil {
			job = m.JobUUID.String()
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.ID, formatTime(m.RejectedAt), m.Transport, m.Reason,
			dash(m.Field), job, cut(m.MessageID, 40), cut(m.Detail, 80))
	}
	tw.Flush()
	if page.Next != nil {
		if u, err := url.Parse(*page.Next); err == nil {
			fmt.Fprintf(e.Stderr, "%s: more: %s\n", c.name, continuation("execdb rejected", u.Query(), "before", "limit"))
		}
	}
	return command.ExitOK
}

func cmdRejectedReplay(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb rejected replay", "ID [flags]", `
Applies a rejected bus message again, as if it had just arrived on its transport, once the cause
of its rejection is fixed: a start or end that waited in vain for its job (unknown_job) after
the job was created, a message a fixed ExecDB now reads. It needs a token with the admin scope.
It prints what applying it did (applied, duplicate, late, parked, or rejected again and why) and
the job; the job's history records it under the message id replay:<ID>, and replaying the same
message twice changes nothing the second time. A message that still cannot be read is refused
(exit status 1) and nothing is stored.

    execdb rejected replay 17`)
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) != 1 {
		return c.usageError("want the ID of one rejected message (execdb rejected lists them)")
	}
	id, err := strconv.ParseInt(pos[0], 10, 64)
	if err != nil || id < 1 {
		return c.usageError("%q is not the id of a rejected message", pos[0])
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.Post(ctx, "/rejected/"+strconv.FormatInt(id, 10)+"/replay", nil)
	if err != nil {
		return c.fail(err)
	}
	if c.co.json {
		c.printRaw(resp.Body)
		return command.ExitOK
	}
	var out struct {
		Outcome   string            `json:"outcome"`
		Reason    string            `json:"reason"`
		Detail    string            `json:"detail"`
		MessageID string            `json:"message_id"`
		Job       *statemachine.Job `json:"job"`
	}
	if err := json.Unmarshal(resp.Body, &out); err != nil {
		return c.fail(fmt.Errorf("decode the answer: %w", err))
	}
	fmt.Fprintf(e.Stdout, "replayed as %s: %s", out.MessageID, out.Outcome)
	if out.Reason != "" {
		fmt.Fprintf(e.Stdout, " (%s: %s)", out.Reason, out.Detail)
	}
	fmt.Fprintln(e.Stdout)
	if out.Job != nil {
		printJob(e.Stdout, *out.Job)
	}
	return command.ExitOK
}

// Prune is `execdb prune`: the retention applied now, by the server.
func Prune(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb prune", "[--dry-run] [--retention SPEC] [flags]", `
Applies the retention now, on the server: removes the FINISHED and CRASHED jobs (with their
history, data and key-values) and the rejected messages older than it says, and prints what it
removed, and what it kept and why: a job whose successor is still pending (or whose automatic
reschedule is), or one the outbox still has to announce, stays. With --dry-run it removes
nothing and prints what it would. The retention is the server's (EXECDB_RETENTION) unless
--retention names one. It needs a token with the admin scope.

    execdb prune --dry-run
    execdb prune --retention FINISHED=90d,CRASHED=365d,rejected=30d`)
	var dryRun bool
	var retention string
	c.boolVar(&dryRun, "dry-run", "remove nothing; print what would be removed")
	c.stringVar(&retention, "retention", "what to remove after how long, e.g. `FINISHED=90d,CRASHED=365d,rejected=30d` (default: the server's EXECDB_RETENTION)")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
	}
	if retention != "" {
		if _, err := jobs.ParseRetention(retention); err != nil {
			return c.usageError("--retention: %v", err)
		}
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	body := map[string]any{"dry_run": dryRun}
	if retention != "" {
		body["retention"] = retention
	}
	resp, err := cl.Post(ctx, "/prune", body)
	if err != nil {
		return c.fail(err)
	}
	if c.co.json {
		c.printRaw(resp.Body)
		return command.ExitOK
	}
	var res jobs.PruneResult
	if err := json.Unmarshal(resp.Body, &res); err != nil {
		return c.fail(fmt.Errorf("decode the answer: %w", err))
	}
	verb := "removed"
	if res.DryRun {
		verb = "would remove"
	}
	fmt.Fprintf(e.Stdout, "retention %s, at %s:\n", res.Retention, formatTime(res.At))
	for _, state := range []statemachine.State{statemachine.Finished, statemachine.Crashed} {
		pc, ok := res.Jobs[state]
		if !ok {
			continue
		}
		fmt.Fprintf(e.Stdout, "  %s jobs: %s %d", state, verb, pc.Prunable)
		var kept []string
		for _, k := range []struct {
			n    int64
			what string
		}{{pc.SuccessorPending, "successor pending"}, {pc.ReschedulePending, "automatic reschedule pending"}, {pc.OutboxPending, "not yet announced"}} {
			if k.n > 0 {
				kept = append(kept, fmt.Sprintf("%d %s", k.n, k.what))
			}
		}
		if len(kept) > 0 {
			fmt.Fprintf(e.Stdout, "; kept %s", strings.Join(kept, ", "))
		}
		fmt.Fprintln(e.Stdout)
	}
	if strings.Contains(res.Retention, "rejected=") {
		fmt.Fprintf(e.Stdout, "  rejected messages: %s %d\n", verb, res.Rejected)
	}
	return command.ExitOK
}

// cmdStatsRetries is `execdb stats retries`.
func cmdStatsRetries(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb stats retries", "[KEY=VALUE]... [--group-by FIELD]... [--bucket hour|day|week] [flags]", `
For the crashed jobs matching the filters that were rescheduled, how their successors fared:
how many finished, crashed again or are still pending, and the success rate, grouped and
bucketed like execdb stats; or the API's JSON with --json. Which causes do retries cure?
`+filterHelp+`

    execdb stats retries state=CRASHED since=30d --group-by cause,kv.reason`)
	var filters, groupBy multiFlag
	var bucket string
	c.multiVar(&filters, "filter", "a `KEY=VALUE` filter; repeat it for more")
	c.multiVar(&groupBy, "group-by", "group by this `FIELD` of the crashed jobs; repeat it or use commas for several")
	c.stringVar(&bucket, "bucket", "also group by time, in `BUCKET`s of an hour, day or week")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	q, err := filterQuery(append(pos, filters...))
	if err != nil {
		return c.usageError("%v", err)
	}
	groups := splitGroups(groupBy)
	if len(groups) > 0 {
		q.Set("group_by", strings.Join(groups, ","))
	}
	if bucket != "" {
		q.Set("bucket", bucket)
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.Get(ctx, "/stats/retries", q)
	if err != nil {
		return c.fail(err)
	}
	if c.co.json {
		c.printRaw(resp.Body)
		return command.ExitOK
	}
	var stats struct {
		Data []storage.RetryStatsRow `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &stats); err != nil {
		return c.fail(fmt.Errorf("decode retry stats: %w", err))
	}
	tw := tabwriter.NewWriter(e.Stdout, 0, 4, 2, ' ', 0)
	head := append(upper(groups), "RESCHEDULED", "FINISHED", "CRASHED", "PENDING", "SUCCESS")
	if bucket != "" {
		head = append(upper(groups), append([]string{"BUCKET"}, head[len(groups):]...)...)
	}
	fmt.Fprintln(tw, strings.Join(head, "\t"))
	for _, r := range stats.Data {
		var cells []string
		for _, g := range groups {
			cells = append(cells, valueOr(r.Group[storage.Field(g)]))
		}
		if bucket != "" {
			b := "-"
			if r.Bucket != nil {
				b = formatTime(*r.Bucket)
			}
			cells = append(cells, b)
		}
		rate := "-"
		if r.SuccessRate != nil {
			rate = fmt.Sprintf("%.1f%%", 100**r.SuccessRate)
		}
		cells = append(cells, strconv.FormatInt(r.Rescheduled, 10), strconv.FormatInt(r.Finished, 10),
			strconv.FormatInt(r.Crashed, 10), strconv.FormatInt(r.Pending, 10), rate)
		fmt.Fprintln(tw, strings.Join(cells, "\t"))
	}
	tw.Flush()
	return command.ExitOK
}

// continuation is the command line that gets the next page: cmd with every parameter of next
// (the page's link) as KEY=VALUE, those named in flags as --flag VALUE.
func continuation(cmd string, next url.Values, flags ...string) string {
	parts := []string{cmd}
	var keys []string
	for k := range next {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range next[k] {
			if slices.Contains(flags, k) {
				parts = append(parts, "--"+k, shellQuote(v))
			} else {
				parts = append(parts, shellQuote(k+"="+v))
			}
		}
	}
	return strings.Join(parts, " ")
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:,=/+@") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func upper(ss []string) []string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strings.ToUpper(s)
	}
	return out
}

func valueOr(s *string) string {
	if s == nil {
		return "-"
	}
	return *s
}
