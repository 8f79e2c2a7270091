package cli

import (
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fedora-qa/execdb/client"
	"github.com/fedora-qa/execdb/internal/command"
	"github.com/fedora-qa/execdb/schemas"
	"github.com/fedora-qa/execdb/statemachine"
	"github.com/google/uuid"
)

// execdb job create|start|finish|show|events|reschedule, over the HTTP API (CONTRACT sections 6
// and 7).

func jobSubcommands() []command.Command {
	return []command.Command{
		{Name: "create", Summary: "create a SCHEDULED job (what Trigger does)", Run: cmdJobCreate},
		{Name: "start", Summary: "report that a job began running", Run: cmdJobStart},
		{Name: "finish", Summary: "report how a job ended: from a status file, FINISHED or CRASHED", Run: cmdJobFinish},
		{Name: "show", Summary: "print a job", Run: cmdJobShow},
		{Name: "events", Summary: "print a job's history", Run: cmdJobEvents},
		{Name: "reschedule", Summary: "make a successor of a crashed job", Run: cmdJobReschedule},
	}
}

// Job is `execdb job <subcommand>`: create, start, finish, show, events, reschedule.
func Job(ctx context.Context, args []string, e command.Env) int {
	return command.Dispatch(ctx, "execdb job", "subcommand", jobSubcommands(), jobUsage, args, e)
}

func jobUsage(w io.Writer) {
	fmt.Fprintln(w, "Usage: execdb job <subcommand> [flags]")
	fmt.Fprintln(w, "\nCreate, start, finish, show, reschedule a job or list its events, over the")
	fmt.Fprintln(w, "HTTP API of the ExecDB server at $EXECDB_SERVER (--server).\n\nSubcommands:")
	command.PrintCommands(w, jobSubcommands())
	fmt.Fprintln(w, "\nRun 'execdb job <subcommand> --help' for its flags.")
}

func cmdJobCreate(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb job create", "--taskname T --item I --item-type K [flags]", `
Creates a SCHEDULED job, as Trigger does, and prints it; with --quiet prints its UUID alone, so
that a shell can capture it:

    uuid=$(execdb job create --quiet --taskname rpmlint --item foo-1.0-1.fc40 --item-type koji_build)

Repeating a create is safe: the request carries an idempotency key (--request-id, or a random
one kept across this command's retries), and the server answers a repeated key with the job the
first request made.`)
	var taskname, item, itemType, arch, id, requestID, srcMsgID, srcTopic string
	var data multiFlag
	var quiet bool
	c.stringVar(&taskname, "taskname", "the `TASK` to run, e.g. rpmlint (required)")
	c.stringVar(&item, "item", "the `ITEM` to run it on, e.g. foo-1.0-1.fc40 (required)")
	c.stringVar(&itemType, "item-type", "the `TYPE` of the item, e.g. koji_build (required)")
	c.stringVar(&arch, "arch", "the `ARCH` to run on, e.g. x86_64 (default noarch)")
	c.multiVar(&data, "data", "a `KEY=VALUE` of Trigger-parsed data kept for rescheduling; repeat it for more keys or values")
	c.stringVar(&id, "uuid", "the job's `UUID` (default: the server issues one)")
	c.stringVar(&requestID, "request-id", "the idempotency `KEY` of the request, e.g. the trigger message's id (default: a random UUID)")
	c.stringVar(&srcMsgID, "source-msg-id", "the `ID` of the message that made Trigger ask for the job, e.g. the Koji build message")
	c.stringVar(&srcTopic, "source-topic", "the `TOPIC` of that message")
	c.boolVar(&quiet, "quiet", "print the new job's UUID alone")
	pos, code, ok := c.parse(args)
	if !ok {
		return code
	}
	if len(pos) > 0 {
		return c.usageError("unexpected argument %q", pos[0])
	}
	for _, f := range []struct{ name, v string }{{"taskname", taskname}, {"item", item}, {"item-type", itemType}} {
		if f.v == "" {
			return c.usageError("--%s is required", f.name)
		}
	}
	if quiet && c.co.json {
		return c.usageError("--quiet and --json exclude each other")
	}
	req := client.CreateJobRequest{TaskName: taskname, Item: item, ItemType: itemType, Arch: arch, RequestID: requestID}
	if len(data) > 0 {
		kv, err := schemas.ParseKeyValArgs(data, "data")
		if err != nil {
			return c.usageError("--data: %v", err)
		}
		req.Data = kv
	}
	if id != "" {
		u, err := parseUUID(id)
		if err != nil {
			return c.usageError("--uuid: %v", err)
		}
		req.UUID = u
	}
	switch {
	case srcMsgID != "":
		req.Source = &statemachine.Source{MsgID: srcMsgID, Topic: srcTopic}
	case srcTopic != "":
		return c.usageError("--source-topic needs --source-msg-id")
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.CreateJob(ctx, req)
	if err != nil {
		return c.fail(err)
	}
	switch {
	case c.co.json:
		c.printRaw(resp.Body)
	case quiet:
		fmt.Fprintln(e.Stdout, resp.Job.UUID)
	default:
		if resp.Created() {
			fmt.Fprintf(e.Stdout, "Created job %s.\n\n", resp.Job.UUID)
		} else {
			fmt.Fprintf(e.Stdout, "Job %s already existed for this request (request_id %s).\n\n", resp.Job.UUID, resp.Job.RequestID)
		}
		printJob(e.Stdout, resp.Job)
	}
	return command.ExitOK
}

// runnerFlags are the --runner-* flags of start and finish.
type runnerFlags struct{ name, jobid, worker, url string }

func (r *runnerFlags) register(c *invocation) {
	c.stringVar(&r.name, "runner-name", "the `NAME` of who runs the job, e.g. buildbot")
	c.stringVar(&r.jobid, "runner-jobid", "the runner's `ID` of the run, e.g. all/4821 (builder/build number)")
	c.stringVar(&r.worker, "runner-worker", "the `WORKER` the job runs on, e.g. taskotron-client10-3")
	c.stringVar(&r.url, "runner-url", "the `URL` of the run, e.g. Buildbot's build page")
}

func (r *runnerFlags) runner() *statemachine.Runner {
	if *r == (runnerFlags{}) {
		return nil
	}
	return &statemachine.Runner{Name: r.name, JobID: r.jobid, Worker: r.worker, URL: r.url}
}

func cmdJobStart(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb job start", "UUID [flags]", `
Reports that the job began running: SCHEDULED becomes RUNNING. Starting a RUNNING job again
changes nothing. A start for a job that has already ended is late: the server records it and
refuses it (exit status 1).

In Buildbot, run it as the first step of the build (see docs/buildbot.md).`)
	var startedAt string
	var r runnerFlags
	c.stringVar(&startedAt, "started-at", "when the job started, an RFC 3339 `TIME` (default: when the server gets the report)")
	r.register(c)
	id, code, ok := c.parseUUIDArg(args)
	if !ok {
		return code
	}
	start := statemachine.Start{Runner: r.runner()}
	if startedAt != "" {
		t, err := parseTime(startedAt)
		if err != nil {
			return c.usageError("--started-at: %v", err)
		}
		start.StartedAt = &t
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.StartJob(ctx, id, start)
	if err != nil {
		return c.fail(err)
	}
	c.printJobResponse(resp)
	return command.ExitOK
}

func cmdJobFinish(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb job finish",
		"UUID (--status-file PATH | --finished | --crashed [--notify N] [--cause C] [--fatal] [--kv K=V]...) [flags]", `
Reports how the job ended, in one of three ways:

  --status-file PATH  what libtaskotron wrote in its status file (docs/statusfile.md). A
                      missing file is reported as CRASHED with notify=taskotron, cause=unknown
                      and keyvals reason=STATUS_FILE_MISSING; an empty or invalid one likewise
                      with reason=STATUS_FILE_INVALID and the parse error in keyvals error.
                      With --exit-code N (runtask's exit status), a missing file is reported
                      as FINISHED when N is 0, and as the STATUS_FILE_MISSING crash with
                      keyvals exit_code=N otherwise.
  --finished          FINISHED.
  --crashed           CRASHED, classified by --notify, --cause, --fatal and --kv.

Repeating the same report changes nothing. A report that disagrees with the outcome already
recorded is a conflict: the server keeps the first outcome and refuses (exit status 1), and the
command prints the job as it stands.

When the server has a crash that this command made up for a missing or invalid status file,
the command says why on stderr and exits 3 rather than 0, so that a Buildbot step can show it as
a warning (decodeRC={0: SUCCESS, 3: WARNINGS}).

In Buildbot, run it in a step with alwaysRun=True (see docs/buildbot.md and
deploy/buildbot/master.cfg).`)
	var statusFile, exitCodeArg, notify, cause, finishedAt, artifactsURL, logURL string
	var finished, crashed, fatal bool
	var kvs multiFlag
	var r runnerFlags
	c.stringVar(&statusFile, "status-file", "report what the status file at `PATH` says")
	c.stringVar(&exitCodeArg, "exit-code", "with --status-file: runtask's exit `STATUS`, used when the file is missing (0: FINISHED, else CRASHED with exit_code)")
	c.boolVar(&finished, "finished", "report FINISHED")
	c.boolVar(&crashed, "crashed", "report CRASHED")
	c.stringVar(&notify, "notify", "with --crashed: whose problem it is, `NOTIFY` = taskotron, task or unknown (default unknown)")
	c.stringVar(&cause, "cause", "with --crashed: what went wrong, `CAUSE` = minion, task, network, libtaskotron or unknown (default unknown)")
	c.boolVar(&fatal, "fatal", "with --crashed: rescheduling cannot help")
	c.multiVar(&kvs, "kv", "with --crashed: a `KEY=VALUE` of crash detail, e.g. reason=TIMED_OUT; repeat it for more")
	c.stringVar(&finishedAt, "finished-at", "when the job ended, an RFC 3339 `TIME` (default: when the server gets the report)")
	c.stringVar(&artifactsURL, "artifacts-url", "the `URL` of the job's artifacts")
	c.stringVar(&logURL, "log-url", "the `URL` of the job's log")
	r.register(c)
	id, code, ok := c.parseUUIDArg(args)
	if !ok {
		return code
	}
	modes := 0
	for _, set := range []bool{statusFile != "", finished, crashed} {
		if set {
			modes++
		}
	}
	if modes != 1 {
		return c.usageError("give exactly one of --status-file, --finished and --crashed")
	}
	if !crashed && (notify != "" || cause != "" || fatal || len(kvs) > 0) {
		return c.usageError("--notify, --cause, --fatal and --kv go with --crashed")
	}
	var exitCode *int
	if exitCodeArg != "" {
		if statusFile == "" {
			return c.usageError("--exit-code goes with --status-file")
		}
		n, err := strconv.Atoi(exitCodeArg)
		if err != nil {
			return c.usageError("--exit-code: %q is not an integer", exitCodeArg)
		}
		exitCode = &n
	}
	var end statemachine.End
	switch {
	case finished:
		end.State = statemachine.Finished
	case crashed:
		crash := &statemachine.Crash{Notify: statemachine.Notify(notify), Cause: statemachine.Cause(cause), Fatal: fatal}
		if notify != "" && !schemas.ValidNotify(crash.Notify) {
			return c.usageError("--notify: must be one of taskotron, task, unknown, got %q", notify)
		}
		if cause != "" && !schemas.ValidCause(crash.Cause) {
			return c.usageError("--cause: must be one of minion, task, network, libtaskotron, unknown, got %q", cause)
		}
		if len(kvs) > 0 {
			kv, err := schemas.ParseKeyValArgs(kvs, "crash.keyvals")
			if err != nil {
				return c.usageError("--kv: %v", err)
			}
			crash.KeyVals = kv
		}
		end.State = statemachine.Crashed
		end.Crash = statemachine.NormalizeCrash(crash)
	}
	if finishedAt != "" {
		t, err := parseTime(finishedAt)
		if err != nil {
			return c.usageError("--finished-at: %v", err)
		}
		end.FinishedAt = &t
	}
	end.ArtifactsURL, end.LogURL, end.Runner = artifactsURL, logURL, r.runner()
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	synthesised := false
	if statusFile != "" {
		sf := schemas.ReadStatusFile(statusFile)
		fin := statusFileEnd(sf, exitCode)
		if sf.Problem != nil {
			fmt.Fprintf(e.Stderr, "%s: %v\n%s: reporting %s\n", c.name, sf.Problem, c.name, fin.describe())
		}
		end.State, end.Crash, synthesised = fin.end.State, fin.end.Crash, fin.synthesised
	}
	resp, err := cl.FinishJob(ctx, id, end)
	if err != nil {
		return c.fail(err)
	}
	c.printJobResponse(resp)
	if synthesised {
		return exitSynthesisedCrash
	}
	return command.ExitOK
}

// exitSynthesisedCrash is the exit status of execdb job finish when the server has the report
// but the report is a crash the command made up for a missing or invalid status file (CONTRACT
// section 5, v1.1): a Buildbot step shows it as a warning.
const exitSynthesisedCrash = 3

// finishReport is the end that execdb job finish --status-file reports.
type finishReport struct {
	end statemachine.End
	// synthesised is true when end is a crash made up for a missing or invalid file.
	synthesised bool
}

// statusFileEnd turns what ReadStatusFile made of the status file into the report to send,
// falling back on runtask's exit status, when given, for a missing file (CONTRACT section 5,
// v1.1): 0 reports FINISHED, anything else the STATUS_FILE_MISSING crash with keyvals
// exit_code. A crash for an invalid file carries exit_code too.
func statusFileEnd(sf schemas.StatusFile, exitCode *int) finishReport {
	if sf.Problem == nil {
		return finishReport{end: sf.End}
	}
	missing := slices.Contains(sf.End.Crash.KeyVals["reason"], schemas.StatusFileMissing)
	if exitCode == nil {
		return finishReport{end: sf.End, synthesised: true}
	}
	if missing && *exitCode == 0 {
		return finishReport{end: statemachine.End{State: statemachine.Finished}}
	}
	end := sf.End
	crash := *end.Crash
	crash.KeyVals = maps.Clone(crash.KeyVals)
	crash.KeyVals["exit_code"] = []string{strconv.Itoa(*exitCode)}
	end.Crash = &crash
	return finishReport{end: end, synthesised: true}
}

// describe says what the report is, for the command's note on stderr.
func (f finishReport) describe() string {
	if f.end.State != statemachine.Crashed {
		return string(f.end.State) + " (runtask exited 0)"
	}
	kv := f.end.Crash.KeyVals
	s := fmt.Sprintf("CRASHED with notify=%s cause=%s reason=%s", f.end.Crash.Notify, f.end.Crash.Cause,
		strings.Join(kv["reason"], ","))
	if code, ok := kv["exit_code"]; ok {
		s += " exit_code=" + strings.Join(code, ",")
	}
	return s
}

func cmdJobShow(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb job show", "UUID [flags]", "Prints the job: readable text, or the API's JSON with --json.")
	id, code, ok := c.parseUUIDArg(args)
	if !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.Job(ctx, id)
	if err != nil {
		return c.fail(err)
	}
	c.printJobResponse(resp)
	return command.ExitOK
}

func cmdJobEvents(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb job events", "UUID [flags]", `
Prints the job's history, oldest first: every create, start, end and reschedule report the
server received, with its verdict (applied, duplicate, late, conflict), where it came from
(http, amqp, fedmsg, watchdog, reschedule) and its message id.`)
	id, code, ok := c.parseUUIDArg(args)
	if !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.Events(ctx, id)
	if err != nil {
		return c.fail(err)
	}
	if c.co.json {
		c.printRaw(resp.Body)
	} else {
		printEvents(e.Stdout, resp.Events)
	}
	return command.ExitOK
}

func cmdJobReschedule(ctx context.Context, args []string, e command.Env) int {
	c := newInvocation(e, "execdb job reschedule", "UUID [--force] [flags]", `
Makes a new SCHEDULED job from the stored trigger data of a CRASHED job, and prints it. A job
whose crash is fatal needs --force. A job that was already rescheduled answers with its
successor, so repeating the command is safe.`)
	var force bool
	c.boolVar(&force, "force", "reschedule even though the crash is fatal")
	id, code, ok := c.parseUUIDArg(args)
	if !ok {
		return code
	}
	cl, err := c.client()
	if err != nil {
		return c.usageError("%v", err)
	}
	resp, err := cl.RescheduleJob(ctx, id, force)
	if err != nil {
		return c.fail(err)
	}
	if !c.co.json {
		if resp.Created() {
			fmt.Fprintf(e.Stdout, "Rescheduled %s as %s.\n\n", id, resp.Job.UUID)
		} else {
			fmt.Fprintf(e.Stdout, "%s was already rescheduled as %s.\n\n", id, resp.Job.UUID)
		}
	}
	c.printJobResponse(resp)
	return command.ExitOK
}

// parseUUIDArg parses args, which must hold one positional argument: the job's UUID.
func (c *invocation) parseUUIDArg(args []string) (uuid.UUID, int, bool) {
	pos, code, ok := c.parse(args)
	if !ok {
		return uuid.Nil, code, false
	}
	switch len(pos) {
	case 0:
		return uuid.Nil, c.usageError("the job's UUID is missing"), false
	case 1:
	default:
		return uuid.Nil, c.usageError("unexpected argument %q", pos[1]), false
	}
	id, err := parseUUID(pos[0])
	if err != nil {
		return uuid.Nil, c.usageError("%v", err), false
	}
	return id, command.ExitOK, true
}

// printJobResponse prints the job of an answer, readable or as JSON.
func (c *invocation) printJobResponse(resp *client.JobResponse) {
	if c.co.json {
		c.printRaw(resp.Body)
		return
	}
	printJob(c.e.Stdout, resp.Job)
}

func parseUUID(s string) (uuid.UUID, error) {
	id, err := uuid.Parse(s)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, fmt.Errorf("%q is not a job UUID", s)
	}
	return id, nil
}

func parseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time like 2024-05-01T12:00:00Z", s)
	}
	return t.UTC(), nil
}
