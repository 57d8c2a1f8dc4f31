"""On a Redis Cluster, how a fetch looks at the lower-priority queues it did not ask.

A single server's fetch script takes from every queue a worker serves, by priority,
in one call. On a cluster each queue is a slot group of its own, so a worker asks its
highest-priority queue and, in the same round trip, peeks at the others; it then
visits the first one worth a fetch. The peek also covers the maintenance a fetch
does there (expired leases, due tasks, unserved tasks whose grace ran out).
"""

from __future__ import annotations

from typing import Any

from taskqueue.broker.keys import Keys

#: Commands ``_peek`` queues per slot group.
PEEK = 5


def peek(pipe: Any, k: Keys, queue: str) -> None:
    """On a cluster, the cheap look at a lower-priority queue taken along with a fetch:
    is anything waiting, is it paused, and when its scheduled tasks, leases and unserved
    tasks fall due, which only its own fetch script sees to."""
    pipe.llen(k.queue(queue))
    pipe.sismember(k.paused, queue)
    pipe.zrange(k.scheduled, 0, 0, withscores=True)
    pipe.zrange(k.leases, 0, 0, withscores=True)
    pipe.zrange(k.unserved, 0, 0, withscores=True)


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def first_score(reply: Any) -> int:
    return int(reply[0][1]) if reply else -1


def earliest(a: int, b: int) -> int:
    return b if a < 0 else a if b < 0 else min(a, b)


def worth_visiting(looked: list[Any], now_ms: int, grace_ms: int) -> tuple[bool, int]:
    """(whether a fetch there may find work now, the group's earliest due time or -1)."""
    length, paused, scheduled, leases, unserved = looked
    due = earliest(first_score(scheduled), first_score(leases))
    parked = first_score(unserved)
    expired = parked >= 0 and parked + grace_ms <= now_ms
    return (int(length) > 0 and not paused) or (0 <= due <= now_ms) or expired, due


__all__ = ["PEEK", "chunks", "earliest", "peek", "worth_visiting"]
