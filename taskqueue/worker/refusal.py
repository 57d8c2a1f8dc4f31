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
    from taskqueue.broker.diagnosis import WrongType
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
        called = list(queues) if queues is not None else served
        if "WRONGTYPE" in str(exc):
            stops = self._wrong_type_stops(exc, served, called)
        else:  # the connection, the user or the server: the same for every queue
            stops = dict.fromkeys(served, advice)
        self._stop(stops)
        return True

    def _wrong_type_stops(self, exc: BaseException, served: list[str], called: list[str]) -> dict[str, str]:
        """Which queues a WRONGTYPE stops, each with the advice naming its key."""
        looked = list(dict.fromkeys([*served, *called, *self.refused]))
        try:
            found = self._shared.link.wrong_types(looked)
        except REDIS_ERRORS as lookup:
            log.warning("could not look up which key holds the wrong type: %s", lookup)
            found = []

        def why(wrong: WrongType) -> str:
            advice = unfixable(exc, key=wrong.key) or ""
            return f"{advice} (it is a {wrong.found}, not a {wrong.expected})"

        shared_key = next((w for w in found if w.queue is None), None)
        if shared_key is not None:  # a key of the whole namespace: no queue can be served
            return dict.fromkeys(served, why(shared_key))
        stops: dict[str, str] = {}
        for wrong in found:
            if wrong.queue in served and wrong.queue in called:
                stops.setdefault(wrong.queue, why(wrong))
        if stops:
            return stops
        if any(w.queue in self.refused and w.queue in called for w in found):
            return {}  # a call that still had a queue stopped meanwhile (another thread's)
        # Not one of the keys looked at (a task's own key, say), or a key of a queue the call
        # did not name (tasks due for it moved there): the queues of the call cannot be served.
        reason = unfixable(exc) or ""
        if found:
            reason = f"{why(found[0])}; it fails calls for other queues too"
        return dict.fromkeys([q for q in called if q in served] or served, reason)

    def _stop(self, stops: dict[str, str]) -> None:
        shared = self._shared
        with self._lock:
            new = {q: why for q, why in stops.items() if q in shared.queues}
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
