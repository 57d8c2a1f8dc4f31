"""What several pages share: reading a task for display, paging arguments, chosen ids."""

from __future__ import annotations

import dataclasses
from typing import Any

from flask import abort, request

from taskqueue.broker.records import TaskRecord
from taskqueue.errors import SerializationError
from taskqueue.outcome import decode_error, result_of
from taskqueue.serialization import decode
from taskqueue.status import as_read

#: Rows per page.
PAGE_SIZE = 50
MAX_PAGE_SIZE = 500


@dataclasses.dataclass
class TaskView:
    """A task record as the pages show it (arguments and errors decoded, nothing trusted)."""

    id: str
    status: str
    queue: str
    name: str
    attempts: int
    max_retries: int
    args: Any
    kwargs: Any
    error_type: str
    error_message: str
    traceback: str
    reason: str
    record: TaskRecord
    score: int | None = None

    @property
    def summary(self) -> str:
        """The arguments on one line, cut at 120 characters (the detail page shows them whole)."""
        if self.args is None:
            return "(undecodable payload)"
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in (self.kwargs or {}).items()]
        text = ", ".join(parts)
        return text if len(text) <= 120 else text[:119] + "…"


def view_of(record: TaskRecord, score: int | None = None) -> TaskView:
    try:
        envelope = decode(record.payload) if record.payload else None
        args, kwargs = (list(envelope.args), dict(envelope.kwargs)) if envelope else ([], {})
    except SerializationError:
        args, kwargs = None, None
    error = decode_error(record.error, record.reason) if record.error or record.reason else None
    return TaskView(
        id=record.id,
        status=as_read(record.status),
        queue=record.queue,
        name=record.name,
        attempts=record.attempts,
        max_retries=record.max_retries,
        args=args,
        kwargs=kwargs,
        error_type=error.type if error else "",
        error_message=error.message if error else "",
        traceback=error.traceback if error else "",
        reason=record.reason,
        record=record,
        score=score,
    )


def result_text(record: TaskRecord) -> tuple[bool, Any]:
    """(True, the result) for a succeeded task whose result decodes, else (False, why not)."""
    if record.status != "SUCCEEDED":
        return False, None
    try:
        return True, result_of(record)
    except SerializationError as exc:
        return False, f"(the stored result cannot be decoded: {exc})"


def paging() -> tuple[int, int]:
    """(offset, limit) from the query string; a bad value is a 400 that names it."""
    try:
        offset = int(request.args.get("offset", "0"))
        limit = int(request.args.get("limit", str(PAGE_SIZE)))
    except ValueError:
        abort(400, "offset and limit must be whole numbers")
    if offset < 0 or not 1 <= limit <= MAX_PAGE_SIZE:
        abort(400, f"offset must be >= 0 and limit between 1 and {MAX_PAGE_SIZE}")
    return offset, limit


def chosen_ids() -> list[str]:
    """The task ids a form chose (checkboxes named ``id``); 400 when none."""
    ids = [i for i in request.form.getlist("id") if i]
    if not ids:
        abort(400, "choose at least one task (tick its box) first")
    if len(ids) > MAX_PAGE_SIZE:
        abort(400, f"at most {MAX_PAGE_SIZE} tasks at once")
    return ids


def checked_queue(queues: list[str], name: str, *, allow_all: bool = False) -> str:
    if allow_all and name == "":
        return ""
    if name not in queues:
        abort(400, f"unknown queue {name!r}; configured queues: {', '.join(queues)}")
    return name


__all__ = ["PAGE_SIZE", "TaskView", "checked_queue", "chosen_ids", "paging", "result_text", "view_of"]
