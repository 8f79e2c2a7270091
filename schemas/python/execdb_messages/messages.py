"""The fedora-messaging message class of ExecDB's job-state messages, schema ``execdb.job.v1``."""

import json
from importlib import resources

try:
    from fedora_messaging.message import INFO, WARNING, Message
except ModuleNotFoundError as e:  # fedora-messaging is not installed (it is not in Debian)
    if e.name != "fedora_messaging" and not (e.name or "").startswith("fedora_messaging."):
        raise  # fedora-messaging is there but broken: say so rather than hide it
    from ._base import INFO, WARNING, Message

__all__ = ["JobV1", "package_name", "packages", "SCHEMA_NAME"]

#: The schema name: the entry point name in the ``fedora.messages`` group and the
#: ``fedora_messaging_schema`` header of every message ExecDB publishes.
SCHEMA_NAME = "execdb.job.v1"


def _load_body_schema():
    # job.schema.json in this package is a symbolic link to schemas/job.schema.json, the schema
    # ExecDB's Go publisher validates against: one file, so the two cannot drift apart. Building
    # a wheel copies the file's content.
    text = resources.files(__package__).joinpath("job.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


def package_name(nvr):
    """The package name of a Koji build's NVR: the NVR without its last two ``-``-separated
    parts (version and release), e.g. ``python-foo-bar-1.0-2.fc40`` -> ``python-foo-bar``.

    Returns None when the NVR has fewer than three parts or the name would be empty.
    """
    if not isinstance(nvr, str):
        return None
    parts = nvr.split("-")
    if len(parts) < 3:
        return None
    return "-".join(parts[:-2]) or None


def packages(body):
    """The RPM package names a job-state message body is about, sorted and without duplicates.

    This is the rule ExecDB's Go publisher follows for the ``fedora_messaging_rpm_<name>``
    headers, and must stay the same as it:

    - for ``item_type`` ``koji_build``, the package name of the item NVR (:func:`package_name`:
      the NVR without its version and release; an item with fewer than three ``-``-separated
      parts names no package);
    - for any item type, in addition, every value of the trigger data key ``packages``
      (``body["data"]["packages"]``, a list of strings), e.g. the packages of a Bodhi update;
    - empty names are left out; the result is de-duplicated and sorted.
    """
    names = set()
    if body.get("item_type") == "koji_build":
        name = package_name(body.get("item"))
        if name:
            names.add(name)
    data = body.get("data")
    if isinstance(data, dict):
        listed = data.get("packages")
        if isinstance(listed, list):
            names.update(p for p in listed if isinstance(p, str) and p)
    return sorted(names)


def _text(value):
    return value if isinstance(value, str) and value else None


def _keyvals(kv):
    """keyvals as ``k=v k=v2 …``, keys sorted."""
    if not isinstance(kv, dict):
        return ""
    items = []
    for key in sorted(kv):
        values = kv[key]
        if not isinstance(values, list):
            values = [values]
        items.extend(f"{key}={v}" for v in values)
    return " ".join(items)


class JobV1(Message):
    """A job-state message of ExecDB: ``<prefix>.execdb.job.scheduled``, ``.running``,
    ``.finished`` or ``.crashed.<notify>.<cause>``.

    The body is the job as ExecDB's HTTP API shows it plus ``previous_state`` (and ``url``, the
    job's page, when ExecDB knows its public address); :attr:`body_schema` is ExecDB's
    ``schemas/job.schema.json``. Runner fields may be null when unknown. The severity is INFO,
    WARNING for a crash.
    """

    body_schema = _load_body_schema()

    def __init__(self, body=None, headers=None, topic=None, properties=None, severity=None):
        if severity is None:
            severity = WARNING if (body or {}).get("state") == "CRASHED" else INFO
        super().__init__(body=body, headers=headers, topic=topic, properties=properties, severity=severity)

    # --- what the body says ---------------------------------------------------------------

    @property
    def job_uuid(self):
        """The job's UUID."""
        return self.body.get("uuid")

    @property
    def state(self):
        """The job's state: SCHEDULED, RUNNING, FINISHED or CRASHED."""
        return self.body.get("state")

    @property
    def crash(self):
        """The crash classification (a dict with notify, cause, fatal and keyvals), or None."""
        crash = self.body.get("crash")
        return crash if isinstance(crash, dict) else None

    @property
    def runner(self):
        """The runner dict (name, jobid, worker, url; any may be None), or None."""
        runner = self.body.get("runner")
        return runner if isinstance(runner, dict) else None

    # --- fedora-messaging's display and filtering properties ------------------------------

    @property
    def app_name(self):
        return "execdb"

    @property
    def agent_name(self):
        """The runner's name (e.g. ``buildbot``), or None when no runner is known."""
        return _text((self.runner or {}).get("name"))

    @property
    def url(self):
        """The job's page: the body's ``url``, present when ExecDB has EXECDB_BASE_URL; else
        None."""
        return _text(self.body.get("url"))

    @property
    def packages(self):
        """The RPM packages the job is about; see :func:`packages` for the rule."""
        return packages(self.body)

    @property
    def summary(self):
        """E.g. ``rpmlint on htop-3.3.0-1.fc45: CRASHED (notify taskotron, cause minion)``."""
        body = self.body
        s = "{} on {}: {}".format(body.get("taskname", "?"), body.get("item", "?"), body.get("state", "?"))
        crash = self.crash
        if body.get("state") == "CRASHED" and crash:
            detail = "notify {}, cause {}".format(crash.get("notify", "unknown"), crash.get("cause", "unknown"))
            if crash.get("fatal"):
                detail += ", fatal"
            s += f" ({detail})"
        attempt = body.get("attempt")
        if isinstance(attempt, int) and attempt > 1:
            s += f", attempt {attempt}"
        return s

    def __str__(self):
        body = self.body
        lines = [self.summary, ""]

        def add(label, value):
            if value not in (None, ""):
                lines.append(f"{label + ':':<10} {value}")

        state = body.get("state")
        if body.get("previous_state"):
            state = "{} (was {})".format(state, body["previous_state"])
        add("Job", body.get("uuid"))
        add("State", state)
        add("Task", body.get("taskname"))
        item = body.get("item")
        extra = ", ".join(x for x in (body.get("item_type"), body.get("arch")) if x)
        add("Item", f"{item} ({extra})" if extra else item)
        add("Attempt", body.get("attempt"))
        crash = self.crash
        if crash:
            add("Crash", "notify={} cause={} fatal={}".format(
                crash.get("notify", "unknown"), crash.get("cause", "unknown"),
                "true" if crash.get("fatal") else "false"))
            add("Keyvals", _keyvals(crash.get("keyvals")))
        runner = self.runner
        if runner:
            parts = [_text(runner.get("name")), _text(runner.get("jobid"))]
            text = " ".join(p for p in parts if p)
            if _text(runner.get("worker")):
                text += " on " + runner["worker"]
            add("Runner", text)
            add("Build", _text(runner.get("url")))
        add("Log", _text(body.get("log_url")))
        add("Artifacts", _text(body.get("artifacts_url")))
        for key, label in (("rescheduled_from", "Retry of"), ("rescheduled_to", "Retried as")):
            add(label, body.get(key))
        add("Data", _keyvals(body.get("data")))
        for key, label in (("created_at", "Created"), ("started_at", "Started"), ("finished_at", "Ended")):
            add(label, body.get(key))
        add("Page", self.url)
        return "\n".join(lines)
