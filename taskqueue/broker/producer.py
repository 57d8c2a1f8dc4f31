"""The producer port over Redis: enqueue, cancel, and read tasks back.

Every call retries transient connection errors (``producer_call``) and then
raises ``BrokerError``: a producer is user code, and a blip of the network
should not reach it.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cached_property
from typing import Any

from taskqueue.broker.core import RedisCore
from taskqueue.broker.group_commit import GroupCommit
from taskqueue.broker.keys import Keys
from taskqueue.broker.lane import Lane, lane_for
from taskqueue.broker.ports import Producer
from taskqueue.broker.records import EnqueueRequest, TaskRecord, pairs, text
from taskqueue.status import as_read


def enqueue_keys(k: Keys) -> list[str]:
    """KEYS of ``enqueue.lua`` for one slot group (``workflow.lua`` passes the same first)."""
    return [
        k.task_prefix,
        k.queue_prefix,
        k.wake_prefix,
        k.scheduled,
        k.wake_scheduler,
        k.stats_prefix,
        k.limit_prefix,
        k.limits_index,
    ]


def enqueue_args(requests: Sequence[EnqueueRequest]) -> list[Any]:
    """ARGV of ``enqueue.lua``: eleven fields per request."""
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
            req.limit,
            req.dedup,
        ]
    return args


class RedisProducer(RedisCore, Producer):
    """``Producer`` on Redis: each write is one script call, each read one pipeline."""

    def enqueue(self, requests: Sequence[EnqueueRequest]) -> list[bool | str]:
        """Write tasks with one script call per slot group, pipelined: one round trip.

        On a single server that is one script call, so all of them or none; on a
        cluster, all or none per queue (each queue is its own slot group). A unique or
        debounced request that joined an existing task answers that task's id. Calls made
        at the same moment by several threads share one round trip (``group_commit``).
        """
        if not requests:
            return []
        return self._group_commit.submit(requests)

    @cached_property
    def _group_commit(self) -> GroupCommit[EnqueueRequest, bool | str]:
        return GroupCommit(self._enqueue_now)

    @cached_property
    def _enqueue_keys(self) -> list[str]:
        return enqueue_keys(self.keys)

    @cached_property
    def _lane(self) -> Lane | None:
        """The connection enqueues are sent on (group commit: one writer at a time)."""
        return lane_for(self.client)

    def _enqueue_now(self, requests: Sequence[EnqueueRequest]) -> list[bool | str]:
        if not self.keys.cluster:  # one slot group: one script call on the lane
            keys, args, lane = self._enqueue_keys, enqueue_args(requests), self._lane
            send = lane.call if lane is not None else None
            reply = self.producer_call(
                f"enqueueing {len(requests)} task(s)", lambda: self.run_durable("enqueue", keys, args, send)
            )
            return [text(r) if isinstance(r, bytes) else bool(r) for r in reply]
        by_group: dict[Keys, list[int]] = {}
        for i, req in enumerate(requests):
            by_group.setdefault(self.keys.for_queue(req.queue), []).append(i)
            self.remember(req.id, req.queue)

        calls = [
            (enqueue_keys(k), enqueue_args([requests[i] for i in members])) for k, members in by_group.items()
        ]
        doing = f"enqueueing {len(requests)} task(s)"
        if len(calls) == 1:  # one slot group: one script call
            keys, args = calls[0]
            replies = [self.producer_call(doing, lambda: self.run_durable("enqueue", keys, args))]
        else:

            def build(pipe: Any) -> None:
                for keys, args in calls:
                    self.scripts.queue(pipe, "enqueue", keys, args)

            durable = [keys[0] for keys, _ in calls]
            replies = self.producer_call(doing, lambda: self._pipeline(build, durable=durable))
        results: list[bool | str] = [False] * len(requests)
        for members, reply in zip(by_group.values(), replies, strict=True):
            for i, r in zip(members, reply, strict=True):
                results[i] = text(r) if isinstance(r, bytes) else bool(r)
        return results

    def cancel(self, task_id: str) -> str | None:
        """Cancel one task; its previous status (None: no such task)."""
        return self.cancel_many([task_id])[0]

    def cancel_many(self, task_ids: Sequence[str]) -> list[str | None]:
        """``cancel`` for many tasks in one round trip; each one's previous status."""
        if not task_ids:
            return []
        ttl = int(self.settings.tasks.result_ttl * 1000)
        doing = (
            f"cancelling task {task_ids[0]}" if len(task_ids) == 1 else f"cancelling {len(task_ids)} tasks"
        )
        groups = self.producer_call(doing, lambda: self.groups_of(task_ids))
        # The worker holding a running task hears of it on its control list, which is
        # namespace-wide: on a cluster the script names the worker and we tell it here.
        tell = "0" if self.keys.cluster else "1"

        def build(pipe: Any) -> None:
            for task_id, k in zip(task_ids, groups, strict=True):
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
                        *k.workflow_keys,  # last, as every script that may settle a task takes them
                    ],
                    [task_id, ttl, tell],
                )

        replies = self.producer_call(doing, lambda: self._pipeline(build))
        if self.keys.cluster:  # workflows: dependents in other groups hear of it
            self.producer_call(doing, lambda: self._relay_groups(list(dict.fromkeys(groups))))
        for task_id, (_, worker) in zip(task_ids, replies, strict=True):
            if worker:
                self._tell_worker(text(worker), task_id)
        return [text(status) if status else None for status, _ in replies]

    def _tell_worker(self, worker_id: str, task_id: str) -> None:
        key = self.keys.control(worker_id)

        def send() -> None:
            pipe = self.client.pipeline(transaction=False)
            pipe.rpush(key, task_id)
            pipe.pexpire(key, 60000)
            pipe.execute()

        self.producer_call(f"asking worker {worker_id} to cancel task {task_id}", send)

    def get_task(self, task_id: str, *, history: bool = False) -> TaskRecord | None:
        def read() -> list[Any]:
            (k,) = self.groups_of([task_id])
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(k.task(task_id))
            if history:
                pipe.lrange(k.history(task_id), 0, -1)
            return pipe.execute()

        replies = self.producer_call(f"reading task {task_id}", read)
        return TaskRecord.from_hash(task_id, replies[0], replies[1] if history else None)

    def get_tasks(self, task_ids: Sequence[str], *, history: bool = False) -> list[TaskRecord | None]:
        """Many task records in one round trip, in the order of ``task_ids``."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for task_id, k in zip(task_ids, self.groups_of(task_ids), strict=True):
                pipe.hgetall(k.task(task_id))
                if history:
                    pipe.lrange(k.history(task_id), 0, -1)
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
            for task_id, k in zip(task_ids, self.groups_of(task_ids), strict=True):
                pipe.hget(k.task(task_id), "status")
            return pipe.execute()

        return [as_read(text(s)) for s in self.producer_call(f"reading {len(task_ids)} statuses", read)]

    def task_logs(self, task_id: str) -> list[str]:
        """The stored output lines of a task (each with its kind letter, see ``taskqueue.capture``)."""
        lines = self.producer_call(
            f"reading the logs of task {task_id}",
            lambda: self.client.lrange(self.groups_of([task_id])[0].logs(task_id), 0, -1),
        )
        return [text(line) for line in lines]

    def watch(self, task_id: str) -> TaskRecord | None:
        """Read a task and note that somebody waits for it (so its end is signalled)."""
        flat = self.producer_call(
            f"reading task {task_id}",
            lambda: self._run("watch", [self.groups_of([task_id])[0].task(task_id)], []),
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
        (k,) = self.producer_call(f"finding task {task_id}", lambda: self.groups_of([task_id]))
        key = k.done(task_id)
        # Keep each blocking call under the socket timeout.
        step = max(0.01, min(timeout, self.settings.redis.command_timeout * 0.8))
        return bool(
            self.producer_call(
                f"waiting for task {task_id}",
                lambda: self.client.brpoplpush(key, key, step),
            )
        )


__all__ = ["RedisProducer", "enqueue_args", "enqueue_keys"]
