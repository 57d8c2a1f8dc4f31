"""Lifecycle hooks: the one extension seam (DESIGN 9).

``q.on("task_failed", fn)`` registers ``fn``; it is called with one
``TaskEvent`` in the thread where the event happens (the caller's thread for
``task_enqueued``, the task's worker thread for the task events, the pool's
thread for ``worker_started`` / ``worker_stopped``). A hook that raises is
logged and never breaks the task, the worker or the caller.

With no hook registered the hot path does no extra work: callers test
``hooks.wants(event)`` (a set lookup) before they build an event, so the
cost of the seam is paid only by those who use it. Output capture, the
worker's log lines and tracing are built on this seam.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar, overload

log = logging.getLogger("taskqueue.hooks")

EVENTS = (
    "task_enqueued",
    "task_started",
    "task_succeeded",
    "task_failed",
    "task_retrying",
    "task_dead",
    "task_cancelled",
    "worker_started",
    "worker_stopped",
)


# Not frozen: the worker builds two per attempt when a hook listens (output capture does,
# by default), and a frozen dataclass takes three times as long to build.
@dataclass(slots=True)
class TaskEvent:
    """What happened, to which task, where.

    ``attempt`` counts from 1; ``duration`` is the attempt's run time in
    seconds (None before it ran); ``error`` is the exception of a failed
    attempt; ``worker_id`` is the worker process ("" for ``task_enqueued``).
    ``extra`` carries what one event has and others lack (the envelope's
    headers for ``task_enqueued`` / ``task_started``, a retry's delay).
    """

    event: str
    task_id: str = ""
    task_name: str = ""
    queue: str = ""
    attempt: int = 0
    duration: float | None = None
    error: BaseException | None = None
    worker_id: str = ""
    extra: dict[str, Any] | None = None


Hook = Callable[[TaskEvent], object]
H = TypeVar("H", bound=Hook)


def check_event(event: object) -> str:
    """The event name, or a ValueError that lists the events there are."""
    if not isinstance(event, str) or event not in EVENTS:
        raise ValueError(f"unknown hook event {event!r}; the events are: {', '.join(EVENTS)}")
    return event


class Hooks:
    """The hooks of one queue: registration and dispatch.

    Registration copies the list it changes, so dispatch reads a list that
    never changes under it and needs no lock.
    """

    def __init__(self) -> None:
        self._hooks: dict[str, tuple[Hook, ...]] = {}
        self._lock = threading.Lock()

    @overload
    def on(self, event: str) -> Callable[[H], H]: ...
    @overload
    def on(self, event: str, fn: H) -> H: ...
    def on(self, event: str, fn: H | None = None) -> H | Callable[[H], H]:
        """Register ``fn`` for ``event``; without ``fn``, a decorator that does."""
        check_event(event)
        if fn is None:
            return lambda f: self.on(event, f)
        if not callable(fn):
            raise TypeError(f"a hook must be callable, got {fn!r}")
        with self._lock:
            self._hooks[event] = (*self._hooks.get(event, ()), fn)
        return fn

    def off(self, event: str, fn: Hook) -> bool:
        """Unregister ``fn`` from ``event``; False when it was not registered."""
        check_event(event)
        with self._lock:
            current = self._hooks.get(event, ())
            if fn not in current:
                return False
            kept = list(current)
            kept.remove(fn)
            if kept:
                self._hooks[event] = tuple(kept)
            else:
                del self._hooks[event]
            return True

    def wants(self, event: str) -> bool:
        """True when a hook is registered for ``event``: build the event only then."""
        return event in self._hooks

    def emit(self, event: TaskEvent) -> None:
        """Call every hook of ``event.event``; a hook that raises is logged, the others still run."""
        for fn in self._hooks.get(event.event, ()):
            try:
                fn(event)
            except Exception:
                log.exception("hook %r for %s raised; the task and the worker go on", fn, event.event)

    def __bool__(self) -> bool:
        return bool(self._hooks)

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}: {len(fns)}" for name, fns in self._hooks.items())
        return f"<Hooks {counts or 'none'}>"


__all__ = ["EVENTS", "Hook", "Hooks", "TaskEvent", "check_event"]
