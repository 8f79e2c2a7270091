#!/usr/bin/env bash
# The life of Taskotron jobs as ExecDB sees it, played with the execdb client commands only:
# Trigger creates a job, Buildbot starts it, libtaskotron (runtask) leaves a status file, and
# Buildbot's last step reports the end from that file. A second job crashes because its minion
# never came up, a third loses its status file. Last, the stats.
#
# Run it against a running server (`execdb serve`):
#
#   EXECDB_SERVER=http://127.0.0.1:5003 EXECDB_TOKEN=change-me docs/examples/lifecycle.sh
#
# EXECDB names the binary (default: execdb on the PATH). Each step is printed before it runs.
set -euo pipefail

EXECDB=${EXECDB:-execdb}
export EXECDB_SERVER=${EXECDB_SERVER:-http://127.0.0.1:5003}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

step() { printf '\n### %s\n' "$*"; }

# expect_state UUID STATE: fail unless the job is in STATE.
expect_state() {
  if ! "$EXECDB" job show "$1" --json | grep -q "\"state\":\"$2\""; then
    echo "job $1: want state $2" >&2
    "$EXECDB" job show "$1" >&2
    exit 1
  fi
}

# runtask_writes STATUS_FILE JSON: what libtaskotron does on its way out, atomically.
runtask_writes() {
  printf '%s\n' "$2" > "$1.tmp"
  mv "$1.tmp" "$1"
}

build=4821

# --- Job 1: rpmlint on a Koji build, which runs to its end -------------------------------------

step "Trigger: a Koji build message arrives; create the job and keep its UUID"
uuid=$("$EXECDB" job create --quiet \
  --taskname rpmlint --item foo-1.0-1.fc40 --item-type koji_build --arch noarch \
  --data koji_tag=f40-updates-testing \
  --request-id "lifecycle-$$-1" \
  --source-msg-id "2024-$$-koji-build" --source-topic org.fedoraproject.prod.buildsys.build.state.change)
echo "job $uuid"
expect_state "$uuid" SCHEDULED

step "Buildbot, first step: the job started"
"$EXECDB" job start "$uuid" \
  --runner-name buildbot --runner-jobid "all/$build" \
  --runner-worker taskotron-client10-3 --runner-url "https://taskotron.example.org/builds/$build"
expect_state "$uuid" RUNNING

step "libtaskotron: runtask ran the task to its end and writes the status file"
status="$work/status-$build.json"
runtask_writes "$status" '{"state": "FINISHED"}'

step "Buildbot, last step (alwaysRun): report the end from the status file"
"$EXECDB" job finish "$uuid" --status-file "$status" \
  --log-url "https://taskotron.example.org/builds/$build/steps/runtask/logs/stdio"
expect_state "$uuid" FINISHED

step "Anyone: the job and its history"
"$EXECDB" job show "$uuid"
"$EXECDB" job events "$uuid"

step "Buildbot, the step run again: the same report changes nothing"
"$EXECDB" job finish "$uuid" --status-file "$status" >/dev/null
expect_state "$uuid" FINISHED

# --- Job 2: the disposable minion never comes up -----------------------------------------------

build=$((build + 1))
step "Trigger: another job"
uuid2=$("$EXECDB" job create --quiet \
  --taskname rpmdeplint --item foo-1.0-1.fc40 --item-type koji_build --arch x86_64 \
  --request-id "lifecycle-$$-2")
"$EXECDB" job start "$uuid2" --runner-name buildbot --runner-jobid "all/$build" \
  --runner-worker taskotron-client10-4 >/dev/null

step "libtaskotron: the minion did not boot in time; runtask says so in the status file"
status2="$work/status-$build.json"
runtask_writes "$status2" '{
  "state": "CRASHED",
  "crash": {
    "notify": "taskotron",
    "cause": "minion",
    "fatal": false,
    "keyvals": {"step": "MINION_CREATION", "reason": "TIMED_OUT", "minion": "disposable", "timeout": 600}
  }
}'

step "Buildbot: report the end from the status file"
"$EXECDB" job finish "$uuid2" --status-file "$status2"
expect_state "$uuid2" CRASHED

step "Buildbot, a confused rerun reporting FINISHED: refused, the crash stays (exit status 1)"
if "$EXECDB" job finish "$uuid2" --finished; then
  echo "a conflicting finish was accepted" >&2
  exit 1
fi
expect_state "$uuid2" CRASHED
"$EXECDB" job events "$uuid2"

# --- Job 3: runtask dies without a word ----------------------------------------------------------

build=$((build + 1))
step "Trigger and Buildbot: a third job starts"
uuid3=$("$EXECDB" job create --quiet \
  --taskname abicheck --item foo-1.0-1.fc40 --item-type koji_build --request-id "lifecycle-$$-3")
"$EXECDB" job start "$uuid3" --runner-name buildbot --runner-jobid "all/$build" >/dev/null

step "libtaskotron: killed, no status file; the finish reports STATUS_FILE_MISSING with runtask's exit status"
# Exit status 3: the server has the report, but it is a crash the command made up (Buildbot
# shows the step as WARNINGS). With --exit-code 0 a missing file would report FINISHED.
rc=0
"$EXECDB" job finish "$uuid3" --status-file "$work/status-$build.json" --exit-code 137 || rc=$?
if [ "$rc" -ne 3 ]; then
  echo "finish without a status file: exit status $rc, want 3" >&2
  exit 1
fi
expect_state "$uuid3" CRASHED
"$EXECDB" job show "$uuid3" --json | grep -q '"exit_code":\["137"\]'

# --- Stats ---------------------------------------------------------------------------------------

# This is a real call of GET /api/v1/stats: it fails the script (exit status 1) while the
# server does not serve stats.
step "Operators: crashes by cause and reason"
"$EXECDB" stats state=CRASHED --group-by cause --group-by kv.reason

printf '\nlifecycle: ok\n'
