"""``TaskHandle``: a task id plus the ways to ask about it, from any process.

A handle needs only the producer port (read the record, wait for its done
signal, cancel), so one can be built anywhere a ``Producer`` is at hand.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from taskqueue import display
from taskqueue.capture import as_text
from taskqueue.dead_letters import DeadLetter
from taskqueue.errors import TaskNotFound
from taskqueue.outcome import error_of, missing, result_of
from taskqueue.progress import Progress, decode
from taskqueue.status import TaskStatus

if TYPE_CHECKING:
    from taskqueue.broker import TaskRecord
    from taskqueue.broker.ports import Producer

#: A task not settled after this long is looked at again, so an hour-long wait still wakes.
_LONGEST_WAIT = 3600.0


class TaskHandle:
    def __init__(
        self, producer: Producer, task_id: str, name: str = "", *, deduplicated: bool = False
    ) -> None:
        self.producer = producer
        self.id = task_id
        self.name = name
        #: True when this call joined an existing task (unique_for, debounce) instead of sending one.
        self.deduplicated = deduplicated

    def __repr__(self) -> str:
        label = f" {self.name}" if self.name else ""
        return f"<TaskHandle {self.id}{label}>"

    def _repr_html_(self) -> str:
        return display.handle_html(self.producer, self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, TaskHandle) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def record(self, history: bool = False) -> TaskRecord:
        record = self.producer.get_task(self.id, history=history)
        if record is None:
            raise missing(self.id)
        return record

    @property
    def status(self) -> TaskStatus:
        return TaskStatus(self.record().status)

    @property
    def attempts(self) -> int:
        return self.record().attempts

    @property
    def progress(self) -> Progress | None:
        """What the task last reported with ``current_task().progress`` (None: nothing yet)."""
        return decode(self.record().progress)

    @property
    def history(self) -> list[dict[str, Any]]:
        """One entry per failed attempt or lost lease: type, message, traceback, times."""
        return self.record(history=True).history

    @property
    def logs(self) -> str:
        """What the task printed (stdout, stderr) and logged, over all its attempts, with the
        traceback of each failed attempt; '' when it wrote nothing. Lines are stored when an
        attempt ends, so a running attempt's output shows up once it finishes."""
        return as_text(self.producer.task_logs(self.id))

    @property
    def dependencies(self) -> list[str]:
        """The ids of the tasks this one waited (or waits) for (workflows, ``depends_on``)."""
        return self.record().dependencies

    @property
    def dependents(self) -> list[str]:
        """The ids of the tasks that wait (or waited) for this one."""
        from taskqueue.broker.ports import Dependencies

        return self.producer.dependents(self.id) if isinstance(self.producer, Dependencies) else []

    def cancel(self) -> bool:
        """Pending or scheduled: it will never run (True). Running: asks it to stop (False)."""
        previous = self.producer.cancel(self.id)
        if previous is None:
            raise TaskNotFound(f"task {self.id} is not in Redis")
        return previous in ("PENDING", "SCHEDULED", "RETRYING")

    def result(self, timeout: float | None = None) -> Any:
        """Wait for the outcome: the value, or TaskFailed; TimeoutError after ``timeout`` s."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            record = self.producer.watch(self.id)
            if record is None:
                raise missing(self.id)
            if record.final:
                if record.status == "SUCCEEDED":
                    return result_of(record)
                raise error_of(record)
            remaining = _LONGEST_WAIT if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"task {self.id} is still {record.status} after {timeout:g} s")
            self.producer.wait_done(self.id, remaining)


# Also importable from here, where they used to live.
__all__ = ["DeadLetter", "TaskHandle", "error_of"]
