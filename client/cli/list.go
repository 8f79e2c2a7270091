package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/statemachine"
)

// execdb jobs and execdb stats: thin clients of GET /api/v1/jobs and GET /api/v1/stats. Filters
// are passed to the server as they are; the server validates them.

const filterHelp = `
Filters are KEY=VALUE, as arguments or with --filter, and become query parameters: state,
taskname, item, item_type, arch, notify, cause, fatal, since and until (RFC 3339 or relative
like 30d, 12h), kv.<key> (crash keyvals), data.<key> (trigger data). A comma means OR
(state=RUNNING,SCHEDULED); <name>:like=VALUE takes * wildcards (item:like=python-*).`

// Jobs is `execdb jobs`: a search, printed as a table.
func Jobs(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb jobs", "[KEY=VALUE]... [--limit N] [--after CURSOR] [flags]", `
Searches jobs, newest first, and prints them as a table (UUID, state, task, item, arch, crash
notify/cause, age), or the API's JSON with --json. When there are more results than one page,
the command prints on stderr the command that gets the next one (with --after, and since and
until made absolute, so that every page covers the same window).
`+filterHelp+`

    execdb jobs state=CRASHED cause=minion since=7d --limit 20`)
	var filters multiFlag
	var limit, after string
	c.multiVar(&filters, "filter", "a `KEY=VALUE` filter; repeat it for more")
	c.stringVar(&limit, "limit", "at most `N` jobs a page (1–1000, default 20)")
	c.stringVar(&after, "after", "continue after this `CURSOR`, as the previous page's continuation says")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	q, err := filterQuery(append(pos, filters...))
	if err != nil {
		return c.usageError("%v", err)
	}
	if limit != "" {
		q.Set("limit", limit)
	}
	if after != "" {
		q.Set("after", after)
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.Get(ctx, "/jobs", q)
	if err != nil {
		return c.fail(err)
	}
	if c.co.json {
		c.printRaw(resp.Body)
		return command.ExitOK
	}
	var page struct {
		Data []statemachine.Job `json:"data"`
		Next *string            `json:"next"`
	}
	if err := json.Unmarshal(resp.Body, &page); err != nil {
		return c.fail(fmt.Errorf("decode search results: %w", err))
	}
	printJobList(e.Stdout, page.Data, time.Now())
	if page.Next != nil && *page.Next != "" {
		if u, err := url.Parse(*page.Next); err == nil {
			fmt.Fprintf(e.Stderr, "%s: more: %s\n", c.name, continuation("execdb jobs", u.Query(), "after", "limit"))
		}
	}
	return command.ExitOK
}

// Stats is `execdb stats` and `execdb stats retries`.
func Stats(ctx context.Context, args []string, e command.Env) int {
	if len(args) > 0 && args[0] == "retries" {
		return cmdStatsRetries(ctx, args[1:], e)
	}
	c := newInvocation(e, "execdb stats", "[KEY=VALUE]... [--group-by FIELD]... [--bucket hour|day|week] [flags]", `
Counts jobs, grouped and bucketed, and prints one row per group: the group's values, the count
and its share of all the matching jobs; or the API's JSON with --json.
`+filterHelp+`

How often did minion creation fail last month, by reason?

    execdb stats state=CRASHED cause=minion kv.step=MINION_CREATION since=30d --group-by kv.reason

'execdb stats retries' says how the successors of rescheduled crashes fared (see its --help).`)
	var filters, groupBy multiFlag
	var bucket string
	c.multiVar(&filters, "filter", "a `KEY=VALUE` filter; repeat it for more")
	c.multiVar(&groupBy, "group-by", "group by this `FIELD`: any filter field, kv.<key> or data.<key>; repeat it or use commas for several")
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
	resp, err := cl.Get(ctx, "/stats", q)
	if err != nil {
		return c.fail(err)
	}
	if c.co.json {
		c.printRaw(resp.Body)
		return command.ExitOK
	}
	var stats struct {
		Data []statsRow `json:"data"`
	}
	if err := json.Unmarshal(resp.Body, &stats); err != nil {
		return c.fail(fmt.Errorf("decode stats: %w", err))
	}
	printStats(e.Stdout, stats.Data, groups)
	return command.ExitOK
}

// splitGroups is the --group-by fields, repeated or comma-separated.
func splitGroups(groupBy []string) []string {
	var groups []string
	for _, g := range groupBy {
		for _, f := range strings.Split(g, ",") {
			if f = strings.TrimSpace(f); f != "" {
				groups = append(groups, f)
			}
		}
	}
	return groups
}

// filterQuery turns KEY=VALUE filters into query parameters.
func filterQuery(filters []string) (url.Values, error) {
	q := url.Values{}
	for _, f := range filters {
		k, v, ok := strings.Cut(f, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("filter %q is not KEY=VALUE", f)
		}
		q.Add(k, v)
	}
	return q, nil
}
