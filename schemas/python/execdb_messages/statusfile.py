"""The reference writer of the status file runtask leaves for ``execdb job finish --status-file``.

Call :func:`write_status` on every way out of runtask: with no exception when the task ran to
its end (whatever its results say), with the exception otherwise::

    from execdb_messages.statusfile import write_status

    try:
        run_the_task()
    except BaseException as e:
        write_status(status_path, e)
        raise
    else:
        write_status(status_path)

The file is written atomically (a temporary file in the same directory, then a rename), so a
runtask killed while writing leaves no file rather than half of one. Exceptions are classified
by class name, walking the exception's class hierarchy, so neither Checkb nor libtaskotron need
be importable here:

=============================================  =========  ============  =====
class (Checkb / libtaskotron)                   notify     cause         fatal
=============================================  =========  ============  =====
CheckbRemoteError / TaskotronRemoteError        taskotron  network       no
CheckbMinionError / TaskotronMinionError        taskotron  minion        no
CheckbImageError / TaskotronImageError          taskotron  minion        no
CheckbPlaybookError / TaskotronYamlError        task       task          yes
CheckbDirectiveError / TaskotronDirectiveError  task       task          no
CheckbConfigError / TaskotronConfigError        taskotron  libtaskotron  yes
CheckbInterruptError / TaskotronInterruptError  taskotron  unknown       no
KeyboardInterrupt                               taskotron  unknown       no
anything else                                   unknown    unknown       no
=============================================  =========  ============  =====

Subclasses map like their parents (CheckbRemoteTimeoutError and CheckbRemoteProcessError as
network, CheckbImageNotFoundError as minion). ExecDB's docs/statusfile.md says why.
"""

import json
import os
import re
import tempfile

__all__ = ["classify", "status_document", "write_status", "CLASSES"]

_NETWORK = ("taskotron", "network", False)
_MINION = ("taskotron", "minion", False)
_TASK_FATAL = ("task", "task", True)
_TASK = ("task", "task", False)
_CONFIG = ("taskotron", "libtaskotron", True)
_INTERRUPT = ("taskotron", "unknown", False)
_UNKNOWN = ("unknown", "unknown", False)

#: Exception class name -> (notify, cause, fatal). Checkb's names (checkb/exceptions.py) and
#: those of libtaskotron, which Checkb was forked from and which used the prefix Taskotron
#: (its formula error was TaskotronYamlError where Checkb has CheckbPlaybookError).
CLASSES = {
    "CheckbRemoteError": _NETWORK,
    "TaskotronRemoteError": _NETWORK,
    "CheckbMinionError": _MINION,
    "TaskotronMinionError": _MINION,
    # The image is what a disposable minion boots from: no image, no minion. Reported as a
    # failure to create the minion, Taskotron's to fix, so that stats on cause=minion count it.
    "CheckbImageError": _MINION,
    "TaskotronImageError": _MINION,
    "CheckbPlaybookError": _TASK_FATAL,
    "TaskotronYamlError": _TASK_FATAL,
    "CheckbDirectiveError": _TASK,
    "TaskotronDirectiveError": _TASK,
    "CheckbConfigError": _CONFIG,
    "TaskotronConfigError": _CONFIG,
    "CheckbInterruptError": _INTERRUPT,
    "TaskotronInterruptError": _INTERRUPT,
    "KeyboardInterrupt": _INTERRUPT,
}

MAX_VALUE_BYTES = 1024  # a keyval value, in bytes of UTF-8 (ExecDB CONTRACT section 1)
MAX_KEYS = 64
MAX_VALUES = 16
_KEY_RE = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


def classify(exc):
    """(notify, cause, fatal) for an exception, by the first class in its hierarchy that
    :data:`CLASSES` names; ``("unknown", "unknown", False)`` for any other."""
    for cls in type(exc).__mro__:
        if cls.__name__ in CLASSES:
            return CLASSES[cls.__name__]
    return _UNKNOWN


def clean_text(value, limit=MAX_VALUE_BYTES):
    """value as a string ExecDB accepts: valid UTF-8 (what cannot be encoded becomes U+FFFD),
    without NUL, at most limit bytes, cut between characters."""
    s = value if isinstance(value, str) else str(value)
    s = s.encode("utf-8", "surrogatepass").decode("utf-8", "replace").replace("\x00", "")
    b = s.encode("utf-8")
    if len(b) > limit:
        s = b[:limit].decode("utf-8", "ignore")
    return s


def _value(v):
    if isinstance(v, bool):
        return "true" if v else "false"  # as ExecDB keeps a boolean
    return clean_text(v)


def _clean_key(key):
    key = re.sub(r"[^A-Za-z0-9_.-]", "_", str(key))[:64]
    return key if _KEY_RE.match(key) else None


def _message(exc):
    try:
        text = str(exc)
    except Exception:  # a broken __str__ must not cost the status file
        text = ""
    return text or type(exc).__name__


def _exception_name(cls):
    if cls.__module__ in ("builtins", "__main__"):
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def status_document(exc=None, keyvals=None):
    """The status file's content as a dict.

    With no exception: ``{"state": "FINISHED"}`` (keyvals are ignored). With one: CRASHED,
    classified by :func:`classify`, with keyvals ``reason`` (the exception's class name),
    ``error`` (its message, at most 1024 bytes of valid UTF-8, NUL removed), ``exception``
    (its module and class) and, for an interrupt that carries one, ``signal``; then the given
    keyvals (e.g. ``step``), which may override those. Keys are made to fit ExecDB's rules
    (characters outside ``A-Za-z0-9_.-`` become ``_``, at most 64 characters and 64 keys,
    16 values a key); values become strings.
    """
    if exc is None:
        return {"state": "FINISHED"}
    notify, cause, fatal = classify(exc)
    kv = {
        "reason": type(exc).__name__,
        "error": _message(exc),
        "exception": _exception_name(type(exc)),
    }
    signum = getattr(exc, "signum", None)
    if isinstance(signum, int) and not isinstance(signum, bool):
        kv["signal"] = signum
    kv.update(keyvals or {})
    clean = {}
    for key, value in kv.items():
        key = _clean_key(key)
        if key is None or (key not in clean and len(clean) >= MAX_KEYS):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        values = [_value(v) for v in list(values)[:MAX_VALUES] if v is not None]
        if values:
            clean[key] = values[0] if len(values) == 1 else values
    return {
        "state": "CRASHED",
        "crash": {"notify": notify, "cause": cause, "fatal": fatal, "keyvals": clean},
    }


def write_status(path, exc=None, keyvals=None):
    """Write the status file at path atomically and return what it holds (a dict).

    exc=None writes ``{"state": "FINISHED"}``; an exception writes the CRASHED document of
    :func:`status_document`. The file is written to a temporary file in the same directory,
    flushed to disk and renamed over path, so readers see the old file, no file or the whole new
    one.
    """
    doc = status_document(exc, keyvals)
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".status-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, sort_keys=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename itself durable; not every filesystem allows it
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return doc
