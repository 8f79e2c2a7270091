package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/fedora-qa/execdb/api"
	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/internal/testenv"
	"github.com/fedora-qa/execdb/jobs"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// rescheduleServer is a real API on SQLite for the command's tests.
func rescheduleServer(t *testing.T, names map[string]string) (*jobs.Service, map[string]string) {
	t.Helper()
	store := jobs.New(testenv.SQLite(t, ""), jobs.Config{})
	tokens := map[string]api.Token{}
	for token, name := range names {
		tokens[token] = api.Token{Name: name}
	}
	srv := httptest.NewServer(api.New(store, api.Config{Tokens: tokens}).Handler())
	t.Cleanup(srv.Close)
	vars := map[string]string{"EXECDB_SERVER": srv.URL, "EXECDB_TIMEOUT": "10s"}
	for token := range tokens {
		vars["EXECDB_TOKEN"] = token
	}
	return store, vars
}

type execdbRun struct {
	code           int
	stdout, stderr string
}

func runExecdb(vars map[string]string, args ...string) execdbRun {
	var stdout, stderr bytes.Buffer
	e := command.Env{Stdout: &stdout, Stderr: &stderr, Getenv: func(k string) string { return vars[k] }}
	code := run(context.Background(), args, e)
	return execdbRun{code, stdout.String(), stderr.String()}
}

func (r execdbRun) want(t *testing.T, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit status %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.stdout, r.stderr)
	}
}

func crashedVia(t *testing.T, s *jobs.Service, item string, cause statemachine.Cause, fatal bool) statemachine.Job {
	t.Helper()
	ctx := context.Background()
	res, err := s.Create(ctx, statemachine.NewJob{TaskName: "rpmlint", Item: item, ItemType: "koji_build"}, statemachine.Meta{Origin: statemachine.OriginHTTP})
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.Apply(ctx, res.Job.UUID, statemachine.Event{Meta: statemachine.Meta{Origin: statemachine.OriginHTTP},
		End: &statemachine.End{State: statemachine.Crashed, Crash: &statemachine.Crash{Cause: cause, Fatal: fatal,
			KeyVals: statemachine.KeyVals{"reason": {"TIMED_OUT"}}}}})
	if err != nil {
		t.Fatal(err)
	}
	return r.Job
}

func TestRescheduleCommand(t *testing.T) {
	t.Parallel()
	store, vars := rescheduleServer(t, map[string]string{"s3cret": "ops"})
	plain := crashedVia(t, store, "foo-1.0-1.fc45", statemachine.CauseMinion, false)
	fatal := crashedVia(t, store, "bar-2.0-1.fc45", statemachine.CauseMinion, true)
	crashedVia(t, store, "baz-3.0-1.fc45", statemachine.CauseNetwork, false)

	r := runExecdb(vars, "reschedule", "state=CRASHED", "--filter", "cause=minion", "kv.reason=TIMED_OUT", "--dry-run")
	r.want(t, command.ExitOK)
	for _, want := range []string{"Dry run: nothing was changed.", "would reschedule", plain.UUID.String(), fatal.UUID.String(),
		"fatal crash (use --force)", "2 matched: 1 would be rescheduled, 1 skipped (1 fatal)."} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("dry run output lacks %q:\n%s", want, r.stdout)
		}
	}
	if j, _ := store.Job(context.Background(), plain.UUID); j.RescheduledTo != nil {
		t.Fatal("--dry-run rescheduled")
	}

	r = runExecdb(vars, "reschedule", "state=CRASHED", "cause=minion", "--reason", "minion outage")
	r.want(t, command.ExitOK)
	j, _ := store.Job(context.Background(), plain.UUID)
	if j.RescheduledTo == nil || !strings.Contains(r.stdout, j.RescheduledTo.String()) || !strings.Contains(r.stdout, "1 rescheduled, 1 skipped (1 fatal)") {
		t.Errorf("reschedule output:\n%s", r.stdout)
	}
	hist, _ := store.History(context.Background(), plain.UUID)
	last := hist[len(hist)-1]
	if last.Kind != statemachine.EventReschedule || last.Actor != "ops" || !strings.Contains(string(last.Detail), `"reason":"minion outage"`) {
		t.Errorf("history: got %+v", last)
	}

	r = runExecdb(vars, "reschedule", "state=CRASHED", "cause=minion", "--force", "--json")
	r.want(t, command.ExitOK)
	var answer bulkAnswer
	if err := json.Unmarshal([]byte(r.stdout), &answer); err != nil {
		t.Fatalf("--json: %v\n%s", err, r.stdout)
	}
	outcomes := map[uuid.UUID]string{}
	for _, it := range answer.Data {
		outcomes[it.UUID] = it.Outcome + "/" + it.Reason
	}
	if outcomes[plain.UUID] != "skipped/already_rescheduled" || outcomes[fatal.UUID] != "rescheduled/" || !answer.Force {
		t.Errorf("--force --json: got %s", r.stdout)
	}

	r = runExecdb(vars, "reschedule", "taskname=nothing")
	r.want(t, command.ExitOK)
	if !strings.Contains(r.stdout, "0 matched: 0 rescheduled, 0 skipped.") {
		t.Errorf("nothing matched: got %q", r.stdout)
	}
}

func TestRescheduleCommandErrors(t *testing.T) {
	t.Parallel()
	_, vars := rescheduleServer(t, map[string]string{"s3cret": "ops"})
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"reschedule"}, command.ExitUsage, "give at least one filter"},
		{[]string{"reschedule", "CRASHED"}, command.ExitUsage, `"CRASHED" is not KEY=VALUE`},
		{[]string{"reschedule", "state=CRASHED", "--bogus"}, command.ExitUsage, "bogus"},
		{[]string{"reschedule", "colour=red"}, command.ExitRefused, "filter.colour"},
		{[]string{"reschedule", "state=DONE"}, command.ExitRefused, "filter.state"},
		{[]string{"reschedule", "state=CRASHED", "--token", "wrong"}, command.ExitRefused, "403"},
		{[]string{"reschedule", "state=CRASHED", "--server", "http://127.0.0.1:1"}, command.ExitRefused, "execdb reschedule:"},
	} {
		r := runExecdb(vars, tc.args...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.stderr) {
			t.Errorf("%v: got %d %q, want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.stderr)
		}
	}
	r := runExecdb(vars, "reschedule", "colour=red", "--json")
	r.want(t, command.ExitRefused)
	if !strings.Contains(r.stdout, `"field":"filter.colour"`) {
		t.Errorf("--json refusal: stdout %q, want the error body", r.stdout)
	}
	r = runExecdb(vars, "reschedule", "--help")
	r.want(t, command.ExitOK)
	for _, want := range []string{"Usage: execdb reschedule", "--dry-run", "--force", "--reason", "kv.<key>", "EXECDB_SERVER", "Exit status",
		"retries", "already rescheduled"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("--help lacks %q:\n%s", want, r.stdout)
		}
	}
}

func TestPrintBulkReasons(t *testing.T) {
	blocked, done, succ := uuid.New(), uuid.New(), uuid.New()
	var out bytes.Buffer
	printBulk(&out, bulkAnswer{Matched: 2, Skipped: 2, Data: []bulkItem{
		{UUID: blocked, TaskName: "rpmlint", State: "CRASHED", Attempt: 1, Outcome: "skipped", Reason: "successor_request_id_taken"},
		{UUID: done, TaskName: "rpmlint", State: "CRASHED", Attempt: 1, Outcome: "skipped", Reason: "already_rescheduled", Successor: &succ},
	}})
	for _, want := range []string{
		"request id reschedule:" + blocked.String() + " is taken by another job",
		"already rescheduled as " + succ.String(),
		"2 matched: 0 rescheduled, 2 skipped (1 already rescheduled, 1 successor request id taken).",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
