"""The state publisher: tells Redis which tasks really run, and what each thread does.

A leased task reads PENDING until its code has run for ``workers.status_delay``
seconds; then this thread marks it RUNNING (fenced by its lease token), in one
round trip for every task that crossed the delay, together with the threads'
states (busy or idle, the task each runs). A quick task therefore goes from
PENDING straight to its outcome and costs no round trip here; on a busy pool
of quick tasks the thread writes at most once per ``status_delay``, and an
idle pool blocks and writes nothing.

Why not mark every start: that is a round trip per task, ten times the worker
side's whole budget for a quick task (DESIGN 9 keeps it at 0.1).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.worker.state import Attempt, Backoff, Shared, Slot

log = logging.getLogger("taskqueue.worker")


class StatePublisher:
    """``once()`` publishes what changed; ``loop()`` is the thread that calls it."""

    def __init__(
        self, shared: Shared, slots: Callable[[], list[Slot]], describe: Callable[[], dict[str, Any]]
    ) -> None:
        self.shared = shared
        self._slots = slots
        self._describe = describe
        #: The thread states last published here; None once the heartbeat published its own.
        self._published: tuple[tuple[int, str | None], ...] | None = ()

    def once(self) -> bool:
        """Mark tasks that have run long enough, publish thread states if they changed.

        Returns True while some thread is busy (call again after ``status_delay``).
        """
        delay = self.shared.settings.workers.status_delay
        now = time.monotonic()
        running: list[Attempt] = []
        for slot in self._slots():
            attempt = slot.current
            if attempt is not None and not slot.abandoned:
                running.append(attempt)
        due = [a for a in running if not a.marked and a.started and now - a.started >= delay]
        states = tuple(sorted((a.slot.number if a.slot else 0, a.delivery.id) for a in running if a.started))
        changed = states != self._published
        if due or changed:
            marks = [(a.delivery, int((now - a.started) * 1000)) for a in due]
            self.shared.link.mark_started(marks, self.shared.worker_id, self._describe() if changed else None)
            for attempt in due:
                attempt.marked = True
            self._published = states
        return bool(running)

    def described(self) -> dict[str, Any]:
        """What the heartbeat publishes. Its thread states may be gone a moment later (a
        quick task ends), so they count as unknown here: the next look publishes the
        threads' states, instead of leaving the heartbeat's for a whole interval."""
        info = self._describe()
        self._published = None
        if any(slot.get("task_id") for slot in info.get("slots", ())):
            self.shared.activity.set()  # the publisher looks again after status_delay
        return info

    def loop(self) -> None:
        shared = self.shared
        backoff = Backoff(maximum=shared.settings.workers.heartbeat_interval)
        while not shared.stop.is_set():
            # Idle: block until a task starts (no polling); busy: look again after the delay.
            if not shared.activity.wait(shared.settings.workers.heartbeat_interval):
                continue
            shared.stop.wait(shared.settings.workers.status_delay)
            try:
                busy = self.once()
                backoff.reset()
            except REDIS_ERRORS as exc:
                shared.outage.failed(exc)
                backoff.pause(shared.stop)
                continue
            if not busy:
                shared.activity.clear()
                if any(s.current is not None for s in self._slots()):
                    shared.activity.set()  # one started between once() and clear()


__all__ = ["StatePublisher"]
