"""Queues a worker process stops serving because Redis gave an answer no retry can fix.

A worker backs off and retries when Redis fails, which is right for a dropped
connection or a failover, and would be an endless loop for a cluster node that
redirects a client unable to follow (MOVED), a user without a permission
(NOPERM), a key of the wrong type (WRONGTYPE), an unknown command
(``taskqueue.broker.errors.unfixable`` decides). On such an answer the pool
stops serving what it concerns, says so in one log line per queue, in its
registry entry (``refused``: queue -> why; metrics and health read it) and in
``health_check()``; when nothing is left, ``exhausted`` is set and
``taskqueue worker`` exits with code 1 and the reason.

What it concerns: a WRONGTYPE reply is looked up (``WorkerLink.wrong_types``)
and stops only the queue whose key it is, or everything when the key is one of
the namespace's own (or cannot be found). Every other unfixable answer is about
the connection, the user or the server, the same for every queue: it stops all.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from taskqueue.broker.errors import REDIS_ERRORS, unfixable

if TYPE_CHECKING:
    from taskqueue.worker.state import Shared

log = logging.getLogger("taskqueue.worker")


class Refusals:
    """What one pool stopped serving, and why. ``judge`` is called with every Redis error
    its threads catch; it returns True when it stopped something (no retry needed)."""

    def __init__(self, shared: Shared) -> None:
        self._shared = shared
        self._lock = threading.Lock()
        #: queue -> why it is no longer served (log line text).
        self.refused: dict[str, str] = {}
        #: Set once no queue is left to serve.
        self.exhausted = threading.Event()
        #: Called (in the thread that judged) once nothing is left; ``taskqueue worker`` exits.
        self.listeners: list[Callable[[str], None]] = []

    @property
    def reason(self) -> str:
        """Why nothing is left to serve (the last queue's reason), "" while something is."""
        if not self.exhausted.is_set():
            return ""
        return "; ".join(dict.fromkeys(self.refused.values()))

    def judge(self, exc: BaseException, queues: Sequence[str] | None = None) -> bool:
        """Stop serving what ``exc`` makes impossible; True when it was such an answer.

        ``queues``: those of the call that failed (default: every queue still served)."""
        advice = unfixable(exc)
        if advice is None:
            return False
        served = list(self._shared.queues)
        called = [q for q in (queues if queues is not None else served) if q in served]
        stops = self._wrong_type_stops(exc, served, called) if "WRONGTYPE" in str(exc) else None
        if stops is None:
            stops = dict.fromkeys(served, advice)
        self._stop(stops, advice)
        return True

    def _wrong_type_stops(self, exc: BaseException, served: list[str], called: list[str]) -> dict[str, str]:
        """Which queues a WRONGTYPE stops, each with the advice naming its key."""
        try:
            found = self._shared.link.wrong_types(served)
        except REDIS_ERRORS as lookup:
            log.warning("could not look up which key holds the wrong type: %s", lookup)
            found = []
        shared_key = next((w for w in found if w.queue is None), None)
        if shared_key is not None:  # a key of the whole namespace: no queue can be served
            advice = unfixable(exc, key=shared_key.key) or ""
            return dict.fromkeys(
                served, f"{advice} (it is a {shared_key.found}, not a {shared_key.expected})"
            )
        stops = {}
        for wrong in found:
            if wrong.queue in served and wrong.queue not in stops:
                advice = unfixable(exc, key=wrong.key) or ""
                stops[wrong.queue] = f"{advice} (it is a {wrong.found}, not a {wrong.expected})"
        # Not one of the keys looked at (a task's own key, say): the queues of the call.
        return stops or dict.fromkeys(called or served, unfixable(exc) or "")

    def _stop(self, stops: dict[str, str], advice: str) -> None:
        shared = self._shared
        with self._lock:
            new = {q: why for q, why in stops.items() if q in shared.queues}
            if not new:  # it was traced to queues stopped already, yet it goes on: stop the rest
                new = dict.fromkeys(shared.queues, f"{advice} (again, after the queues it concerns stopped)")
            if not new:
                return
            shared.queues = [q for q in shared.queues if q not in new]
            self.refused.update(new)
            left = list(shared.queues)
        for queue, why in new.items():
            log.error("stopped serving queue %r: %s", queue, why)
        shared.republish()  # the registry says what this process no longer serves
        if not left:
            log.error("this worker process has no queue left to serve")
            self.exhausted.set()
            for listener in list(self.listeners):
                listener(self.reason)


__all__ = ["Refusals"]
