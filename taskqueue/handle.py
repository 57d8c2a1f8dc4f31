"""``TaskHandle``: a task id plus the ways to ask about it, from any process."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from taskqueue.errors import SerializationError, TaskFailed, TaskNotFound
from taskqueue.serialization import loads
from taskqueue.status import TaskStatus

if TYPE_CHECKING:
    from taskqueue.broker import TaskRecord
    from taskqueue.queue import TaskQueue


def error_of(record: TaskRecord) -> TaskFailed:
    """The TaskFailed that describes a failed, dead or cancelled record."""
    info: dict[str, Any] = {}
    if record.error:
        try:
            decoded = loads(record.error, what="stored error")
            info = decoded if isinstance(decoded, dict) else {}
        except SerializationError:
            info = {}
    if record.status == "CANCELLED":
        return TaskFailed(record.id, "TaskCancelled", "the task was cancelled", status="CANCELLED")
    return TaskFailed(
        record.id,
        str(info.get("type") or record.reason.split(":", 1)[0] or "Error"),
        str(info.get("message") or record.reason or "failed"),
        str(info.get("traceback") or ""),
        status=record.status,
    )


class TaskHandle:
    def __init__(self, queue: TaskQueue, task_id: str, name: str = "") -> None:
        self.queue = queue
        self.id = task_id
        self.name = name

    def __repr__(self) -> str:
        label = f" {self.name}" if self.name else ""
        return f"<TaskHandle {self.id}{label}>"

    def _repr_html_(self) -> str:
        from taskqueue.display import handle_html

        return handle_html(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def record(self, history: bool = False) -> TaskRecord:
        record = self.queue.broker.get_task(self.id, history=history)
        if record is None:
            raise TaskNotFound(
                f"task {self.id} is not in Redis: it never existed, was purged, "
                "or its result expired (tasks.result_ttl)"
            )
        return record

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(self.record().status)

    @property
    def attempts(self) -> int:
        return self.record().attempts

    @property
    def history(self) -> list[dict[str, Any]]:
        """One entry per failed attempt or lost lease: type, message, traceback, times."""
        return self.record(history=True).history

    @property
    def logs(self) -> str:
        """What the task printed (stdout, stderr) and logged, over all its attempts, with the
        traceback of each failed attempt; '' when it wrote nothing. Lines are stored when an
        attempt ends, so a running attempt's output shows up once it finishes."""
        from taskqueue.capture import as_text

        return as_text(self.queue.broker.task_logs(self.id))

    def cancel(self) -> bool:
        """Pending or scheduled: it will never run (True). Running: asks it to stop (False)."""
        previous = self.queue.broker.cancel(self.id)
        if previous is None:
            raise TaskNotFound(f"task {self.id} is not in Redis")
        return previous in ("PENDING", "SCHEDULED", "RETRYING")

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the outcome: the value, or TaskFailed; TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.queue.broker.watch(self.id)
            if record is None:
                raise TaskNotFound(
                    f"task {self.id} is not in Redis: it never existed, was purged, "
                    "or its result expired (tasks.result_ttl)"
                )
            if record.final:
                return self._outcome(record)
            remaining = 3600.0 if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"task {self.id} is still {record.status} after {timeout:g} s")
            self.queue.broker.wait_done(self.id, remaining)

    def _outcome(self, record: TaskRecord) -> Any:
        if record.status == "SUCCEEDED":
            return loads(record.result or b"\xc0", what=f"result of task {self.id}")
        raise error_of(record)


class DeadLetter:
    """A dead task as the dead-letter queue shows it."""

    __slots__ = ("args", "attempts", "died_ms", "error", "history", "id", "kwargs", "name", "queue", "reason")

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    @classmethod
    def from_record(cls, record: TaskRecord) -> DeadLetter:
        from taskqueue.serialization import decode

        try:
            envelope = decode(record.payload)
            args, kwargs = list(envelope.args), envelope.kwargs
        except SerializationError:
            args, kwargs = None, None
        failure = error_of(record)
        return cls(
            id=record.id,
            queue=record.queue,
            name=record.name,
            reason=record.reason,
            error={
                "type": failure.error_type,
                "message": failure.error_message,
                "traceback": failure.remote_traceback,
            },
            attempts=record.attempts,
            died_ms=record.finished_ms,
            args=args,
            kwargs=kwargs,
            history=record.history,
        )

    def __repr__(self) -> str:
        return f"<DeadLetter {self.id} {self.name or '?'} queue={self.queue} reason={self.reason!r}>"
