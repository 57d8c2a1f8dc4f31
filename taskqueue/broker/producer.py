"""The producer port over Redis: enqueue, cancel, and read tasks back.

Every call retries transient connection errors (``producer_call``) and then
raises ``BrokerError``: a producer is user code, and a blip of the network
should not reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from taskqueue.broker.core import RedisCore
from taskqueue.broker.ports import Producer
from taskqueue.broker.records import EnqueueRequest, TaskRecord, pairs, text
from taskqueue.status import as_read


def _enqueue_args(requests: Sequence[EnqueueRequest]) -> list[Any]:
    """ARGV of ``enqueue.lua``: nine fields per request."""
    args: list[Any] = []
    for req in requests:
        args += [
            req.id,
            req.payload,
            req.queue,
            req.name,
            req.max_retries,
            req.signature,
            req.delay_ms,
            req.eta_ms,
            req.nonce,
        ]
    return args


class RedisProducer(RedisCore, Producer):
    """``Producer`` on Redis: each write is one script call, each read one pipeline."""

    def enqueue(self, requests: Sequence[EnqueueRequest]) -> list[bool]:
        """Write tasks with one script call: one round trip, and all of them or none."""
        if not requests:
            return []
        k = self.keys
        keys = [k.task_prefix, k.queue_prefix, k.wake_prefix, k.scheduled, k.wake_scheduler, k.stats_prefix]
        args = _enqueue_args(requests)
        results = self.producer_call(
            f"enqueueing {len(requests)} task(s)", lambda: self._run("enqueue", keys, args)
        )
        return [bool(r) for r in results]

    def cancel(self, task_id: str) -> str | None:
        """Cancel one task; its previous status (None: no such task)."""
        return self.cancel_many([task_id])[0]

    def cancel_many(self, task_ids: Sequence[str]) -> list[str | None]:
        """``cancel`` for many tasks in one round trip; each one's previous status."""
        if not task_ids:
            return []
        k = self.keys
        ttl = int(self.settings.tasks.result_ttl * 1000)

        def build(pipe: Any) -> None:
            for task_id in task_ids:
                self.scripts.queue(
                    pipe,
                    "cancel",
                    [
                        k.task(task_id),
                        k.queue_prefix,
                        k.scheduled,
                        k.done(task_id),
                        k.history(task_id),
                        k.control_prefix,
                        k.unserved,
                    ],
                    [task_id, ttl],
                )

        doing = (
            f"cancelling task {task_ids[0]}" if len(task_ids) == 1 else f"cancelling {len(task_ids)} tasks"
        )
        replies = self.producer_call(doing, lambda: self._pipeline(build))
        return [text(r) if r else None for r in replies]

    def get_task(self, task_id: str, *, history: bool = False) -> TaskRecord | None:
        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(self.keys.task(task_id))
            if history:
                pipe.lrange(self.keys.history(task_id), 0, -1)
            return pipe.execute()

        replies = self.producer_call(f"reading task {task_id}", read)
        return TaskRecord.from_hash(task_id, replies[0], replies[1] if history else None)

    def get_tasks(self, task_ids: Sequence[str], *, history: bool = False) -> list[TaskRecord | None]:
        """Many task records in one round trip, in the order of ``task_ids``."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.hgetall(self.keys.task(task_id))
                if history:
                    pipe.lrange(self.keys.history(task_id), 0, -1)
            return pipe.execute()

        replies = self.producer_call(f"reading {len(task_ids)} tasks", read)
        step = 2 if history else 1
        return [
            TaskRecord.from_hash(t, replies[i * step], replies[i * step + 1] if history else None)
            for i, t in enumerate(task_ids)
        ]

    def task_statuses(self, task_ids: Sequence[str]) -> list[str]:
        """The status of many tasks in one round trip ('' for a task Redis no longer has)."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for task_id in task_ids:
                pipe.hget(self.keys.task(task_id), "status")
            return pipe.execute()

        return [as_read(text(s)) for s in self.producer_call(f"reading {len(task_ids)} statuses", read)]

    def task_logs(self, task_id: str) -> list[str]:
        """The stored output lines of a task (each with its kind letter, see ``taskqueue.capture``)."""
        lines = self.producer_call(
            f"reading the logs of task {task_id}", lambda: self.client.lrange(self.keys.logs(task_id), 0, -1)
        )
        return [text(line) for line in lines]

    def watch(self, task_id: str) -> TaskRecord | None:
        """Read a task and note that somebody waits for it (so its end is signalled)."""
        flat = self.producer_call(
            f"reading task {task_id}", lambda: self._run("watch", [self.keys.task(task_id)], [])
        )
        return TaskRecord.from_hash(task_id, pairs(flat))

    def wait_done(self, task_id: str, timeout: float) -> bool:
        """Block until the task's done list has an element, or timeout; no polling.

        Moving the list's element onto the same list leaves it in place, so any
        number of waiters (in any process) see the same signal. BRPOPLPUSH, not
        its newer spelling BLMOVE RIGHT LEFT: the same command to Redis, and the
        one of the two that blocks on the in-process server of ``memory://``
        (fakeredis answers BLMOVE on an empty list at once, so every ``result()``
        would spin).
        """
        key = self.keys.done(task_id)
        # Keep each blocking call under the socket timeout.
        step = max(0.01, min(timeout, self.settings.redis.command_timeout * 0.8))
        return bool(
            self.producer_call(
                f"waiting for task {task_id}",
                lambda: self.client.brpoplpush(key, key, step),
            )
        )


__all__ = ["RedisProducer"]
