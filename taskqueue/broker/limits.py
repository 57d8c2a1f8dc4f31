"""Flow control's Redis side: progress writes and the limits the dashboard shows.

The limits themselves are enforced inside the scripts (``_lib_limits.lua``, called
by enqueue, fetch, ack and fail); this module only writes progress (fenced by the
lease token, ``progress.lua``) and reads the state of the limit buckets.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskqueue.broker.core import RedisCore
from taskqueue.broker.keys import Keys
from taskqueue.broker.ports import FlowInspection, ProgressStore
from taskqueue.broker.records import server_ms, text


@dataclass(frozen=True)
class LimitPool:
    """One rate bucket or concurrency pool: a task name (and ``limit_by`` value) on a queue."""

    queue: str
    task: str
    #: The task name, or ``<name>:<argument>=<value>`` with ``limit_by``.
    bucket: str
    #: Starts per second allowed (None: no rate limit).
    rate_per_second: float | None
    #: Slots (None: no concurrency limit).
    concurrency: int | None
    #: Tasks holding a slot now (may count one whose worker died until its lease expires).
    running: int
    #: Tasks waiting for a slot.
    held: int
    #: When the next rate token is free (server ms; None: free now or no rate limit).
    next_start_ms: int | None


def _parse(suffix: str, spec: str) -> tuple[str, str, str, float | None, int | None]:
    queue, _, bucket = suffix.partition(" ")
    interval, _, rest = spec.partition("|")
    conc, _, name = rest.partition("|")
    try:
        rate = 1000.0 / float(interval) if float(interval) > 0 else None
    except ValueError:
        rate = None
    return queue, name or bucket, bucket, rate, (int(conc) if conc.isdigit() and int(conc) > 0 else None)


class RedisFlow(RedisCore, ProgressStore, FlowInspection):
    """``ProgressStore`` and ``FlowInspection`` on Redis."""

    def write_progress(self, items: Sequence[tuple[str, str, str, str]]) -> int:
        """Store (task id, queue, token, JSON) for running tasks, one script call per slot group."""
        by_group: dict[Keys, list[tuple[str, str, str, str]]] = {}
        for item in items:
            by_group.setdefault(self.keys.for_queue(item[1]), []).append(item)

        def build(pipe: Any) -> None:
            for k, members in by_group.items():
                args: list[Any] = []
                for _, _, token, value in members:
                    args += [token, value]
                self.scripts.queue(pipe, "progress", [k.task(m[0]) for m in members], args)

        return sum(int(n) for n in self._pipeline(build)) if by_group else 0

    def read_progress(self, task_ids: Sequence[str]) -> list[str]:
        """Each task's ``progress`` field ("" when none), one pipeline."""
        if not task_ids:
            return []
        pipe = self.client.pipeline(transaction=False)
        for task_id, k in zip(task_ids, self.groups_of(task_ids), strict=True):
            pipe.hget(k.task(task_id), "progress")
        return [text(v) for v in pipe.execute()]

    def limit_pools(self, queues: Sequence[str]) -> tuple[int, list[LimitPool]]:
        """(server ms, every limit bucket seen on ``queues``), in two round trips."""
        wanted = set(queues)
        groups = [k for k, _ in self.keys.groups(queues)]
        now = server_ms(self.client.time())
        pipe = self.client.pipeline(transaction=False)
        for k in groups:
            pipe.hgetall(k.limits_index)
        found: list[tuple[Keys, str, str, str, float | None, int | None]] = []
        for k, index in zip(groups, pipe.execute(), strict=True):
            for suffix, spec in sorted(index.items()):
                queue, name, bucket, rate, conc = _parse(text(suffix), text(spec))
                if queue in wanted:
                    found.append((k, queue, name, bucket, rate, conc))
        pipe = self.client.pipeline(transaction=False)
        for k, queue, _, bucket, _, _ in found:
            pipe.hget(k.rate(queue, bucket), "r")
            pipe.scard(k.concurrency(queue, bucket))
            pipe.llen(k.held(queue, bucket))
        replies = pipe.execute() if found else []
        pools = []
        for i, (_, queue, name, bucket, rate, conc) in enumerate(found):
            r, running, held = replies[3 * i : 3 * i + 3]
            next_ms = int(float(r)) if r is not None and float(r) > now else None
            pools.append(LimitPool(queue, name, bucket, rate, conc, int(running), int(held), next_ms))
        return now, pools


__all__ = ["LimitPool", "RedisFlow"]
