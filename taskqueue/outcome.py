"""Reading a stored outcome: the one home of how a result or an error is decoded.

The worker stores a task's result as msgpack and the error of a failed
attempt as a msgpack map (``type``, ``message``, ``traceback``). Handles,
``q.map``, dead letters, the notebook display, the monitor and the HTTP API
all read them back through here, so a record without an error (rejected
before it ran) or with an unreadable one reads the same everywhere: the
stored reason stands in for the missing parts.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, NamedTuple

from taskqueue.errors import SerializationError, TaskFailed, TaskNotFound
from taskqueue.serialization import loads

if TYPE_CHECKING:
    from taskqueue.broker import TaskRecord

#: What ``loads`` reads for a record that stored no result (msgpack nil).
_NIL = b"\xc0"


class ErrorInfo(NamedTuple):
    """A stored error, decoded: its exception type name, message and remote traceback."""

    type: str
    message: str
    traceback: str


def decode_error(error: bytes | None, reason: str) -> ErrorInfo:
    """The stored error of a failed, dead or cancelled task; ``reason`` fills what it lacks.

    A dead letter rejected before it ran ("unknown-task: ...") has no error, only a
    reason: its type is the reason's prefix and its message the reason itself.
    """
    info: dict[str, Any] = {}
    if error:
        try:
            decoded = loads(error, what="stored error")
        except SerializationError:
            decoded = None
        info = decoded if isinstance(decoded, dict) else {}
    return ErrorInfo(
        str(info.get("type") or reason.split(":", 1)[0] or "Error"),
        str(info.get("message") or reason or ""),
        str(info.get("traceback") or ""),
    )


def error_of(record: TaskRecord) -> TaskFailed:
    """The TaskFailed that describes a failed, dead or cancelled record."""
    if record.status == "CANCELLED":
        return TaskFailed(record.id, "TaskCancelled", "the task was cancelled", status="CANCELLED")
    info = decode_error(record.error, record.reason)
    return TaskFailed(record.id, info.type, info.message or "failed", info.traceback, status=record.status)


def missing(task_id: str) -> TaskNotFound:
    """The error for a task whose record is gone, with the reasons it can be."""
    return TaskNotFound(
        f"task {task_id} is not in Redis: it never existed, was purged, "
        "or its result expired (tasks.result_ttl)"
    )


def result_of(record: TaskRecord) -> Any:
    """The value a SUCCEEDED record stored (None for a task that returned nothing)."""
    return loads(record.result or _NIL, what=f"result of task {record.id}")


__all__ = ["ErrorInfo", "decode_error", "error_of", "missing", "result_of"]
