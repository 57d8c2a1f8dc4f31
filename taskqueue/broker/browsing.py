"""What the dashboard reads and changes beyond the monitor's snapshot: pages of task
indexes, one task in full, the per-minute history, and actions on chosen tasks.

Every read is a fixed number of round trips, whatever the sizes: a page of an
index is one read-only script (``scripts/browse.lua``) that looks at a bounded
number of entries; the history of a time range is one pipeline of HGETALLs, one
per queue and minute. Actions on chosen tasks are one script call each
(``retry_now.lua``, ``delete_dead.lua``), or one pipeline of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from taskqueue.broker.core import RedisCore
from taskqueue.broker.keys import Keys
from taskqueue.broker.records import TaskRecord, server_ms, text

#: The indexes a page can read, and how: (kind for browse.lua, key of the queue or '').
INDEXES = ("pending", "scheduled", "running", "dead")

_FIELDS = (
    "status",
    "queue",
    "name",
    "attempts",
    "max_retries",
    "payload",
    "error",
    "reason",
    "enqueued_ms",
    "started_ms",
    "finished_ms",
    "due_ms",
    "runtime_ms",
    "worker",
)


@dataclass
class TaskPage:
    """One page of an index: its rows, the index's size, and where the next page starts."""

    index: str
    queue: str
    total: int
    #: Offset to read the next page from; None when the end of the index was reached.
    next_offset: int | None
    rows: list[TaskRecord] = field(default_factory=list)
    #: The index's score per row (due time, died time, lease deadline), None for a queue.
    scores: list[int | None] = field(default_factory=list)


@dataclass
class TaskDetail:
    """Everything the dashboard shows about one task."""

    record: TaskRecord
    logs: list[str]
    #: The task's ``progress`` field as stored (JSON), when it reports progress.
    progress: str | None
    now_ms: int


def _decode_page(index: str, queue: str, reply: list[Any]) -> TaskPage:
    total, next_offset, rows = reply
    page = TaskPage(index, queue, int(total), None if int(next_offset) < 0 else int(next_offset))
    for row in rows:
        task_id, score, values = text(row[0]), row[1], row[2:]
        h = {name.encode(): v for name, v in zip(_FIELDS, values, strict=True) if v not in (b"", "")}
        record = TaskRecord.from_hash(task_id, h) or TaskRecord(id=task_id, status="")
        page.rows.append(record)
        page.scores.append(int(float(score)) if score not in (b"", "") else None)
    return page


class RedisBrowsing(RedisCore):
    """The dashboard's reads and actions on Redis (part of ``Inspection``)."""

    def _index(self, index: str, queue: str) -> tuple[str, str]:
        """(key, browse.lua kind) of an index: a queue list, or a zset read newest or soonest first."""
        k = self.group(queue)
        if index == "pending":
            return k.queue(queue), "list"
        if index == "scheduled":
            return k.scheduled, "zset"
        if index == "running":
            return k.leases, "zset"
        if index == "dead":
            return k.dead(queue), "zrev"
        raise ValueError(f"index must be one of {', '.join(INDEXES)}, got {index!r}")

    def task_pages(
        self,
        requests: Sequence[tuple[str, str]],
        offset: int = 0,
        limit: int = 50,
        *,
        name: str = "",
        status: str = "",
        scan: int = 2000,
    ) -> list[TaskPage]:
        """A page of each (index, queue) in ``requests``, in one round trip.

        Rows match ``name`` and ``status`` when given; at most ``scan`` entries of each
        index are looked at, so a filter that matches little stops there (``next_offset``
        says where to go on)."""
        calls = [(index, queue, *self._index(index, queue)) for index, queue in requests]
        args = [max(0, int(offset)), max(0, int(limit)), max(1, int(scan)), name, status]

        def build(pipe: Any) -> None:
            for _, queue, key, kind in calls:
                self.scripts.queue(pipe, "browse", [key, self.group(queue).task_prefix], [kind, *args])

        replies = self.producer_call("reading a page of tasks", lambda: self._pipeline(build))
        return [_decode_page(i, q, r) for (i, q, _, _), r in zip(calls, replies, strict=True)]

    def task_detail(self, task_id: str) -> TaskDetail | None:
        """A task's record, history, captured output and progress, in one round trip."""

        def read() -> list[Any]:
            (k,) = self.groups_of([task_id])
            pipe = self.client.pipeline(transaction=False)
            if not self.keys.cluster:  # a cluster pipeline refuses TIME: asked apart
                pipe.time()
            pipe.hgetall(k.task(task_id))
            pipe.lrange(k.history(task_id), 0, -1)
            pipe.lrange(k.logs(task_id), 0, -1)
            replies = pipe.execute()
            return [self.client.time(), *replies] if self.keys.cluster else replies

        now, h, history, logs = self.producer_call(f"reading task {task_id}", read)
        record = TaskRecord.from_hash(task_id, h, history)
        if record is None:
            return None
        progress = h.get(b"progress")
        return TaskDetail(
            record, [text(x) for x in logs], text(progress) if progress else None, server_ms(now)
        )

    def history(
        self, queues: Sequence[str], minutes: int, step: int = 1
    ) -> tuple[int, dict[str, list[dict[str, int]]]]:
        """The last ``minutes`` minutes of history of each queue, summed into points of
        ``step`` minutes (``history.lua``), oldest first, the server's current minute in the
        last point: (that minute, queue -> one dict per point). One round trip for the
        clock, one pipeline of one script call per queue, whatever the range."""
        step = max(1, int(step))
        points = max(1, int(minutes) // step)

        def read() -> tuple[int, list[Any]]:
            current = server_ms(self.client.time()) // 60000
            first = current - points * step + 1

            def build(pipe: Any) -> None:
                for q in queues:
                    self.scripts.queue(pipe, "history", [self.group(q).minutes(q)], [first, points, step])

            return current, self._pipeline(build)

        current, replies = self.producer_call("reading the history", read)
        return current, {
            q: [{text(f): int(v) for f, v in zip(point[::2], point[1::2], strict=True)} for point in reply]
            for q, reply in zip(queues, replies, strict=True)
        }

    def retry_now(self, task_ids: Sequence[str]) -> list[str]:
        """Move each task to its queue now (see ``retry_now.lua``); per id, the status it
        left, or '' when it was in no state to move."""
        if not task_ids:
            return []
        groups = self.producer_call("finding tasks", lambda: self.groups_of(task_ids))
        by_group: dict[Keys, list[int]] = {}
        for i, k in enumerate(groups):
            by_group.setdefault(k, []).append(i)

        def build(pipe: Any) -> None:
            for k, members in by_group.items():
                keys = [
                    k.scheduled,
                    k.task_prefix,
                    k.queue_prefix,
                    k.wake_prefix,
                    k.dead_prefix,
                    k.done_prefix,
                ]
                self.scripts.queue(pipe, "retry_now", keys, [task_ids[i] for i in members])

        replies = self.producer_call("running tasks now", lambda: self._pipeline(build))
        out = [""] * len(task_ids)
        for members, reply in zip(by_group.values(), replies, strict=True):
            for i, r in zip(members, reply, strict=True):
                out[i] = text(r)
        return out

    def delete_dead(self, queue: str, task_ids: Sequence[str]) -> int:
        """Delete chosen dead letters of ``queue`` and all their data; how many were deleted."""
        if not task_ids:
            return 0
        k = self.group(queue)
        keys = [k.dead(queue), k.task_prefix, k.history_prefix, k.done_prefix, k.logs_prefix]
        return int(
            self.producer_call(
                "deleting dead letters", lambda: self._run("delete_dead", keys, list(task_ids))
            )
        )

    def trigger_periodic(self, name: str) -> bool:
        """Make a periodic task's next run due now: the next scheduler tick runs it, and its
        schedule goes on from there. False when no such periodic task is registered."""
        k = self._periodic_group(name)
        if k is None:
            return False

        def move() -> None:
            now = server_ms(self.client.time())
            self.client.zadd(k.periodic_due, {name: now}, xx=True)

        self.producer_call(f"triggering periodic task {name}", move)
        return True

    def _periodic_group(self, name: str) -> Keys | None:
        """The slot group that holds periodic task ``name`` (its queue's), None if unknown."""
        groups = [k for k, _ in self.keys.groups(self.settings.queues_by_priority())]

        def find() -> Keys | None:
            return next((k for k in groups if self.client.zscore(k.periodic_due, name) is not None), None)

        return self.producer_call("reading periodic tasks", find)

    def pause_periodic(self, name: str, paused: bool = True) -> bool:
        """Pause a periodic task (schedulers claim its slots and skip them) or resume it
        (its next slot runs). False when no such periodic task is registered."""
        k = self._periodic_group(name)
        if k is None:
            return False
        op = self.client.sadd if paused else self.client.srem
        self.producer_call(
            f"{'pausing' if paused else 'resuming'} periodic task {name}", lambda: op(k.periodic_paused, name)
        )
        return True

    def paused_periodic(self) -> set[str]:
        groups = [k for k, _ in self.keys.groups(self.settings.queues_by_priority())]

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for k in groups:
                pipe.smembers(k.periodic_paused)
            return pipe.execute()

        return {
            text(n) for members in self.producer_call("reading paused periodic tasks", read) for n in members
        }


__all__ = ["INDEXES", "RedisBrowsing", "TaskDetail", "TaskPage"]
