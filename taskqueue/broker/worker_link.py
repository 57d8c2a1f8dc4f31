"""The worker port over Redis: leases, outcomes, heartbeats and wake-ups.

Nothing here retries: a worker-side call raises the redis error at once and
the worker loop backs off, so a worker thread never blocks inside a retry.
Outcomes are fenced by each lease's token: an answer from an attempt whose
lease was lost (and handed to another worker) is refused, never stored.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from taskqueue.broker.diagnosis import WrongType, wrong_types
from taskqueue.broker.keys import Keys
from taskqueue.broker.lower_queues import PEEK, chunks, earliest, peek, worth_visiting
from taskqueue.broker.ports import Ack, WorkerLink
from taskqueue.broker.records import Delivery, FetchResult, text
from taskqueue.broker.task_registry import TaskSet
from taskqueue.broker.wakeups import RedisWakeups

#: How many entries past the ones it takes a fetch reads to find tasks of its own task
#: set behind tasks it cannot run (which stay in place for a worker that can).
SCAN_WINDOW = 64


class RedisWorkerLink(RedisWakeups, WorkerLink):
    """``WorkerLink`` on Redis. The hot path, ``ack_and_fetch``, is one pipeline."""

    @property
    def _history_ms(self) -> int:
        """How long the per-minute history is kept (ms; 0: none), as ack.lua and fail.lua take it."""
        return int(self.settings.metrics.history_retention * 1000)

    # -- pieces of the hot path's pipeline ---------------------------------------------
    def _fetch_call(
        self, pipe: Any, k: Keys, worker_id: str, queues: Sequence[str], count: int, taskset: TaskSet | None
    ) -> None:
        """Queue one ``fetch.lua`` call: lease up to ``count`` tasks from ``queues``, by priority.

        With a task set, only tasks it names are leased; the others stay in place for
        a worker that serves them (see ``SCAN_WINDOW``). ``queues`` are of ``k``'s slot group.
        """
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
                k.limit_prefix,
                *k.workflow_keys,  # last, as every script that may settle a task takes them
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

    def _ack_call(self, pipe: Any, k: Keys, acks: Sequence[Ack]) -> None:
        """Queue one ``ack.lua`` call storing every result of the batch (of ``k``'s slot group)."""
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
                k.limit_prefix,
                k.queue_prefix,
                k.wake_prefix,
                *k.workflow_keys,  # last, as every script that may settle a task takes them
            ],
            args,
        )

    def _logs_call(self, pipe: Any, task_id: str, queue: str, lines: Sequence[str]) -> None:
        """Append a task's captured output to its bounded list (see ``taskqueue.capture``).

        Queued before the outcome's script, so whoever wakes on the outcome finds the lines.
        The list lives as long as the task can still be looked at: its result or its dead letter.
        """
        key = self.keys.for_queue(queue).logs(task_id)
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
        if not acks and count <= 0:
            return [], None
        groups = self.keys.groups(queues) if count > 0 else []
        acked = self.keys.groups(a[0].queue for a in acks)
        first = groups[0] if groups else None
        # Plain commands peeked at the other groups (cluster only): which deserve a visit.
        rest = groups[1:]
        queue_of = {a[0].id: a[0].queue for a in acks}
        outboxes = len(acked) if self.keys.cluster else 0  # workflows: notices to relay

        def build(pipe: Any) -> None:
            for task_id, lines in (logs or {}).items():
                self._logs_call(pipe, task_id, queue_of.get(task_id, queues[0] if queues else ""), lines)
            for k, _ in acked:
                self._ack_call(pipe, k, [a for a in acks if self.keys.for_queue(a[0].queue) == k])
            if first is not None:
                self._fetch_call(pipe, first[0], worker_id, first[1], count, taskset)
            for k, members in rest:
                peek(pipe, k, members[0])
            for k, _ in acked[:outboxes]:
                pipe.zcard(k.outbox)

        replies = self._pipeline(build, durable=[k.task_prefix for k, _ in acked])
        if outboxes:
            posted, replies = replies[-outboxes:], replies[:-outboxes]
            self._relay_groups([k for (k, _), n in zip(acked, posted, strict=True) if int(n)])
        replies = replies[sum(3 for _ in (logs or {})) :]
        stored = self._stored(acks, acked, replies[: len(acked)])
        if first is None:
            return stored, None
        fetched = FetchResult.from_reply(replies[len(acked)])
        self._remember(fetched)
        peeks = replies[len(acked) + 1 :]
        grace_ms = int(self.settings.workers.unknown_task_grace * 1000)
        for (k, members), looked in zip(rest, chunks(peeks, PEEK), strict=True):
            if len(fetched.deliveries) >= count or fetched.taskset_missing:
                break
            worth, due = worth_visiting(looked, fetched.now_ms, grace_ms)
            if not worth:
                fetched = replace(fetched, next_due_ms=earliest(fetched.next_due_ms, due))
                continue
            want = count - len(fetched.deliveries)

            def build_more(pipe: Any, k: Keys = k, members: list[str] = members, want: int = want) -> None:
                self._fetch_call(pipe, k, worker_id, members, want, taskset)

            more = FetchResult.from_reply(self._pipeline(build_more)[0])
            self._remember(more)
            fetched = fetched.merged(more)
        return stored, fetched

    def _stored(
        self, acks: Sequence[Ack], acked: list[tuple[Keys, list[str]]], replies: list[Any]
    ) -> list[bool]:
        """Per ack, in the caller's order, whether its result was stored."""
        by_group = {k: iter(reply) for (k, _), reply in zip(acked, replies, strict=True)}
        return [bool(next(by_group[self.keys.for_queue(a[0].queue)])) for a in acks]

    def _remember(self, fetched: FetchResult) -> None:
        for d in fetched.deliveries:
            self.remember(d.id, d.queue)

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
        k = self.keys.for_queue(delivery.queue)
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
            k.limit_prefix,
            k.queue_prefix,
            k.wake_prefix,
            *k.workflow_keys,  # last, as every script that may settle a task takes them
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

        def build(pipe: Any) -> None:
            if logs:
                self._logs_call(pipe, delivery.id, delivery.queue, logs)
            self.scripts.queue(pipe, "fail", keys, args)

        reply = self._pipeline(build, durable=keys[:1])[-1]
        if self.keys.cluster and action != "retry":
            self._relay_groups([k])  # workflows: a final failure may have told other groups
        return bool(reply[0]), int(reply[1])

    def release(self, deliveries: Iterable[Delivery]) -> int:
        """Return fetched-but-unstarted tasks to the front of their queues, in their order;
        the number given back (a task whose lease was lost meanwhile is not)."""
        items = list(deliveries)
        if not items:
            return 0

        def build(pipe: Any) -> None:
            for d in reversed(items):  # LPUSH in reverse keeps their order at the front
                k = self.keys.for_queue(d.queue)
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
        ns = self.keys.namespace_wide
        groups = self.keys.groups(d.queue for d, _ in marks)
        # On a single server the one call also publishes the thread states; on a cluster
        # the worker's hash is in the namespace-wide group, so it gets a call of its own.
        separate = self.keys.cluster or not groups

        def build(pipe: Any) -> None:
            for k, _ in groups:
                args: list[Any] = ["" if separate or info is None else json.dumps(info)]
                for delivery, elapsed_ms in marks:
                    if self.keys.for_queue(delivery.queue) == k:
                        args += [delivery.id, delivery.token, max(0, int(elapsed_ms))]
                self.scripts.queue(pipe, "start", [k.task_prefix, k.worker(worker_id)], args)
            if separate and info is not None:
                self.scripts.queue(pipe, "start", [ns.task_prefix, ns.worker(worker_id)], [json.dumps(info)])

        replies = self._pipeline(build)
        by_group = {k: iter(reply) for (k, _), reply in zip(groups, replies, strict=False)}
        return [bool(next(by_group[self.keys.for_queue(d.queue)])) for d, _ in marks]

    # -- the worker process ---------------------------------------------------------------
    def heartbeat(
        self,
        worker_id: str,
        info: dict[str, Any],
        held: Sequence[tuple[str, str, str]],
        registry_ttl: float,
        taskset: TaskSet | None = None,
    ) -> tuple[list[str], list[str]]:
        """Publish ``info`` and the task set, renew the leases of ``held`` (task id, token,
        queue): one ``renew.lua`` call per slot group and one ``heartbeat.lua`` call, one
        round trip.

        Returns (ids whose cancellation was requested, ids whose lease was lost).
        """
        ns = self.keys.namespace_wide
        ttl_ms = int(registry_ttl * 1000)
        digest = taskset.digest if taskset else ""
        names = taskset.names if taskset else []
        definitions = taskset.definitions if taskset else ()
        served = self.keys.groups(taskset.queues if taskset else ())
        held_groups = self.keys.groups(queue for _, _, queue in held)
        groups = list(dict.fromkeys([k for k, _ in served] + [k for k, _ in held_groups]))
        served_in = dict(served)

        def build(pipe: Any) -> None:
            for k in groups:
                queues = served_in.get(k, [])
                args: list[Any] = [int(self.settings.lease_seconds * 1000), ttl_ms, digest if queues else ""]
                args += [len(queues), *queues, len(names), *names]
                for task_id, token, queue in held:
                    if self.keys.for_queue(queue) == k:
                        args += [task_id, token]
                keys = [
                    k.leases,
                    k.task_prefix,
                    k.taskset(digest),
                    k.servers_prefix,
                    k.parked_prefix,
                    k.queue_prefix,
                    k.wake_prefix,
                    k.unserved,
                ]
                self.scripts.queue(pipe, "renew", keys, args)
            args = [worker_id, ttl_ms, json.dumps(info), "1" if digest else "0"]
            for name, doc in definitions:
                args += [name, doc]
            keys = [ns.workers, ns.worker(worker_id), ns.task_names, ns.task_definitions]
            self.scripts.queue(pipe, "heartbeat", keys, args)

        replies = self._pipeline(build)[:-1]
        cancelled = [text(c) for reply in replies for c in reply[0]]
        lost = [text(x) for reply in replies for x in reply[1]]
        return cancelled, lost

    def unregister_worker(self, worker_id: str) -> None:
        pipe = self.client.pipeline(transaction=True)
        pipe.zrem(self.keys.workers, worker_id)
        pipe.delete(self.keys.worker(worker_id))
        pipe.execute()

    def wrong_types(self, queues: Sequence[str]) -> list[WrongType]:
        return wrong_types(self.client, self.keys, queues)


__all__ = ["RedisWorkerLink"]
