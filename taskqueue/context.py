"""``current_task()``: what a running task can know about itself.

Python threads cannot be killed, so cancellation and timeouts are also
offered cooperatively: a long task can look at ``current_task().cancelled``
or call ``current_task().check()`` between steps and stop cleanly.

``wait(seconds)`` is the sleep of such a loop: it returns True as soon as the
task is asked to stop (cancelled, timed out, or its lease lost) and False
when the time ran out, so the idiom is::

    ctx = current_task()
    while not ctx.wait(0.1):
        do_a_step()

A task cancelled while it runs ends CANCELLED whether it raises (``check()``)
or returns normally: a value returned after ``cancel()`` is discarded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from taskqueue.errors import TaskCancelled, TaskTimeout

_local = threading.local()


class TaskContext:
    """Made once per attempt on the hot path, so it stays small: the Event that
    ``wait()`` sleeps on is only created when a task actually waits."""

    __slots__ = (
        "_event",
        "_lock",
        "_sink",
        "attempt",
        "cancel_reason",
        "id",
        "name",
        "queue",
        "timeout_seconds",
    )

    def __init__(self, id: str, name: str, queue: str, attempt: int, timeout_seconds: float) -> None:
        self.id = id
        self.name = name
        self.queue = queue
        self.attempt = attempt
        self.timeout_seconds = timeout_seconds
        #: Why the task was asked to stop: "timeout", "cancelled" or "lease-lost".
        self.cancel_reason = ""
        self._event: threading.Event | None = None
        self._lock = _context_lock
        #: Where ``progress()`` goes (the pool's ProgressReporter); None: nowhere.
        self._sink: Callable[[Any, Any, Any], None] | None = None

    def __repr__(self) -> str:
        return f"<TaskContext {self.name} id={self.id} attempt={self.attempt} cancelled={self.cancelled}>"

    @property
    def cancelled(self) -> bool:
        return bool(self.cancel_reason)

    def cancel(self, reason: str) -> None:
        with self._lock:
            if not self.cancel_reason:
                self.cancel_reason = reason
            if self._event is not None:
                self._event.set()

    def check(self) -> None:
        """Raise if the task should stop (timed out, cancelled, or its lease was lost)."""
        if not self.cancel_reason:
            return
        if self.cancel_reason == "timeout":
            raise TaskTimeout(self.id, self.timeout_seconds)
        raise TaskCancelled(f"task {self.id} should stop: {self.cancel_reason}")

    def progress(self, done: float, total: float | None = None, message: str = "") -> None:
        """Report how far the task got (``handle.progress``, q.map's bar, the monitor, the
        dashboard). Call it as often as you like: Redis sees at most a few writes a second
        per task, and the last value before the task ends is always stored."""
        from taskqueue.progress import check

        check(done, total, message)  # a bad value raises here, in the task
        if self._sink is not None:
            self._sink(done, total, message)

    def wait(self, seconds: float) -> bool:
        """Sleep up to ``seconds``, waking early when asked to stop.

        True when the task should stop (cancelled, timed out or its lease lost:
        see ``cancel_reason``), False when the time ran out."""
        with self._lock:
            if self._event is None:
                self._event = threading.Event()
                if self.cancel_reason:
                    self._event.set()
        return self._event.wait(seconds)


_context_lock = threading.Lock()


def current_task() -> TaskContext:
    """The context of the task running in this thread; RuntimeError outside a task."""
    ctx = getattr(_local, "ctx", None)
    if ctx is None:
        raise RuntimeError("current_task() is only available inside a running task")
    return ctx


def _set(ctx: TaskContext | None) -> None:
    _local.ctx = ctx
