"""Task records as JSON: what ``GET <prefix>/<task id>`` shows, and nothing more.

Never a task's arguments nor an error's traceback: either can quote secrets
or source lines, and an id is all a caller needs to be shown a task.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Any

from taskqueue.broker import TaskRecord
from taskqueue.errors import SerializationError
from taskqueue.handle import error_of
from taskqueue.progress import decode as decode_progress
from taskqueue.serialization import loads
from taskqueue.status import TaskStatus


def _time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """A task result as JSON: bytes as base64 text, datetimes as ISO 8601, tuples as arrays."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


#: States whose document carries the error (a RETRYING task only once an attempt failed).
_WITH_ERROR = (TaskStatus.FAILED.value, TaskStatus.DEAD.value, TaskStatus.CANCELLED.value)


def task_document(record: TaskRecord) -> dict[str, Any]:
    """What GET <prefix>/<id> shows: state, times, result or error; never the arguments."""
    out: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "queue": record.queue,
        "status": record.status,
        "attempts": record.attempts,
        "max_retries": record.max_retries,
        "enqueued_at": _time(record.enqueued_ms),
        "due_at": _time(record.due_ms) if record.status in ("SCHEDULED", "RETRYING") else None,
        "started_at": _time(record.started_ms),
        "finished_at": _time(record.finished_ms),
        "runtime_ms": record.runtime_ms,
    }
    progress = decode_progress(record.progress)
    if progress is not None:  # what the task reported (current_task().progress)
        out["progress"] = {
            "done": progress.done,
            "total": progress.total,
            "message": progress.message,
            "updated_at": progress.updated_at.isoformat(),
        }
    if record.dependencies or record.workflow:  # workflows: what it waits for, what it is part of
        out["dependencies"] = record.dependencies
        out["workflow"] = record.workflow or None
        if record.cause:
            out["cause"] = record.cause
    if record.status == TaskStatus.SUCCEEDED.value:
        try:
            out["result"] = jsonable(loads(record.result or b"\xc0", what=f"result of task {record.id}"))
        except SerializationError as exc:
            out["result"] = None
            out["error"] = {"type": "SerializationError", "message": str(exc)}
    elif record.status in _WITH_ERROR or (record.status == TaskStatus.RETRYING.value and record.error):
        failure = error_of(record)
        # The traceback stays out: it can quote source lines and local values.
        out["error"] = {"type": failure.error_type, "message": failure.error_message}
        if record.reason:
            out["reason"] = record.reason
    return out
