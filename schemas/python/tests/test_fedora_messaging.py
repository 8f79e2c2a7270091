"""The message class against fedora-messaging's real Message class and registry.

fedora-messaging is not packaged in Debian, so these tests skip unless it is importable and
this package is installed (its entry point registered); EXECDB_TEST_FEDORA_MESSAGING=1 makes
them fail instead of skipping. schemas/python/README.md says how to run them.
"""

import json
import os
import unittest
import uuid

from execdb_messages.messages import JobV1

from .test_messages import CRASHED, FINISHED, RUNNING, body

try:
    import pika
    from fedora_messaging import message as fm
except ModuleNotFoundError as e:
    fm = None
    _why = f"fedora-messaging is not importable ({e})"

REQUIRED = os.environ.get("EXECDB_TEST_FEDORA_MESSAGING") == "1"


def _registered():
    """Why the tests cannot run, or None when they can."""
    if fm is None:
        return _why
    cls = fm.get_class("execdb.job.v1")
    if cls is fm.Message:
        return "execdb.job.v1 is not registered: install this package (pip install --no-deps schemas/python)"
    return None


_skip = _registered()


@unittest.skipIf(_skip and not REQUIRED, _skip)
class FedoraMessagingTest(unittest.TestCase):
    def setUp(self):
        if _skip:
            self.fail(_skip)

    def test_registry(self):
        cls = fm.get_class("execdb.job.v1")
        self.assertEqual((cls.__module__, cls.__qualname__), ("execdb_messages.messages", "JobV1"))
        self.assertTrue(issubclass(cls, fm.Message))
        self.assertTrue(issubclass(JobV1, fm.Message))
        self.assertEqual(fm.get_name(JobV1), "execdb.job.v1")

    def test_publish_side(self):
        # What a Python publisher of the same message would send: validated, with the
        # package-filter headers fedora-messaging derives from packages.
        msg = JobV1(body=CRASHED, topic="org.fedoraproject.dev.execdb.job.crashed.taskotron.minion")
        msg.validate()
        headers = msg._headers
        self.assertEqual(headers["fedora_messaging_schema"], "execdb.job.v1")
        self.assertEqual(headers["fedora_messaging_severity"], fm.WARNING)
        self.assertIs(headers.get("fedora_messaging_rpm_htop"), True)
        self.assertEqual(msg.summary, "rpmlint on htop-3.3.0-1.fc45: CRASHED (notify taskotron, cause minion), attempt 2")
        self.assertEqual(msg.app_name, "execdb")
        self.assertEqual(msg.agent_name, "buildbot")
        self.assertEqual(msg.packages, ["htop"])
        self.assertIsNone(msg.url)
        # dumps/loads, as fedora-messaging's CLI and tests keep messages.
        back = fm.loads(fm.dumps(msg))[0]
        self.assertIsInstance(back, JobV1)
        self.assertEqual(back.body, CRASHED)

    def test_consumer_side(self):
        # What fedora-messaging's consumer does with a delivery from ExecDB's Go publisher
        # (fedora_messaging/twisted/consumer.py calls get_message with the AMQP properties).
        cases = [
            ("org.fedoraproject.dev.execdb.job.finished", FINISHED, fm.INFO, "rpmlint on htop-3.3.0-1.fc45: FINISHED"),
            ("org.fedoraproject.dev.execdb.job.crashed.taskotron.minion", CRASHED, fm.WARNING,
             "rpmlint on htop-3.3.0-1.fc45: CRASHED (notify taskotron, cause minion), attempt 2"),
            ("org.fedoraproject.dev.execdb.job.running", RUNNING, fm.INFO, "rpmlint on htop-3.3.0-1.fc45: RUNNING"),
        ]
        for topic, b, severity, summary in cases:
            with self.subTest(topic):
                headers = {
                    "fedora_messaging_schema": "execdb.job.v1",
                    "fedora_messaging_severity": severity,
                    "fedora_messaging_schema_package": "execdb-messages",
                    "fedora_messaging_rpm_htop": True,
                    "sent-at": "2026-11-02T10:01:10+00:00",
                    "execdb_state": b["state"],
                }
                props = pika.BasicProperties(content_type="application/json", content_encoding="utf-8",
                                             delivery_mode=2, headers=headers, message_id=str(uuid.uuid4()))
                msg = fm.get_message(topic, props, json.dumps(b).encode("utf-8"))
                self.assertIsInstance(msg, JobV1)
                self.assertEqual(msg.topic, topic)
                self.assertEqual(msg.severity, severity)
                self.assertEqual(msg.summary, summary)
                self.assertEqual(msg.url, b.get("url"))
                self.assertEqual(msg.app_name, "execdb")
                self.assertEqual(msg.packages, ["htop"])
                self.assertIn(b["uuid"], str(msg))
                self.assertNotIn("Headers:", str(msg))  # not the base class's raw dump

    def test_consumer_refuses_invalid_body(self):
        props = pika.BasicProperties(content_encoding="utf-8", headers={
            "fedora_messaging_schema": "execdb.job.v1", "fedora_messaging_severity": fm.INFO})
        with self.assertRaises(Exception) as cm:
            fm.get_message("org.fedoraproject.dev.execdb.job.running", props,
                           json.dumps(body(state="BOGUS")).encode())
        self.assertEqual(type(cm.exception).__name__, "ValidationError")


if __name__ == "__main__":
    unittest.main()
