"""The worker's side of the hooks (DESIGN 9): the events of one attempt.

Every attempt that starts emits ``task_started`` in the task's thread, then
exactly one ending event: ``task_succeeded``, ``task_failed`` or
``task_cancelled``, in the thread that decided the outcome (the task's
own, or the watchdog's for a timeout or a lost lease, since the task's thread
may be stuck). A failure is followed by ``task_retrying`` or ``task_dead``
once its consequence is stored. Rejected deliveries (bad payload, unknown
task, bad arguments) never start: they emit ``task_failed`` then ``task_dead``.

The ending events fire *before* the outcome is stored, so their hooks can
add to what is stored with it: ``event.extra["logs"]`` is a list of log
lines (in ``taskqueue.capture``'s stored form: a kind letter, then the text)
that the worker writes with the outcome (``handle.logs``). Output capture
fills it; nothing else in the worker knows about capture.

With no hook for an event, nothing is built: every emit checks
``hooks.wants`` first.
"""

from __future__ import annotations

import time
from typing import Any

from taskqueue.hooks import Hooks, TaskEvent
from taskqueue.worker.state import Attempt

#: The events that end an attempt (one of them per started attempt).
ENDINGS = ("task_succeeded", "task_failed", "task_cancelled")


class AttemptEvents:
    """Emits the events of attempts for one worker process."""

    __slots__ = ("hooks", "worker_id")

    def __init__(self, hooks: Hooks, worker_id: str) -> None:
        self.hooks = hooks
        self.worker_id = worker_id

    # The two events of every attempt are built inline: they are on the hot path
    # whenever a hook (output capture, by default) listens.
    def started(self, attempt: Attempt, options: dict[str, Any]) -> None:
        """``task_started``, with the envelope's headers (a producer's hooks put them there)."""
        if self.hooks.wants("task_started"):
            d = attempt.delivery
            extra = {"headers": _headers(options)}
            self.hooks.emit(
                TaskEvent(
                    "task_started",
                    d.id,
                    attempt.task_name,
                    d.queue,
                    d.attempt,
                    None,
                    None,
                    self.worker_id,
                    extra,
                )
            )

    def ended(
        self, event: str, attempt: Attempt, error: BaseException | None = None, **extra: Any
    ) -> list[str]:
        """An ending event; returns the log lines its hooks added, to store with the outcome."""
        if not self.hooks.wants(event):
            return []
        logs: list[str] = []
        d = attempt.delivery
        duration = time.monotonic() - attempt.started if attempt.started else None
        extra["logs"] = logs
        self.hooks.emit(
            TaskEvent(
                event, d.id, attempt.task_name, d.queue, d.attempt, duration, error, self.worker_id, extra
            )
        )
        return logs

    def followed(
        self, event: str, attempt: Attempt, error: BaseException | None = None, **extra: Any
    ) -> None:
        """``task_retrying`` or ``task_dead``: what the stored failure leads to."""
        if self.hooks.wants(event):
            self.hooks.emit(self._event(event, attempt, attempt.duration(), error, extra or None))

    def worker(self, event: str, **extra: Any) -> None:
        """``worker_started`` / ``worker_stopped``, in the thread that starts or stops the pool."""
        if self.hooks.wants(event):
            self.hooks.emit(TaskEvent(event, worker_id=self.worker_id, extra=extra or None))

    def _event(
        self,
        event: str,
        attempt: Attempt,
        duration: float | None,
        error: BaseException | None,
        extra: dict[str, Any] | None,
    ) -> TaskEvent:
        delivery = attempt.delivery
        return TaskEvent(
            event,
            delivery.id,
            attempt.task_name,
            delivery.queue,
            delivery.attempt,
            duration,
            error,
            self.worker_id,
            extra,
        )


def _headers(options: dict[str, Any]) -> dict[str, str]:
    """The envelope's headers (str -> str, e.g. a trace context); {} when absent or malformed."""
    headers = options.get("headers")
    if not isinstance(headers, dict):
        return {}
    return {k: v for k, v in headers.items() if isinstance(k, str) and isinstance(v, str)}


__all__ = ["ENDINGS", "AttemptEvents"]
