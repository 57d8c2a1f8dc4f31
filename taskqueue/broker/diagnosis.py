"""Which key answered WRONGTYPE: the type each key of a namespace must have, and a check.

Redis says only "WRONGTYPE Operation against a key holding the wrong kind of value",
never which key, and a script call touches many. The worker asks here (one pipeline
of TYPE, read-only) so that it can name the key and stop serving just the queue it
belongs to, or everything when it is one of the namespace's own keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from taskqueue.broker.keys import Keys


@dataclass(frozen=True)
class WrongType:
    """A key that holds another type than taskqueue writes there."""

    key: str
    found: str  # what TYPE answered: string, list, hash, ...
    expected: str
    queue: str | None  # the queue it belongs to; None: the whole namespace's


def expected_types(keys: Keys, queues: Sequence[str]) -> list[tuple[str, str, str | None]]:
    """(key, type it must have, queue or None) for the namespace's keys and those of ``queues``."""
    ns = keys.namespace_wide
    table: list[tuple[str, str, str | None]] = [
        (ns.workers, "zset", None),
        (ns.task_names, "zset", None),
        (ns.task_definitions, "hash", None),
        (ns.autoscaler, "hash", None),
    ]
    # Shared by the queues of a slot group: the whole namespace's on a single server,
    # one queue's own on a cluster (see ``keys``).
    grouped = [
        ("leases", "zset"),
        ("scheduled", "zset"),
        ("paused", "set"),
        ("unserved", "zset"),
        ("periodic", "hash"),
        ("periodic_due", "zset"),
        ("periodic_paused", "set"),
        ("wake_scheduler", "list"),
    ]
    if not keys.cluster:
        table += [(getattr(ns, name), kind, None) for name, kind in grouped]
    for queue in queues:
        k = keys.for_queue(queue)
        if keys.cluster:
            table += [(getattr(k, name), kind, queue) for name, kind in grouped]
        for key, kind in (
            (k.queue(queue), "list"),
            (k.wake(queue), "list"),
            (k.dead(queue), "zset"),
            (k.stats(queue), "hash"),
            (k.metrics(queue), "hash"),
        ):
            table.append((key, kind, queue))
    return table


def wrong_types(client: Any, keys: Keys, queues: Sequence[str]) -> list[WrongType]:
    """The keys of the namespace and of ``queues`` that exist with another type than theirs."""
    table = expected_types(keys, queues)
    pipe = client.pipeline(transaction=False)
    for key, _, _ in table:
        pipe.type(key)
    found = []
    for (key, expected, queue), kind in zip(table, pipe.execute(), strict=True):
        kind = kind.decode() if isinstance(kind, bytes) else str(kind)
        if kind not in ("none", expected):
            found.append(WrongType(key, kind, expected, queue))
    return found


__all__ = ["WrongType", "expected_types", "wrong_types"]
