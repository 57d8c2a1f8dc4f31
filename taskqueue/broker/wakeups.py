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

from taskqueue.broker.core import RedisCore
from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.broker.records import text
from taskqueue.broker.task_registry import TaskSet

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


class RedisWakeups(RedisCore):
    """The wake-ups and control messages of ``WorkerLink``: idle threads block on their
    queues' wake lists (through a ``WakeRelay`` on a cluster), a worker process hears of
    cancellations on its control list."""

    def wait_for_work(
        self, queues: Sequence[str], worker_id: str, timeout: float, taskset: TaskSet | None = None
    ) -> bool:
        """Block until a queue's wake list, the task set's or this worker's own has a token.

        On a cluster through a ``WakeRelay`` (one per worker, queues and task set), since
        one BLPOP cannot span slot groups.
        """
        groups = []
        for k, members in self.keys.groups(queues):
            keys = [k.wake(q) for q in members]
            if taskset is not None:
                keys.append(k.wake_taskset(taskset.digest))
            groups.append([*keys, k.wake_scheduler])
        own = self.keys.namespace_wide.wake_worker(worker_id)
        if not self.keys.cluster:
            (keys,) = groups or [[]]
            return self.client.blpop([*keys, own], timeout=max(0.01, timeout)) is not None
        which = (worker_id, tuple(queues), taskset.digest if taskset else "")
        with self._where_lock:
            relay = self._relays.get(which)
            if relay is None:
                block = self.settings.workers.idle_poll_seconds
                relay = self._relays[which] = WakeRelay(self.client, [*groups, [own]], block)
        return relay.wait(timeout)

    def wait_control(self, worker_id: str, timeout: float) -> list[str]:
        """Block up to timeout for control messages to this worker; return them all."""
        key = self.keys.control(worker_id)
        first = self.client.blpop([key], timeout=max(0.01, timeout))
        if first is None:
            return []
        pipe = self.client.pipeline(transaction=True)
        pipe.lrange(key, 0, -1)
        pipe.delete(key)
        rest = pipe.execute()[0]
        return [text(m) for m in [first[1], *rest] if m]

    def send_control(self, worker_id: str, message: str = "") -> None:
        key = self.keys.control(worker_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(key, message)
        pipe.pexpire(key, 60000)
        pipe.execute()

    def wake_workers(self, worker_id: str, count: int) -> None:
        key = self.keys.wake_worker(worker_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.rpush(key, *(["1"] * max(1, count)))
        pipe.expire(key, 60)
        pipe.execute()


__all__ = ["RedisWakeups", "WakeRelay"]
