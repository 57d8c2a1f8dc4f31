"""The inspection port over Redis: what metrics, health, the monitor, the CLI and HTTP
read, and the administration they offer (requeue, purge, pause).

Reads cost a fixed number of round trips whatever the queue sizes (LLEN and
ZCARD are O(1); the monitor's ``snapshot`` is one read-only script). Bulk
administration runs in bounded batches, so one call never blocks Redis for long.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

from taskqueue.broker.core import RedisCore
from taskqueue.broker.keys import Keys
from taskqueue.broker.ports import Inspection
from taskqueue.broker.readings import MetricsReading, Snapshot
from taskqueue.broker.records import (
    DeadEntry,
    ScheduledEntry,
    counters,
    pairs,
    server_ms,
    text,
    to_int,
    worker_info,
)

#: Tasks per script call when requeueing or purging in bulk.
_REQUEUE_BATCH = 500
_PURGE_BATCH = 1000


class RedisInspection(RedisCore, Inspection):
    """``Inspection`` on Redis. Reads and administration retry like producer calls;
    ``ping``, ``server_info``, ``eviction_policy`` and ``record_scaling`` try once
    (health reports what it sees, the autoscaler loop backs off)."""

    # -- health ---------------------------------------------------------------------
    def ping(self) -> float:
        """Round-trip time in seconds."""
        start = time.perf_counter()
        self.client.ping()
        return time.perf_counter() - start

    def server_info(self) -> dict[str, Any]:
        """INFO server and memory, for the health check (raises ResponseError on
        servers without INFO, such as the in-process memory:// server).

        On a cluster, of the master nearest its memory limit (one INFO per master,
        sent in parallel), with ``masters`` saying how many answered.
        """
        if self.keys.cluster:
            from redis.cluster import RedisCluster

            primaries = RedisCluster.PRIMARIES
            server = self.client.info("server", target_nodes=primaries)
            memory = self.client.info("memory", target_nodes=primaries)
            nodes = [{**server[name], **memory[name]} for name in memory]
            fullest = max(nodes, key=_fullness)
            return {**fullest, "masters": len(nodes)}
        pipe = self.client.pipeline(transaction=False)
        pipe.info("server")
        pipe.info("memory")
        server, memory = pipe.execute()
        return {**server, **memory}

    def eviction_policy(self) -> str | None:
        """The server's ``maxmemory-policy``, or None where the server does not say
        (INFO refused by an ACL, or memory://)."""
        try:
            info = self.client.info("memory")
        except redis.exceptions.ResponseError:
            return None
        except redis.exceptions.RedisError as exc:
            raise self.wrap_error(exc, "reading the server's memory policy") from exc
        policy = info.get("maxmemory_policy")
        return str(policy) if policy is not None else None

    # -- queues and dead letters -------------------------------------------------------------
    def _per_queue(self, doing: str, queues: Sequence[str], add: Callable[[Any, str], Any]) -> list[Any]:
        """``add(pipe, queue)`` for every queue, pipelined: one round trip, one reply per queue."""

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                add(pipe, q)
            return pipe.execute()

        return self.producer_call(doing, read)

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        replies = self._per_queue(
            "reading queue lengths", queues, lambda p, q: p.llen(self.group(q).queue(q))
        )
        return dict(zip(queues, replies, strict=True))

    def dead_count(self, queues: Sequence[str]) -> dict[str, int]:
        replies = self._per_queue(
            "counting dead letters", queues, lambda p, q: p.zcard(self.group(q).dead(q))
        )
        return dict(zip(queues, replies, strict=True))

    def stats(self, queues: Sequence[str]) -> dict[str, dict[str, int]]:
        replies = self._per_queue("reading counters", queues, lambda p, q: p.hgetall(self.group(q).stats(q)))
        return {q: {text(k): int(v) for k, v in h.items()} for q, h in zip(queues, replies, strict=True)}

    def dead_ids(self, queue: str, limit: int = 1000) -> list[str]:
        ids = self.producer_call(
            f"listing dead letters of {queue}",
            lambda: self.client.zrange(self.group(queue).dead(queue), 0, limit - 1),
        )
        return [text(i) for i in ids]

    def forget_dead(self, queue: str, ids: Sequence[str]) -> None:
        """Drop dead-letter entries whose task data has expired."""
        if ids:
            self.producer_call(
                "pruning dead letters", lambda: self.client.zrem(self.group(queue).dead(queue), *ids)
            )

    def requeue_dead(self, queue: str, task_id: str | None = None) -> int:
        """Move one dead letter (or all of a queue's, a batch per call) back to its queue."""
        k = self.group(queue)
        keys = [k.dead(queue), k.task_prefix, k.queue_prefix, k.wake_prefix, k.done_prefix]
        total = 0
        while True:
            n = int(
                self.producer_call(
                    "requeueing dead letters",
                    lambda: self._run("requeue_dead", keys, [task_id or "", _REQUEUE_BATCH]),
                )
            )
            total += n
            if task_id or n < _REQUEUE_BATCH:
                return total

    def _purge(self, key: str, kind: str, queue: str) -> int:
        """Delete the tasks listed in ``key`` (a queue "list" or a dead-letter "zset"), in batches,
        or ("parked") the tasks of ``queue`` that wait for a worker serving their name."""
        k = self.group(queue)
        keys = [key, k.task_prefix, k.history_prefix, k.done_prefix, k.unserved, k.parked_prefix]
        args = [_PURGE_BATCH, kind, queue]
        total = 0
        while True:
            n = int(self.producer_call("purging", lambda: self._run("purge", keys, args)))
            total += n
            if kind == "parked" or n < _PURGE_BATCH:
                return total

    def purge_queue(self, queue: str) -> int:
        """The queue's pending tasks, those parked for want of a worker serving them included."""
        key = self.group(queue).queue(queue)
        return self._purge(key, "list", queue) + self._purge(key, "parked", queue)

    def purge_dead(self, queue: str) -> int:
        return self._purge(self.group(queue).dead(queue), "zset", queue)

    def pause(self, queue: str, paused: bool = True) -> None:
        op = self.client.sadd if paused else self.client.srem
        self.producer_call("pausing a queue", lambda: op(self.group(queue).paused, queue))

    def paused_queues(self) -> set[str]:
        groups = self._all_groups()

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for k in groups:
                pipe.smembers(k.paused)
            return pipe.execute()

        return {text(q) for members in self.producer_call("reading paused queues", read) for q in members}

    def _all_groups(self) -> list[Keys]:
        """The slot groups of every configured queue (one on a single server)."""
        return [k for k, _ in self.keys.groups(self.settings.queues_by_priority())]

    # -- workers and the autoscaler ------------------------------------------------------------
    def live_workers(self) -> dict[str, dict[str, Any]]:
        """Worker processes whose heartbeat has not expired, with their registry info."""

        def read() -> dict[str, dict[str, Any]]:
            now_ms = server_ms(self.client.time())
            ids = self.client.zrangebyscore(self.keys.workers, now_ms, "+inf")
            pipe = self.client.pipeline(transaction=False)
            for worker_id in ids:
                pipe.hgetall(self.keys.worker(text(worker_id)))
            return {text(worker_id): worker_info(h) for worker_id, h in zip(ids, pipe.execute(), strict=True)}

        return self.producer_call("listing workers", read)

    def record_scaling(self, direction: str, decision: dict[str, Any]) -> None:
        """Count one autoscaler decision ('up' or 'down') for every process to see."""
        pipe = self.client.pipeline(transaction=True)
        pipe.hincrby(self.keys.autoscaler, f"scale_{direction}", 1)
        pipe.hset(self.keys.autoscaler, "last_decision", json.dumps(decision))
        pipe.execute()

    # -- the monitor's snapshot ---------------------------------------------------------------
    def snapshot(self, queues: Sequence[str], dead_limit: int = 20, scheduled_limit: int = 20) -> Snapshot:
        """Everything a monitor shows in one round trip (one read-only script), whatever
        the queue sizes: see ``scripts/snapshot.lua``."""
        args = [max(0, int(dead_limit)), max(0, int(scheduled_limit))]
        groups = self.keys.groups(queues)
        # On a cluster the queue groups' calls see no workers, and one more call in the
        # namespace-wide group reads just those; on a single server one call reads all.
        calls = [(k, members) for k, members in groups]
        if self.keys.cluster or not calls:
            calls.append((self.keys.namespace_wide, []))

        def build(pipe: Any) -> None:
            for k, members in calls:
                self.scripts.queue(pipe, "snapshot", _snapshot_keys(k), [*args, *members])
            for q in queues:  # workflows: tasks WAITING for dependencies
                pipe.scard(self.group(q).waiting(q))

        replies = self.producer_call("reading a snapshot", lambda: self._pipeline(build))
        waiting = {q: int(n) for q, n in zip(queues, replies[len(calls) :], strict=True)}
        order = [q for _, members in calls for q in members]
        snapshot = _decode_snapshot(
            order, _merge_snapshots(replies[: len(calls)], dead_limit, scheduled_limit)
        )
        snapshot.waiting = waiting
        return snapshot

    # -- metrics ----------------------------------------------------------------------------
    def read_metrics(self, queues: Sequence[str]) -> MetricsReading:
        """Everything the metrics need, in two pipelined round trips whatever the
        queue sizes: counters, histograms, lengths, the head of each queue, the
        leased and unserved counts, then the live workers' registry (their thread
        states tell the running tasks from the prefetched ones) and the head tasks' times."""

        def read() -> MetricsReading:
            reading, live, heads = self._read_counts(queues)
            self._read_workers_and_heads(reading, live, heads)
            return reading

        return self.producer_call("reading metrics", read)

    def _read_counts(self, queues: Sequence[str]) -> tuple[MetricsReading, list[str], dict[str, str]]:
        """First round trip: the clock, the worker registry, the leased, scheduled and
        unserved counts, and per queue its length, dead letters, counters, histograms
        and head task id. Returns the reading
        (without workers and oldest), the live worker ids, and queue -> head task id."""
        ns = self.keys.namespace_wide
        groups = [k for k, _ in self.keys.groups(queues)] or [ns]
        pipe = self.client.pipeline(transaction=False)
        if not self.keys.cluster:  # a cluster pipeline refuses TIME: asked of any node below
            pipe.time()
        pipe.zrange(ns.workers, 0, -1, withscores=True)
        pipe.hgetall(ns.autoscaler)
        for g in groups:
            pipe.zcard(g.leases)
            pipe.zcard(g.scheduled)
            pipe.smembers(g.paused)
            pipe.zcard(g.unserved)
        for q in queues:
            k = self.group(q)
            pipe.llen(k.queue(q))
            pipe.zcard(k.dead(q))
            pipe.hgetall(k.stats(q))
            pipe.hgetall(k.metrics(q))
            pipe.lindex(k.queue(q), 0)
            pipe.scard(k.waiting(q))  # workflows: tasks WAITING for dependencies
        replies = pipe.execute()
        now_ms = server_ms(self.client.time() if self.keys.cluster else replies.pop(0))
        members, autoscaler = replies[:2]
        sums = replies[2 : 2 + 4 * len(groups)]
        leased, scheduled = sum(sums[0::4]), sum(sums[1::4])
        paused = {p for group in sums[2::4] for p in group}
        unserved = sum(sums[3::4])
        first = 2 + 4 * len(groups)
        per_queue = dict(
            zip(queues, (replies[first + 6 * i : first + 6 + 6 * i] for i in range(len(queues))), strict=True)
        )
        reading = MetricsReading(
            now_ms=now_ms,
            queues=list(queues),
            pending={q: int(r[0]) for q, r in per_queue.items()},
            dead_letters={q: int(r[1]) for q, r in per_queue.items()},
            stats={q: counters(r[2]) for q, r in per_queue.items()},
            metrics={q: counters(r[3]) for q, r in per_queue.items()},
            oldest={},
            leased=int(leased),
            scheduled=int(scheduled),
            paused={text(p) for p in paused},
            workers={},
            autoscaler={text(a): text(b) for a, b in autoscaler.items()},
            unserved=int(unserved),
            waiting={q: int(r[5]) for q, r in per_queue.items()},
        )
        live = [text(m) for m, deadline in members if deadline >= now_ms]
        heads = {q: text(r[4]) for q, r in per_queue.items() if r[4]}
        return reading, live, heads

    def _read_workers_and_heads(
        self, reading: MetricsReading, live: list[str], heads: dict[str, str]
    ) -> None:
        """Second round trip (skipped when there is nothing to read): the live workers'
        registry info and the (enqueued, due) times of each queue's head task."""
        ns = self.keys.namespace_wide
        pipe = self.client.pipeline(transaction=False)
        for worker_id in live:
            pipe.hgetall(ns.worker(worker_id))
        for queue, task_id in heads.items():
            pipe.hmget(self.group(queue).task(task_id), "enqueued_ms", "due_ms")
        second = pipe.execute() if live or heads else []
        # A worker whose hash expired between the two reads is gone: leave it out.
        reading.workers = {w: worker_info(h) for w, h in zip(live, second, strict=False) if h}
        reading.oldest = {
            q: (to_int(f[0]), to_int(f[1]))
            for q, f in zip(heads, second[len(live) :], strict=True)
            if f[0] is not None
        }


def _fullness(info: dict[str, Any]) -> float:
    """How near a server is to its memory limit (0 with no limit)."""
    limit = int(info.get("maxmemory") or 0)
    return int(info.get("used_memory") or 0) / limit if limit else 0.0


def _snapshot_keys(k: Keys) -> list[str]:
    """KEYS of ``snapshot.lua`` in one slot group."""
    return [
        k.workers,
        k.leases,
        k.scheduled,
        k.paused,
        k.worker_prefix,
        k.task_prefix,
        k.queue_prefix,
        k.dead_prefix,
        k.stats_prefix,
        k.periodic,
        k.periodic_due,
        k.metrics_prefix,
        k.autoscaler,
        k.unserved,
    ]


def _merge_snapshots(replies: list[Any], dead_limit: int, scheduled_limit: int) -> list[Any]:
    """Several groups' ``snapshot.lua`` replies (a cluster) as one; one reply stays as it is."""
    if len(replies) == 1:
        return list(replies[0])
    merged = [
        min(int(r[0]) for r in replies),
        sum(int(r[1]) for r in replies),
        sum(int(r[2]) for r in replies),
        [p for r in replies for p in r[3]],
        [w for r in replies for w in r[4]],
        [row for r in replies for row in r[5]],
        sorted((e for r in replies for e in r[6]), key=lambda e: -int(e[1]))[: max(0, dead_limit)],
        sorted((e for r in replies for e in r[7]), key=lambda e: int(e[1]))[: max(0, scheduled_limit)],
        [x for r in replies for x in r[8]],
        [x for r in replies for x in r[9]],
        [x for r in replies for x in r[10]],
        sum(int(r[11]) for r in replies),
    ]
    return merged


def _decode_snapshot(queues: list[str], reply: list[Any]) -> Snapshot:
    """Decode ``snapshot.lua``'s reply (its header lists the fields, in order)."""
    now_ms, leased, scheduled, paused, workers, per_queue, dead, upcoming, docs, due, scaler, unserved = reply
    rows = dict(zip(queues, per_queue, strict=True))
    return Snapshot(
        now_ms=int(now_ms),
        leased=int(leased),
        unserved=int(unserved),
        scheduled=int(scheduled),
        paused={text(p) for p in paused},
        workers={
            text(worker_id): worker_info({b"info": info, b"heartbeat_ms": heartbeat or None})
            for worker_id, info, heartbeat in workers
        },
        pending={q: int(r[0]) for q, r in rows.items()},
        dead_letters={q: int(r[1]) for q, r in rows.items()},
        stats={q: counters(pairs(r[2])) for q, r in rows.items()},
        metrics={q: counters(pairs(r[3])) for q, r in rows.items()},
        oldest={
            q: (to_int(r[4][0]), to_int(r[4][1])) for q, r in rows.items() if r[4] and r[4][0] is not None
        },
        autoscaler={text(a): text(b) for a, b in pairs(scaler).items()},
        dead=[DeadEntry.from_reply(e) for e in dead],
        upcoming=[ScheduledEntry.from_reply(e) for e in upcoming],
        periodic_docs={text(name): doc for name, doc in pairs(docs).items()},
        periodic_due={text(name): int(float(ms)) for name, ms in pairs(due).items()},
    )


__all__ = ["RedisInspection"]
