"""The dead-letter queue as users see it: ``DeadLetter`` entries, listed and requeued.

Dead letters are indexed per queue (Inspection) while their records are task
records (Producer): listing one reads both, and drops index entries whose
record has expired, so a listing never shows a task that can no longer be
requeued.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from taskqueue.errors import SerializationError, TaskNotFound
from taskqueue.outcome import decode_error
from taskqueue.serialization import decode

if TYPE_CHECKING:
    from taskqueue.broker import TaskRecord
    from taskqueue.broker.ports import Inspection, Producer


class DeadLetter:
    """A dead task as the dead-letter queue shows it."""

    __slots__ = ("args", "attempts", "died_ms", "error", "history", "id", "kwargs", "name", "queue", "reason")
    id: str
    queue: str
    name: str
    reason: str
    #: type, message and traceback of the last error.
    error: dict[str, str]
    attempts: int
    died_ms: int | None
    #: The task's arguments, None when its payload could not be decoded.
    args: list[Any] | None
    kwargs: dict[str, Any] | None
    history: list[dict[str, Any]]

    def __init__(self, **fields: Any) -> None:
        for name in self.__slots__:
            setattr(self, name, fields.get(name))

    @classmethod
    def from_record(cls, record: TaskRecord) -> DeadLetter:
        try:
            envelope = decode(record.payload)
            args, kwargs = list(envelope.args), envelope.kwargs
        except SerializationError:
            args, kwargs = None, None
        error = decode_error(record.error, record.reason)
        return cls(
            id=record.id,
            queue=record.queue,
            name=record.name,
            reason=record.reason,
            error={"type": error.type, "message": error.message or "failed", "traceback": error.traceback},
            attempts=record.attempts,
            died_ms=record.finished_ms,
            args=args,
            kwargs=kwargs,
            history=record.history,
        )

    def __repr__(self) -> str:
        return f"<DeadLetter {self.id} {self.name or '?'} queue={self.queue} reason={self.reason!r}>"


def dead_letters(
    producer: Producer, inspection: Inspection, queues: Sequence[str], limit: int = 1000
) -> list[DeadLetter]:
    """The dead letters of ``queues``, in the index's order, at most ``limit`` per queue."""
    out: list[DeadLetter] = []
    for queue in queues:
        ids = inspection.dead_ids(queue, limit)
        records = producer.get_tasks(ids, history=True) if ids else []
        expired = [task_id for task_id, record in zip(ids, records, strict=True) if record is None]
        inspection.forget_dead(queue, expired)
        out += [DeadLetter.from_record(r) for r in records if r is not None]
    return out


def requeue_dead(
    producer: Producer, inspection: Inspection, queues: Sequence[str], task_id: str | None = None
) -> int:
    """Put one dead task (``task_id``) or every dead task of ``queues`` back, attempts reset."""
    if task_id is not None:
        record = producer.get_task(task_id)
        if record is None or record.status != "DEAD":
            raise TaskNotFound(f"task {task_id} is not in the dead-letter queue")
        return inspection.requeue_dead(record.queue, task_id)
    return sum(inspection.requeue_dead(queue) for queue in queues)


__all__ = ["DeadLetter", "dead_letters", "requeue_dead"]
