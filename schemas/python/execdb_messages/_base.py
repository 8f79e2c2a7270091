"""A stand-in for ``fedora_messaging.message.Message`` where fedora-messaging is not installed.

It has the part of the interface that :class:`execdb_messages.messages.JobV1` and its users
need (body, topic, severity, headers, id, validate, the display properties), so that the
package can be used and tested without fedora-messaging (which Debian does not package). Where
fedora-messaging is importable, JobV1 derives from the real class instead.
"""

import json
import uuid

DEBUG = 10
INFO = 20
WARNING = 30
ERROR = 40


class Message:
    """The subset of fedora-messaging's Message that ExecDB's message class relies on."""

    severity = INFO
    topic = ""
    body_schema = {"type": "object"}
    headers_schema = {"type": "object"}
    deprecated = False

    def __init__(self, body=None, headers=None, topic=None, properties=None, severity=None):
        self.body = body or {}
        if topic:
            self.topic = topic
        if severity:
            self.severity = severity
        self._headers = dict(headers or {})
        self._headers.setdefault("fedora_messaging_schema", "execdb.job.v1")
        self._headers["fedora_messaging_severity"] = self.severity
        self.id = str(uuid.uuid4())
        self.queue = None

    def validate(self):
        """Validate the body against body_schema (needs the jsonschema package)."""
        import jsonschema

        jsonschema.validate(self.body, self.body_schema)

    @property
    def summary(self):
        return self.topic

    def __str__(self):
        return "Id: {}\nTopic: {}\nBody: {}".format(
            self.id, self.topic, json.dumps(self.body, sort_keys=True, indent=4)
        )

    def __repr__(self):
        return f"{self.__class__.__name__}(id={self.id!r}, topic={self.topic!r}, body={self.body!r})"

    @property
    def url(self):
        return None

    @property
    def app_name(self):
        return None

    @property
    def app_icon(self):
        return None

    @property
    def agent_name(self):
        return None

    @property
    def agent_avatar(self):
        return None

    @property
    def usernames(self):
        return []

    @property
    def groups(self):
        return []

    @property
    def packages(self):
        return []

    @property
    def containers(self):
        return []

    @property
    def modules(self):
        return []

    @property
    def flatpaks(self):
        return []
