"""ExecDB's message schemas for fedora-messaging, and the reference status-file writer.

- :class:`execdb_messages.messages.JobV1` is the message class of the schema ``execdb.job.v1``:
  every job-state message ExecDB publishes (``execdb.job.scheduled``, ``.running``,
  ``.finished`` and ``.crashed.<notify>.<cause>``). It is registered under the
  ``fedora.messages`` entry point group, so fedora-messaging consumers get it by the
  ``fedora_messaging_schema`` header.
- :func:`execdb_messages.statusfile.write_status` writes the status file that runtask leaves
  for ``execdb job finish --status-file`` (ExecDB's docs/statusfile.md).

Neither needs fedora-messaging to be importable: without it, :class:`JobV1` derives from a
small stand-in base class with the same interface, so the package can be tested where
fedora-messaging is not packaged (Debian).

This module imports neither, so that a runtask importing the status-file writer does not load
fedora-messaging: import ``execdb_messages.messages`` or ``execdb_messages.statusfile``.
"""
