"""``current_task()``: what a running task can know about itself.

Python threads cannot be killed, so cancellation and timeouts are also
offered cooperatively: a long task can look at ``current_task().cancelled``
or call ``current_task().check()`` between steps and stop cleanly.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from taskqueue.errors import TaskCancelled, TaskTimeout

_local = threading.local()


@dataclass
class TaskContext:
    id: str
    name: str
    queue: str
    attempt: int
    timeout_seconds: float
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False)
    #: Why the task was asked to stop: "timeout", "cancelled" or "lease-lost".
    cancel_reason: str = ""

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def cancel(self, reason: str) -> None:
        if not self._cancelled.is_set():
            self.cancel_reason = reason
            self._cancelled.set()

    def check(self) -> None:
        """Raise if the task should stop (timed out, cancelled, or its lease was lost)."""
        if not self._cancelled.is_set():
            return
        if self.cancel_reason == "timeout":
            raise TaskTimeout(self.id, self.timeout_seconds)
        raise TaskCancelled(f"task {self.id} should stop: {self.cancel_reason}")

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when cancelled; True when cancelled."""
        return self._cancelled.wait(seconds)


def current_task() -> TaskContext:
    """The context of the task running in this thread; RuntimeError outside a task."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        raise RuntimeError("current_task() is only available inside a running task")
    return ctx


def _set(ctx: TaskContext | None) -> None:
    _local.ctx = ctx
