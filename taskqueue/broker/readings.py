"""What the monitor, metrics and health read in one go: a ``Snapshot`` (one script,
``snapshot.lua``) and a ``MetricsReading`` (``read_metrics``), and the one home of what
"running" means (``busy_threads``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from taskqueue.broker.records import DeadEntry, ScheduledEntry


def busy_threads(info: Mapping[str, Any]) -> int:
    """Threads of one worker process that run a task's code, as it last published them
    (``slots`` entries with a task id; ``busy`` from a worker that lists no slots). The
    one home of "running": a task in a prefetch buffer is not running (DESIGN 9)."""
    slots = info.get("slots")
    if isinstance(slots, list):
        return sum(1 for s in slots if isinstance(s, dict) and s.get("task_id"))
    busy = info.get("busy")
    return busy if isinstance(busy, int) and not isinstance(busy, bool) and busy > 0 else 0


class _TaskCounts:
    """``running`` (busy threads of the live workers) and ``prefetched`` (leased minus
    running, never negative: the two are published a moment apart), for both readings."""

    __slots__ = ()
    leased: int
    workers: dict[str, dict[str, Any]]

    @property
    def running(self) -> int:
        return sum(busy_threads(info) for info in self.workers.values())

    @property
    def prefetched(self) -> int:
        return max(0, self.leased - self.running)


@dataclass(slots=True)
class Snapshot(_TaskCounts):
    """The state of a namespace at one instant (``snapshot``), decoded but not interpreted."""

    now_ms: int
    #: Tasks leased by a worker (running or prefetched), in every queue.
    leased: int
    #: Tasks waiting for a due time, in every queue.
    scheduled: int
    paused: set[str]
    #: Live worker processes: id -> registry info (host, pid, queues, threads, busy, slots, ...).
    workers: dict[str, dict[str, Any]]
    pending: dict[str, int]
    dead_letters: dict[str, int]
    #: Per queue: its counters (enqueued, processed, failed, retried, dead, ...).
    stats: dict[str, dict[str, int]]
    #: The newest dead letters over all queues, newest first.
    dead: list[DeadEntry]
    #: The next scheduled tasks, soonest first.
    upcoming: list[ScheduledEntry]
    #: Periodic tasks registered by a scheduler: name -> stored document (JSON), and
    #: name -> next run (ms), as ``periodic_state`` returns them.
    periodic_docs: dict[str, bytes] = field(default_factory=dict)
    periodic_due: dict[str, int] = field(default_factory=dict)
    #: Per queue: the fields of its metrics hash (see ``Keys.metrics_prefix``).
    metrics: dict[str, dict[str, int]] = field(default_factory=dict)
    #: Per queue: (enqueued_ms, due_ms) of the task at the head of the queue, if any.
    oldest: dict[str, tuple[int | None, int | None]] = field(default_factory=dict)
    autoscaler: dict[str, str] = field(default_factory=dict)
    #: Pending tasks that wait because no live worker serves their name (``Keys.unserved``).
    unserved: int = 0
    #: Per queue: tasks WAITING for their dependencies (workflows).
    waiting: dict[str, int] = field(default_factory=dict)

    def metrics_reading(self) -> MetricsReading:
        """The same data as ``read_metrics`` returns, for ``taskqueue.metrics``."""
        queues = list(self.pending)
        return MetricsReading(
            now_ms=self.now_ms,
            queues=queues,
            pending=dict(self.pending),
            dead_letters=dict(self.dead_letters),
            stats=self.stats,
            metrics=self.metrics,
            oldest=self.oldest,
            leased=self.leased,
            scheduled=self.scheduled,
            paused=set(self.paused),
            workers=self.workers,
            autoscaler=dict(self.autoscaler),
            unserved=self.unserved,
            waiting=dict(self.waiting),
        )


@dataclass(slots=True)
class MetricsReading(_TaskCounts):
    """What ``read_metrics`` fetched, decoded but not interpreted
    (``taskqueue.metrics`` turns it into figures)."""

    now_ms: int
    queues: list[str]
    pending: dict[str, int]
    dead_letters: dict[str, int]
    #: Per queue: the queue-level counters of the stats hash.
    stats: dict[str, dict[str, int]]
    #: Per queue: the fields of its metrics hash (see ``Keys.metrics_prefix``).
    metrics: dict[str, dict[str, int]]
    #: Per queue: (enqueued_ms, due_ms) of the task at the head of the queue, if any.
    oldest: dict[str, tuple[int | None, int | None]]
    #: Tasks leased by a worker (running or prefetched); see ``running`` and ``prefetched``.
    leased: int
    scheduled: int
    paused: set[str]
    workers: dict[str, dict[str, Any]]
    autoscaler: dict[str, str]
    #: Pending tasks that wait because no live worker serves their name (``Keys.unserved``).
    unserved: int = 0
    #: Per queue: tasks WAITING for their dependencies (workflows).
    waiting: dict[str, int] = field(default_factory=dict)


__all__ = ["MetricsReading", "Snapshot", "busy_threads"]
