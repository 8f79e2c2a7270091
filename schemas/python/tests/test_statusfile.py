"""Tests of the reference status-file writer, execdb_messages.statusfile."""

import json
import os
import pathlib
import tempfile
import unittest
from unittest import mock

import jsonschema

from execdb_messages import statusfile
from execdb_messages.statusfile import classify, status_document, write_status

SCHEMAS = pathlib.Path(__file__).resolve().parents[2]
STATUS_SCHEMA = json.loads((SCHEMAS / "status.schema.json").read_text(encoding="utf-8"))


# Checkb's exception hierarchy (checkb/exceptions.py), by name: the writer must not need Checkb.
class CheckbError(Exception):
    pass


class CheckbConfigError(CheckbError):
    pass


class CheckbPlaybookError(CheckbError):
    pass


class CheckbDirectiveError(CheckbError):
    pass


class CheckbRemoteError(CheckbError):
    pass


class CheckbRemoteTimeoutError(CheckbRemoteError):
    pass


class CheckbRemoteProcessError(CheckbRemoteError):
    pass


class CheckbImageError(CheckbError):
    pass


class CheckbImageNotFoundError(CheckbImageError):
    pass


class CheckbPermissionError(CheckbError):
    pass


class CheckbMinionError(CheckbError):
    pass


class CheckbInterruptError(CheckbError):
    def __init__(self, signum, signame):
        self.signum = signum
        self.signame = signame

    def __str__(self):
        return "Received system signal %d (%s)" % (self.signum, self.signame)


# libtaskotron's, which Checkb was forked from.
class TaskotronError(Exception):
    pass


class TaskotronRemoteError(TaskotronError):
    pass


class TaskotronMinionError(TaskotronError):
    pass


class TaskotronImageError(TaskotronError):
    pass


class TaskotronYamlError(TaskotronError):
    pass


class TaskotronDirectiveError(TaskotronError):
    pass


class TaskotronConfigError(TaskotronError):
    pass


class TaskotronInterruptError(TaskotronError):
    pass


class BrokenStr(Exception):
    def __str__(self):
        raise RuntimeError("no")


def validate_status(doc):
    jsonschema.Draft202012Validator(STATUS_SCHEMA).validate(doc)


class ClassifyTest(unittest.TestCase):
    def test_mapping(self):
        cases = [
            (CheckbRemoteError("koji: 503"), ("taskotron", "network", False)),
            (CheckbRemoteTimeoutError("no output"), ("taskotron", "network", False)),
            (CheckbRemoteProcessError("exit 1"), ("taskotron", "network", False)),
            (CheckbMinionError("Disposable client failed to boot"), ("taskotron", "minion", False)),
            (CheckbImageError("no image"), ("taskotron", "minion", False)),
            (CheckbImageNotFoundError("no image"), ("taskotron", "minion", False)),
            (CheckbPlaybookError("syntax"), ("task", "task", True)),
            (CheckbDirectiveError("Results file doesn't exist"), ("task", "task", False)),
            (CheckbConfigError("bad config"), ("taskotron", "libtaskotron", True)),
            (CheckbInterruptError(15, "SIGTERM"), ("taskotron", "unknown", False)),
            (KeyboardInterrupt(), ("taskotron", "unknown", False)),
            (TaskotronRemoteError("x"), ("taskotron", "network", False)),
            (TaskotronMinionError("x"), ("taskotron", "minion", False)),
            (TaskotronImageError("x"), ("taskotron", "minion", False)),
            (TaskotronYamlError("x"), ("task", "task", True)),
            (TaskotronDirectiveError("x"), ("task", "task", False)),
            (TaskotronConfigError("x"), ("taskotron", "libtaskotron", True)),
            (TaskotronInterruptError("x"), ("taskotron", "unknown", False)),
            (CheckbError("ansible-playbook ended with 2"), ("unknown", "unknown", False)),
            (CheckbPermissionError("x"), ("unknown", "unknown", False)),
            (TaskotronError("x"), ("unknown", "unknown", False)),
            (KeyError("nvr"), ("unknown", "unknown", False)),
            (OSError(28, "No space left on device"), ("unknown", "unknown", False)),
        ]
        for exc, want in cases:
            with self.subTest(exc=type(exc).__name__):
                self.assertEqual(classify(exc), want)
                doc = status_document(exc)
                validate_status(doc)
                crash = doc["crash"]
                self.assertEqual((crash["notify"], crash["cause"], crash["fatal"]), want)
                self.assertEqual(crash["keyvals"]["reason"], type(exc).__name__)


class StatusDocumentTest(unittest.TestCase):
    def test_finished(self):
        self.assertEqual(status_document(), {"state": "FINISHED"})
        self.assertEqual(status_document(None, {"step": "X"}), {"state": "FINISHED"})
        validate_status(status_document())

    def test_keyvals(self):
        doc = status_document(CheckbInterruptError(15, "SIGTERM"), {"step": "DIRECTIVE", "directive": "shell"})
        validate_status(doc)
        self.assertEqual(doc["crash"]["keyvals"], {
            "reason": "CheckbInterruptError",
            "error": "Received system signal 15 (SIGTERM)",
            "exception": CheckbInterruptError.__module__ + ".CheckbInterruptError",
            "signal": "15",
            "step": "DIRECTIVE",
            "directive": "shell",
        })

    def test_builtin_exception_name(self):
        kv = status_document(KeyError("nvr"))["crash"]["keyvals"]
        self.assertEqual(kv["exception"], "KeyError")
        self.assertEqual(kv["error"], "'nvr'")

    def test_error_is_cut_to_1024_bytes_of_utf8(self):
        # 1023 ASCII bytes and a 2-byte character across the limit: the character goes.
        msg = "x" * 1023 + "é" + "tail"
        err = status_document(CheckbDirectiveError(msg))["crash"]["keyvals"]["error"]
        self.assertEqual(err, "x" * 1023)
        self.assertLessEqual(len(err.encode("utf-8")), 1024)
        long = status_document(CheckbDirectiveError("ü" * 5000))["crash"]["keyvals"]["error"]
        self.assertEqual(len(long.encode("utf-8")), 1024)

    def test_error_is_valid_utf8_without_nul(self):
        msg = "a\x00b" + "\udcff" + "c"  # a NUL and a lone surrogate (e.g. from surrogateescape)
        doc = status_document(CheckbDirectiveError(msg))
        err = doc["crash"]["keyvals"]["error"]
        self.assertNotIn("\x00", err)
        err.encode("utf-8")  # must not raise
        self.assertTrue(err.startswith("ab") and err.endswith("c"), err)
        validate_status(doc)

    def test_empty_and_broken_messages(self):
        self.assertEqual(status_document(CheckbMinionError())["crash"]["keyvals"]["error"], "CheckbMinionError")
        kv = status_document(BrokenStr())["crash"]["keyvals"]
        self.assertEqual(kv["error"], "BrokenStr")

    def test_keyvals_fit_execdb(self):
        extra = {"bad key:1": "v", "": "empty key", "k" * 100: "long key", "list": list(range(40)),
                 "flag": True, "none": None}
        extra.update({f"k{i}": i for i in range(100)})
        kv = status_document(CheckbMinionError("x"), extra)["crash"]["keyvals"]
        self.assertLessEqual(len(kv), 64)
        self.assertEqual(kv["bad_key_1"], "v")
        self.assertEqual(kv["k" * 64], "long key")
        self.assertEqual(kv["list"], [str(i) for i in range(16)])
        self.assertEqual(kv["flag"], "true")
        self.assertNotIn("none", kv)
        self.assertIn("reason", kv)
        self.assertIn("error", kv)
        validate_status(status_document(CheckbMinionError("x"), extra))


class WriteStatusTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()
        self.addCleanup(self.dir.cleanup)
        self.path = os.path.join(self.dir.name, "status.json")

    def read(self):
        with open(self.path, encoding="utf-8") as f:
            return json.load(f)

    def test_finished(self):
        self.assertEqual(write_status(self.path), {"state": "FINISHED"})
        self.assertEqual(self.read(), {"state": "FINISHED"})
        validate_status(self.read())
        self.assertEqual(os.listdir(self.dir.name), ["status.json"])

    def test_crash_replaces_old_file(self):
        write_status(self.path)
        doc = write_status(self.path, CheckbMinionError("Disposable client failed to boot"), {"step": "MINION_CREATION"})
        self.assertEqual(self.read(), doc)
        validate_status(self.read())
        self.assertEqual(doc["crash"]["keyvals"]["step"], "MINION_CREATION")
        self.assertEqual(os.listdir(self.dir.name), ["status.json"])

    def test_failed_write_leaves_old_file_and_no_temp_file(self):
        write_status(self.path)
        with mock.patch.object(statusfile.os, "replace", side_effect=OSError("disk gone")):
            with self.assertRaises(OSError):
                write_status(self.path, CheckbMinionError("x"))
        self.assertEqual(self.read(), {"state": "FINISHED"})
        self.assertEqual(os.listdir(self.dir.name), ["status.json"])

    def test_relative_path(self):
        cwd = os.getcwd()
        os.chdir(self.dir.name)
        self.addCleanup(os.chdir, cwd)
        write_status("status.json", CheckbConfigError("taskotron.yaml: bad"))
        self.assertEqual(self.read()["crash"]["cause"], "libtaskotron")


if __name__ == "__main__":
    unittest.main()
