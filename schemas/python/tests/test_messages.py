"""Tests of the execdb.job.v1 message class, execdb_messages.messages.JobV1."""

import copy
import json
import pathlib
import unittest

import jsonschema

from execdb_messages import messages
from execdb_messages.messages import JobV1, package_name, packages

SCHEMAS = pathlib.Path(__file__).resolve().parents[2]
JOB_SCHEMA_FILE = SCHEMAS / "job.schema.json"
JOB_SCHEMA = json.loads(JOB_SCHEMA_FILE.read_text(encoding="utf-8"))

UUID = "0193a7b2-4c1e-7d2a-9f00-5b1c9e2d7a31"

SCHEDULED = {
    "uuid": UUID,
    "state": "SCHEDULED",
    "previous_state": None,
    "taskname": "rpmlint",
    "item": "htop-3.3.0-1.fc45",
    "item_type": "koji_build",
    "arch": "noarch",
    "data": {"koji_tag": ["f45-updates-testing"]},
    "source": None,
    "request_id": "trigger-1",
    "runner": None,
    "artifacts_url": None,
    "log_url": None,
    "crash": None,
    "attempt": 1,
    "rescheduled_from": None,
    "rescheduled_to": None,
    "created_at": "2026-11-02T10:00:00.123456Z",
    "started_at": None,
    "finished_at": None,
    "updated_at": "2026-11-02T10:00:00.123456Z",
    "href": "/api/v1/jobs/" + UUID,
}


def body(**changes):
    b = copy.deepcopy(SCHEDULED)
    b.update(changes)
    return b


RUNNER = {"name": "buildbot", "jobid": "all/4821", "worker": "taskotron-client10-3",
          "url": "https://taskotron.example.org/#/builders/1/builds/4821"}

RUNNING = body(state="RUNNING", previous_state="SCHEDULED", runner=RUNNER,
               started_at="2026-11-02T10:00:03Z", updated_at="2026-11-02T10:00:03Z")
FINISHED = body(state="FINISHED", previous_state="RUNNING", runner=RUNNER,
                started_at="2026-11-02T10:00:03Z", finished_at="2026-11-02T10:01:10Z",
                updated_at="2026-11-02T10:01:10Z",
                log_url="https://taskotron.example.org/#/builders/1/builds/4821/steps/3/logs/stdio",
                url="https://taskotron.example.org/execdb/jobs/" + UUID)
CRASHED = body(state="CRASHED", previous_state="RUNNING", runner=RUNNER, attempt=2,
               rescheduled_from="0193a7b2-0000-7d2a-9f00-5b1c9e2d7a31",
               crash={"notify": "taskotron", "cause": "minion", "fatal": False,
                      "keyvals": {"step": ["MINION_CREATION"], "reason": ["TIMED_OUT"]}},
               started_at="2026-11-02T10:00:03Z", finished_at="2026-11-02T10:11:10Z",
               updated_at="2026-11-02T10:11:10Z")
BODIES = {"scheduled": SCHEDULED, "running": RUNNING, "finished": FINISHED, "crashed": CRASHED}


class SchemaTest(unittest.TestCase):
    def test_body_schema_is_job_schema(self):
        # One source: the package's job.schema.json is schemas/job.schema.json.
        self.assertEqual(JobV1.body_schema, JOB_SCHEMA)
        packaged = pathlib.Path(messages.__file__).with_name("job.schema.json")
        self.assertEqual(packaged.read_bytes(), JOB_SCHEMA_FILE.read_bytes(),
                         "execdb_messages/job.schema.json differs from schemas/job.schema.json")
        self.assertEqual(JOB_SCHEMA["title"], messages.SCHEMA_NAME)
        jsonschema.Draft202012Validator.check_schema(JobV1.body_schema)

    def test_examples_validate(self):
        for example in JOB_SCHEMA.get("examples", []):
            JobV1(body=example, topic="org.fedoraproject.dev.execdb.job.crashed.task.task").validate()
        for name, b in BODIES.items():
            with self.subTest(name):
                JobV1(body=b, topic="org.fedoraproject.dev.execdb.job." + name).validate()

    def test_invalid_body_is_refused(self):
        for b in (body(state="BOGUS"), body(crash={"notify": "x"}), {"uuid": UUID},
                  body(state="CRASHED", crash=None)):
            with self.subTest(b=b), self.assertRaises(jsonschema.ValidationError):
                JobV1(body=b, topic="t").validate()


class PropertiesTest(unittest.TestCase):
    def test_base_class(self):
        try:
            from fedora_messaging.message import Message
        except ModuleNotFoundError:
            from execdb_messages._base import Message
        self.assertTrue(issubclass(JobV1, Message))

    def test_summary(self):
        want = {
            "scheduled": "rpmlint on htop-3.3.0-1.fc45: SCHEDULED",
            "running": "rpmlint on htop-3.3.0-1.fc45: RUNNING",
            "finished": "rpmlint on htop-3.3.0-1.fc45: FINISHED",
            "crashed": "rpmlint on htop-3.3.0-1.fc45: CRASHED (notify taskotron, cause minion), attempt 2",
        }
        for name, b in BODIES.items():
            with self.subTest(name):
                self.assertEqual(JobV1(body=b, topic="t").summary, want[name])
        fatal = copy.deepcopy(CRASHED)
        fatal["crash"].update(notify="task", cause="task", fatal=True)
        fatal["attempt"] = 1
        self.assertEqual(JobV1(body=fatal).summary,
                         "rpmlint on htop-3.3.0-1.fc45: CRASHED (notify task, cause task, fatal)")

    def test_str(self):
        s = str(JobV1(body=CRASHED, topic="org.fedoraproject.dev.execdb.job.crashed.taskotron.minion"))
        lines = s.splitlines()
        self.assertGreater(len(lines), 8, s)
        self.assertEqual(lines[0], JobV1(body=CRASHED).summary)
        for want in (UUID, "CRASHED (was RUNNING)", "htop-3.3.0-1.fc45 (koji_build, noarch)",
                     "notify=taskotron cause=minion fatal=false", "reason=TIMED_OUT step=MINION_CREATION",
                     "buildbot all/4821 on taskotron-client10-3", RUNNER["url"],
                     "koji_tag=f45-updates-testing", "Retry of:  " + CRASHED["rescheduled_from"]):
            self.assertIn(want, s)
        self.assertNotIn("{", s)  # not a raw dump
        s = str(JobV1(body=FINISHED))
        self.assertIn(FINISHED["log_url"], s)
        self.assertIn("Page:      " + FINISHED["url"], s)

    def test_url(self):
        self.assertIsNone(JobV1(body=RUNNING).url)
        self.assertEqual(JobV1(body=FINISHED).url, FINISHED["url"])
        self.assertIsNone(JobV1(body=body(url="")).url)

    def test_app_and_agent(self):
        self.assertEqual(JobV1(body=SCHEDULED).app_name, "execdb")
        self.assertIsNone(JobV1(body=SCHEDULED).agent_name)
        self.assertEqual(JobV1(body=RUNNING).agent_name, "buildbot")

    def test_runner_with_nulls(self):
        # The runner's fields may be null when unknown (a start with only a name).
        b = body(state="RUNNING", previous_state="SCHEDULED",
                 runner={"name": "buildbot", "jobid": None, "worker": None, "url": None})
        m = JobV1(body=b)
        self.assertEqual(m.agent_name, "buildbot")
        s = str(m)
        self.assertIn("Runner:    buildbot", s)
        self.assertNotIn("None", s)
        b["runner"] = {"name": None, "jobid": None, "worker": None, "url": None}
        self.assertIsNone(JobV1(body=b).agent_name)
        self.assertNotIn("None", str(JobV1(body=b)))

    def test_severity(self):
        self.assertEqual(JobV1(body=RUNNING).severity, messages.INFO)
        self.assertEqual(JobV1(body=FINISHED).severity, messages.INFO)
        self.assertEqual(JobV1(body=CRASHED).severity, messages.WARNING)
        self.assertEqual(JobV1(body=CRASHED, severity=messages.INFO).severity, messages.INFO)  # the header wins


class PackagesTest(unittest.TestCase):
    def test_package_name(self):
        cases = {
            "htop-3.3.0-1.fc45": "htop",
            "python-foo-bar-1.0-2.fc40": "python-foo-bar",
            "foo-1.0": None,
            "foo": None,
            "-1.0-1": None,
            "": None,
            None: None,
        }
        for nvr, want in cases.items():
            with self.subTest(nvr=nvr):
                self.assertEqual(package_name(nvr), want)

    def test_packages(self):
        cases = [
            (SCHEDULED, ["htop"]),
            (body(item="python-foo-bar-1.0-2.fc40"), ["python-foo-bar"]),
            (body(item="foo-1.0"), []),
            (body(item_type="bodhi_update", item="FEDORA-2026-abc"), []),
            (body(item_type="bodhi_update", item="FEDORA-2026-abc",
                  data={"packages": ["zsh", "bash", "zsh", ""]}), ["bash", "zsh"]),
            (body(data={"packages": ["htop", "htop-devel"]}), ["htop", "htop-devel"]),
            (body(item_type="compose", item="Fedora-Rawhide-20260101.n.0"), []),
            (body(data={}), ["htop"]),
            ({}, []),
        ]
        for b, want in cases:
            with self.subTest(item=b.get("item"), data=b.get("data")):
                self.assertEqual(packages(b), want)
                self.assertEqual(JobV1(body=b).packages, want)


if __name__ == "__main__":
    unittest.main()
