"""The worker port over Redis: leases, outcomes, heartbeats and wake-ups.

Nothing here retries: a worker-side call raises the redis error at once and
the worker loop backs off, so a worker thread never blocks inside a retry.
Outcomes are fenced by each lease's token: an answer from an attempt whose
lease was lost (and handed to another worker) is refused, never stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from taskqueue.broker.core import RedisCore
from taskqueue.broker.ports import Ack, WorkerLink
from taskqueue.broker.records import Delivery, FetchResult, text
from taskqueue.broker.task_registry import TaskSet

#: How many entries past the ones it takes a fetch reads to find tasks of its own task
#: set behind tasks it cannot run (which stay in place for a worker that can).
SCAN_WINDOW = 64


class RedisWorkerLink(RedisCore, WorkerLink):
    """``WorkerLink`` on Redis. The hot path, ``ack_and_fetch``, is one pipeline."""

    @property
    def _history_ms(self) -> int:
        """How long the per-minute history is kept (ms; 0: none), as ack.lua and fail.lua take it."""
        return int(self.settings.metrics.history_retention * 1000)

    # -- pieces of the hot path's pipeline ---------------------------------------------
    def _fetch_call(
        self, pipe: Any, worker_id: str, queues: Sequence[str], count: int, taskset: TaskSet | None
    ) -> None:
        """Queue one ``fetch.lua`` call: lease up to ``count`` tasks from ``queues``, by priority.

        With a task set, only tasks it names are leased; the others stay in place for
        a worker that serves them (see ``SCAN_WINDOW``).
        """
        k = self.keys
        dead_max, dead_ttl = self._dead
        self.scripts.queue(
            pipe,
            "fetch",
            [
                k.task_prefix,
                k.history_prefix,
                k.done_prefix,
                k.queue_prefix,
                k.wake_prefix,
                k.dead_prefix,
                k.stats_prefix,
                k.leases,
                k.scheduled,
                k.paused,
                k.metrics_prefix,
                k.taskset(taskset.digest if taskset else ""),
                k.servers_prefix,
                k.wake_taskset_prefix,
                k.unserved,
                k.parked_prefix,
            ],
            [
                worker_id,
                int(self.settings.lease_seconds * 1000),
                count,
                dead_max,
                dead_ttl,
                100,
                int(self.settings.workers.unknown_task_grace * 1000),
                SCAN_WINDOW if taskset else 0,
                *queues,
            ],
        )

    def _ack_call(self, pipe: Any, acks: Sequence[Ack]) -> None:
        """Queue one ``ack.lua`` call storing every result of the batch."""
        k = self.keys
        args: list[Any] = [int(self.settings.tasks.result_ttl * 1000), self._history_ms]
        for delivery, result, runtime_ms in acks:
            args += [delivery.id, delivery.token, delivery.queue, result, runtime_ms]
        self.scripts.queue(
            pipe,
            "ack",
            [
                k.task_prefix,
                k.history_prefix,
                k.done_prefix,
                k.stats_prefix,
                k.metrics_prefix,
                k.leases,
                k.minutes_prefix,
            ],
            args,
        )

    def _logs_call(self, pipe: Any, task_id: str, lines: Sequence[str]) -> None:
        """Append a task's captured output to its bounded list (see ``taskqueue.capture``).

        Queued before the outcome's script, so whoever wakes on the outcome finds the lines.
        The list lives as long as the task can still be looked at: its result or its dead letter.
        """
        key = self.keys.logs(task_id)
        ttl_ms = int(max(self.settings.tasks.result_ttl, self.settings.dead_letter.ttl) * 1000)
        pipe.rpush(key, *lines)
        pipe.ltrim(key, -max(1, self.settings.tasks.max_log_lines), -1)
        pipe.pexpire(key, ttl_ms)

    # -- leases and outcomes ----------------------------------------------------------------
    def ack_and_fetch(
        self,
        acks: Sequence[Ack],
        worker_id: str,
        queues: Sequence[str],
        count: int,
        logs: Mapping[str, Sequence[str]] | None = None,
        taskset: TaskSet | None = None,
    ) -> tuple[list[bool], FetchResult | None]:
        """Store results (delivery, result, runtime ms) and lease up to ``count`` tasks,
        in one round trip. Returns, per result, whether it was stored (False: its lease
        was lost meanwhile and a newer attempt's outcome stands), and what was leased.

        ``logs``: task id -> lines it printed, for the tasks that printed anything; a
        batch of silent tasks sends nothing more. ``taskset``: what this worker serves
        (None: lease any task, as a worker that knows every task would).
        """
        unsent = [bool(logs)]

        def build(pipe: Any) -> None:
            # A repeat after NOSCRIPT must not append the lines again: they went through.
            if unsent[0] and logs:
                for task_id, lines in logs.items():
                    self._logs_call(pipe, task_id, lines)
                unsent[0] = False
            if acks:
                self._ack_call(pipe, acks)
            if count > 0:
                self._fetch_call(pipe, worker_id, queues, count, taskset)

        if not acks and count <= 0:
            return [], None
        replies = self._pipeline(build)
        stored = [bool(x) for x in replies[-2 if count > 0 else -1]] if acks else []
        return stored, (FetchResult.from_reply(replies[-1]) if count > 0 else None)

    def fail(
        self,
        delivery: Delivery,
        *,
        action: str,
        history_entry: dict[str, Any],
        error: bytes,
        delay_ms: int = 0,
        reason: str = "",
        logs: Sequence[str] = (),
        runtime_ms: int = -1,
    ) -> tuple[bool, int]:
        """Record a failed attempt: action is 'retry', 'dead', 'failed' or 'cancelled'.

        ``logs``: the attempt's captured output, stored in the same round trip.
        ``runtime_ms`` (how long the attempt ran; -1 when unknown) goes into the
        execution-time histogram, so slow failures show in the metrics too.
        Returns (stored, dead letters dropped to keep the dead-letter queue bounded).
        """
        k = self.keys
        dead_max, dead_ttl = self._dead
        keys = [
            k.task(delivery.id),
            k.leases,
            k.done(delivery.id),
            k.stats(delivery.queue),
            k.history(delivery.id),
            k.scheduled,
            k.wake_scheduler,
            k.dead(delivery.queue),
            k.task_prefix,
            k.history_prefix,
            k.done_prefix,
            k.metrics(delivery.queue),
            k.minutes(delivery.queue),
        ]
        args = [
            delivery.id,
            delivery.token,
            action,
            json.dumps(history_entry, default=str),
            error,
            max(0, int(delay_ms)),
            reason,
            int(self.settings.tasks.result_ttl * 1000),
            dead_max,
            dead_ttl,
            int(runtime_ms),
            self._history_ms,
        ]
        if not logs:
            reply = self._run("fail", keys, args)
        else:
            unsent = [True]

            def build(pipe: Any) -> None:
                if unsent[0]:  # not again on a repeat after NOSCRIPT: the lines went through
                    self._logs_call(pipe, delivery.id, logs)
                    unsent[0] = False
                self.scripts.queue(pipe, "fail", keys, args)

            reply = self._pipeline(build)[-1]
        return bool(reply[0]), int(reply[1])

    def release(self, deliveries: Iterable[Delivery]) -> int:
        """Return fetched-but-unstarted tasks to the front of their queues, in their order;
        the number given back (a task whose lease was lost meanwhile is not)."""
        items = list(deliveries)
        if not items:
            return 0
        k = self.keys

        def build(pipe: Any) -> None:
            for d in reversed(items):  # LPUSH in reverse keeps their order at the front
                self.scripts.queue(
                    pipe,
                    "release",
                    [k.task(d.id), k.leases, k.queue(d.queue), k.wake(d.queue)],
                    [d.id, d.token],
                )

        return sum(int(r) for r in self._pipeline(build))

    def mark_started(
        self, marks: Sequence[tuple[Delivery, int]], worker_id: str, info: dict[str, Any] | None = None
    ) -> list[bool]:
        """Mark leased tasks RUNNING (delivery, ms since its code started), fenced by token,
        and publish the worker's thread states (``info``) in the same script call.

        The pool calls this only for tasks still running a moment after they started,
        batched, so a quick task costs nothing here (DESIGN 9: honest states).
        """
        if not marks and info is None:
            return []
        args: list[Any] = [json.dumps(info) if info is not None else ""]
        for delivery, elapsed_ms in marks:
            args += [delivery.id, delivery.token, max(0, int(elapsed_ms))]
        reply = self._run("start", [self.keys.task_prefix, self.keys.worker(worker_id)], args)
        return [bool(x) for x in reply]

    # -- the worker process ---------------------------------------------------------------
    def heartbeat(
        self,
        worker_id: str,
        info: dict[str, Any],
        held: Sequence[tuple[str, str]],
        registry_ttl: float,
        taskset: TaskSet | None = None,
    ) -> tuple[list[str], list[str]]:
        """Publish ``info`` and the task set, renew the leases of ``held`` (task id, token);
        one script call.

        Returns (ids whose cancellation was requested, ids whose lease was lost).
        """
        k = self.keys
        args: list[Any] = [
            worker_id,
            int(self.settings.lease_seconds * 1000),
            int(registry_ttl * 1000),
            json.dumps(info),
            taskset.digest if taskset else "",
        ]
        queues = taskset.queues if taskset else ()
        definitions = taskset.definitions if taskset else ()
        args += [len(queues), *queues, len(definitions)]
        for name, doc in definitions:
            args += [name, doc]
        for task_id, token in held:
            args += [task_id, token]
        keys = [
            k.leases,
            k.workers,
            k.worker(worker_id),
            k.task_prefix,
            k.taskset(taskset.digest if taskset else ""),
            k.servers_prefix,
            k.task_names,
            k.task_definitions,
            k.parked_prefix,
            k.queue_prefix,
            k.wake_prefix,
            k.unserved,
        ]
        cancelled, lost = self._run("heartbeat", keys, args)
        return [text(c) for c in cancelled], [text(x) for x in lost]

    def unregister_worker(self, worker_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.keys.workers, worker_id)
        pipe.delete(self.keys.worker(worker_id))
        pipe.execute()

    # -- wake-ups and control messages -------------------------------------------------------
    def wait_for_work(
        self, queues: Sequence[str], worker_id: str, timeout: float, taskset: TaskSet | None = None
    ) -> bool:
        """Block until a queue's wake list, the task set's or this worker's own has a token."""
        keys = [self.keys.wake(q) for q in queues]
        if taskset is not None:
            keys.append(self.keys.wake_taskset(taskset.digest))
        keys += [self.keys.wake_scheduler, self.keys.wake_worker(worker_id)]
        return self.client.blpop(keys, timeout=max(0.01, timeout)) is not None

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


__all__ = ["RedisWorkerLink"]
