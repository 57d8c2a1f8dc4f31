"""The worker's line per attempt, written by hooks the pool registers.

Each line names the task, its id, the attempt and how long it ran::

    task shop.resize 4c59f7e0... attempt 1 failed after 0.120 s, retry in 0.50 s: ConnectionError: reset
    task shop.resize 4c59f7e0... attempt 4 dead after 0.118 s: retries exhausted after 4 attempt(s): ...
    task shop.resize 4c59f7e0... attempt 1 succeeded in 0.004 s

Levels: a success is DEBUG (written when DEBUG is on for the logger as the
workers start, so that the success of a task costs nothing more otherwise);
a failed attempt that will be retried is INFO
(the retry is the normal course of things); a final failure (dead, failed,
a lost lease) is WARNING; a cancellation is INFO. The logger is
``taskqueue.worker``.

Failure lines are written while the task's output is captured (see
``taskqueue.capture``), so the line is kept with the task (``handle.logs``)
and reaches the application's log handlers, but is not printed into
whichever notebook cell or terminal happens to be active.
"""

from __future__ import annotations

import logging

from taskqueue.hooks import TaskEvent

log = logging.getLogger("taskqueue.worker")


def _subject(event: TaskEvent) -> str:
    return f"task {event.task_name or '?'} {event.task_id} attempt {event.attempt}"


def _ran(event: TaskEvent, word: str = "after") -> str:
    return f"{word} {event.duration:.3f} s" if event.duration is not None else "before it ran"


class TaskLog:
    """Hooks that log one line per attempt (see the module docstring)."""

    def succeeded(self, event: TaskEvent) -> None:
        if log.isEnabledFor(logging.DEBUG):  # it may have been turned down since
            log.debug("%s succeeded %s", _subject(event), _ran(event, "in"))

    def failed(self, event: TaskEvent) -> None:
        extra = event.extra or {}
        outcome = extra.get("outcome", "failed")
        reason = extra.get("reason") or f"{type(event.error).__name__}: {event.error}"
        if outcome == "retry":
            log.info(
                "%s failed %s, retry in %.2f s: %s",
                _subject(event),
                _ran(event),
                extra.get("delay", 0.0),
                reason,
            )
        elif outcome == "lease-lost":
            log.warning(
                "%s lost its lease (%s) %s; it is stopped here, and runs again elsewhere "
                "once the lease expires",
                _subject(event),
                reason,
                _ran(event),
            )
        else:  # "dead" or "failed"
            log.warning("%s %s %s: %s", _subject(event), outcome, _ran(event), reason)

    def cancelled(self, event: TaskEvent) -> None:
        reason = (event.extra or {}).get("reason") or "cancelled"
        log.info("%s cancelled %s: %s", _subject(event), _ran(event), reason)


__all__ = ["TaskLog"]
