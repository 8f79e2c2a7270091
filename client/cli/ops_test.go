package cli

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/fedora-qa/execdb/storage"
	"github.com/google/uuid"
)

// TestClientJobsPages walks a search page by page with the continuation each page prints.
func TestClientJobsPages(t *testing.T) {
	t.Parallel()
	_, vars := cliServer(t)
	want := map[string]bool{}
	for range 5 {
		want[createJob(t, vars).String()] = true
	}
	args := []string{"jobs", "taskname=rpmlint", "--limit", "2"}
	got := map[string]bool{}
	more := regexp.MustCompile(`more: execdb jobs (.*)`)
	for pages := 1; ; pages++ {
		r := runCLI(t, vars, args...)
		wantCode(t, r, command.ExitOK)
		for _, id := range regexp.MustCompile(`[0-9a-f]{8}-[0-9a-f-]{27}`).FindAllString(r.stdout, -1) {
			got[id] = true
		}
		m := more.FindStringSubmatch(r.stderr)
		if m == nil {
			if pages != 3 {
				t.Errorf("got %d pages, want 3", pages)
			}
			break
		}
		args = append([]string{"jobs"}, unquote(strings.Fields(m[1]))...)
		if !strings.Contains(m[1], "--after") || !strings.Contains(m[1], "--limit 2") {
			t.Errorf("continuation %q lacks --after or --limit", m[1])
		}
	}
	if len(got) != 5 {
		t.Errorf("walked %d jobs, want the 5 created", len(got))
	}
}

func unquote(fields []string) []string {
	for i, f := range fields {
		fields[i] = strings.Trim(f, "'")
	}
	return fields
}

// TestClientRejectedAndReplay lists rejected messages by filter and replays one whose job now
// exists.
func TestClientRejectedAndReplay(t *testing.T) {
	t.Parallel()
	srv, vars := cliServer(t)
	ctx := context.Background()
	id := uuid.New()
	prefix := srv.Store.TopicPrefix()
	if _, err := srv.Store.ApplyBus(ctx, []jobs.BusMessage{
		{Meta: statemachine.Meta{Origin: statemachine.OriginAMQP, MessageID: "orphan"}, Topic: prefix + ".taskotron.runtask.end",
			Body: []byte(fmt.Sprintf(`{"uuid":%q,"state":"FINISHED"}`, id)), JobUUID: id,
			Event: &statemachine.Event{End: &statemachine.End{State: statemachine.Finished}}},
		{Meta: statemachine.Meta{Origin: statemachine.OriginFedmsg, MessageID: "garbage"}, Topic: prefix + ".taskotron.runtask.end",
			Body: []byte(`nope`), Reject: &jobs.Rejection{Reason: storage.RejectUndecodable, Detail: "body is not JSON"}},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Store.ExpireParked(ctx, -time.Second, 10); err != nil {
		t.Fatal(err)
	}
	r := runCLI(t, vars, "rejected", "reason=unknown_job")
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stdout, "unknown_job") || !strings.Contains(r.stdout, id.String()) || strings.Contains(r.stdout, "garbage") {
		t.Errorf("rejected reason=unknown_job:\n%s", r.stdout)
	}
	rid := regexp.MustCompile(`(?m)^(\d+) `).FindStringSubmatch(r.stdout)
	if rid == nil {
		t.Fatalf("no id in\n%s", r.stdout)
	}
	r = runCLI(t, vars, "rejected", "transport=fedmsg", "--json")
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stdout, `"message_id":"garbage"`) {
		t.Errorf("rejected transport=fedmsg --json: %s", r.stdout)
	}
	createJob(t, vars, "--uuid", id.String())
	r = runCLI(t, vars, "rejected", "replay", rid[1])
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stdout, "replayed as replay:"+rid[1]+": applied") || !strings.Contains(r.stdout, "FINISHED") {
		t.Errorf("replay:\n%s", r.stdout)
	}
	r = runCLI(t, vars, "rejected", "replay", rid[1])
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stdout, ": duplicate") {
		t.Errorf("second replay:\n%s", r.stdout)
	}
	wantCode(t, runCLI(t, vars, "rejected", "replay", "x"), command.ExitUsage)
}

// TestClientPruneAndRetryStats: execdb prune says what it would remove; execdb stats retries
// counts the successors of rescheduled crashes.
func TestClientPruneAndRetryStats(t *testing.T) {
	t.Parallel()
	_, vars := cliServer(t)
	id := createJob(t, vars)
	wantCode(t, runCLI(t, vars, "job", "finish", id.String(), "--crashed", "--cause", "minion"), command.ExitOK)
	wantCode(t, runCLI(t, vars, "job", "reschedule", id.String()), command.ExitOK)
	r := runCLI(t, vars, "stats", "retries", "--group-by", "cause")
	wantCode(t, r, command.ExitOK)
	if !regexp.MustCompile(`minion\s+1\s+0\s+0\s+1\s+-`).MatchString(r.stdout) {
		t.Errorf("stats retries:\n%s", r.stdout)
	}
	r = runCLI(t, vars, "prune", "--dry-run", "--retention", "FINISHED=1d,CRASHED=1d,rejected=7d")
	wantCode(t, r, command.ExitOK)
	if !strings.Contains(r.stdout, "CRASHED jobs: would remove 0") || !strings.Contains(r.stdout, "rejected messages: would remove 0") {
		t.Errorf("prune --dry-run:\n%s", r.stdout)
	}
	wantCode(t, runCLI(t, vars, "prune"), command.ExitRefused) // the server has no retention
	wantCode(t, runCLI(t, vars, "prune", "--retention", "SOON=1d"), command.ExitUsage)
}
