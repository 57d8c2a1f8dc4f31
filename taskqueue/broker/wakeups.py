"""Wake-ups on a Redis Cluster: idle threads waiting on the wake lists of many slot groups.

On a single server an idle worker thread blocks with one BLPOP on the wake
lists of all its queues at once. On a cluster a BLPOP may only name keys of
one slot, and each queue is a slot group of its own. So each process runs
one relay thread per slot group; it blocks there, on its own connection,
only while some thread of the process is idle, and hands each token it pops
to one idle thread. A token that finds no idle thread (they all got busy
meanwhile) goes back to its list, for an idle thread of another process.
Nothing polls: a relay blocks ``block_seconds`` at a time (like a single
server's idle thread), and stops when no thread has waited for a while.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

from taskqueue.broker.errors import REDIS_ERRORS

log = logging.getLogger("taskqueue.broker")

#: Seconds a relay keeps blocking after the last idle thread of its process stopped waiting.
_LINGER = 10.0


class WakeRelay:
    """Tokens from the wake lists of several slot groups, handed to idle threads."""

    def __init__(self, client: Any, groups: Sequence[Sequence[str]], block_seconds: float) -> None:
        self._client = client
        self._groups = [list(keys) for keys in groups]
        self._block = max(0.1, block_seconds)
        self._cond = threading.Condition()
        self._waiters = 0
        self._tokens = 0
        self._listening: set[int] = set()

    def wait(self, timeout: float) -> bool:
        """Block until a token arrives for this process (True) or ``timeout`` passes."""
        with self._cond:
            self._waiters += 1
            self._start_listeners()
            try:
                if not self._cond.wait_for(lambda: self._tokens > 0, max(0.01, timeout)):
                    return False
                self._tokens -= 1
                return True
            finally:
                self._waiters -= 1

    def _start_listeners(self) -> None:
        for index in range(len(self._groups)):
            if index not in self._listening:
                self._listening.add(index)
                threading.Thread(
                    target=self._listen, args=(index,), name=f"taskqueue-wake-{index}", daemon=True
                ).start()

    def _listen(self, index: int) -> None:
        keys = self._groups[index]
        try:
            while True:
                with self._cond:
                    if not self._cond.wait_for(lambda: self._waiters > 0, _LINGER):
                        return
                try:
                    got = self._client.blpop(keys, timeout=self._block)
                except REDIS_ERRORS as exc:
                    # The waiting threads time out and report the outage themselves.
                    log.debug("wake-up relay for %s: %s", keys[0], exc)
                    with self._cond:
                        self._cond.wait(min(1.0, self._block))
                    continue
                if got is None:
                    continue
                with self._cond:
                    handed = self._waiters > self._tokens
                    if handed:
                        self._tokens += 1
                        self._cond.notify()
                if not handed:
                    self._give_back(got)
        finally:
            with self._cond:
                self._listening.discard(index)

    def _give_back(self, got: Any) -> None:
        key, token = got
        try:
            self._client.rpush(key, token)
        except REDIS_ERRORS as exc:
            log.debug("wake-up relay could not give a token back to %s: %s", key, exc)


__all__ = ["WakeRelay"]
