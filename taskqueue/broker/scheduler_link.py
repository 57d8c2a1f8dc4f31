"""The scheduler port over Redis: due work moved to its queue, periodic slots claimed once.

Periodic definitions live in the slot group of their queue, so on a cluster
the claim of a slot and the enqueue of its run stay one atomic script call.

``promote`` and ``claim_periodic`` are script calls that compare due times
with the server clock, so schedulers on hosts with skewed clocks agree, and
raise at once (the scheduler loop backs off). Registering definitions
(``sync_periodic``) and reading them (``periodic_state``) happen at start-up
and from status commands: they retry like producer calls.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from taskqueue.broker.core import RedisCore
from taskqueue.broker.keys import Keys
from taskqueue.broker.ports import PeriodicPlan, SchedulerLink
from taskqueue.broker.records import PeriodicClaim, PromoteResult, server_ms, text


def _claim_args(c: PeriodicClaim, now_ms: int | None) -> list[Any]:
    """ARGV of ``claim_periodic.lua`` for one claim."""
    return [
        c.name,
        c.slot_ms,
        c.next_ms,
        c.document,
        1 if c.run else 0,
        c.task_id,
        c.payload,
        c.queue,
        c.task_name,
        c.max_retries,
        c.signature,
        now_ms or 0,
        c.paused_document or c.document,
    ]


class RedisSchedulerLink(RedisCore, SchedulerLink):
    """``SchedulerLink`` on Redis: one script call per tick, one pipeline of claims."""

    def promote(self, max_tasks: int, max_periodic: int, now_ms: int | None = None) -> PromoteResult:
        """Move due scheduled tasks to their queues (oldest first) and list due periodic tasks.

        One script call: atomic, and cheap when nothing is due. ``now_ms``
        replaces the server clock (tests only).
        """
        results = []
        budget = max_tasks
        # One call per slot group (a cluster: per queue), by priority, sharing the budget.
        for k in self._all_groups():
            keys = [k.scheduled, k.task_prefix, k.queue_prefix, k.wake_prefix, k.periodic_due, k.periodic]
            results.append(
                PromoteResult.from_reply(self._run("promote", keys, [budget, max_periodic, now_ms or 0]))
            )
            budget = max(0, budget - results[-1].moved)
        return PromoteResult.combined(results)

    def _all_groups(self) -> list[Keys]:
        """The slot groups of every configured queue (one on a single server)."""
        return [k for k, _ in self.keys.groups(self.settings.queues_by_priority())]

    def claim_periodic(
        self, claims: Sequence[PeriodicClaim], now_ms: int | None = None
    ) -> list[tuple[int, int]]:
        """Claim periodic slots (compare-and-set on their next run), in one round trip.

        Returns (code, next run ms) per claim; see the ``CLAIM_*`` codes in ``ports``.
        """
        if not claims:
            return []

        def build(pipe: Any) -> None:
            for c in claims:
                k = self.keys.for_queue(c.queue)
                self.scripts.queue(
                    pipe,
                    "claim_periodic",
                    [
                        k.periodic_due,
                        k.periodic,
                        k.task(c.task_id),
                        k.queue(c.queue),
                        k.wake(c.queue),
                        k.stats(c.queue),
                        k.periodic_paused,
                    ],
                    _claim_args(c, now_ms),
                )

        return [(int(code), int(next_ms)) for code, next_ms in self._pipeline(build)]

    def sync_periodic(self, plan: PeriodicPlan, now_ms: int | None = None) -> None:
        """Register periodic definitions: read what is stored, let ``plan`` decide, write.

        A WATCH transaction per slot group: if a scheduler claims a slot
        meanwhile, the read is repeated, so a registration never undoes a claim.
        Each group keeps the definitions of its queue's periodic tasks; one whose
        queue changed moves to its new group.
        """
        for k in self._all_groups():

            def transaction(pipe: Any, k: Keys = k) -> None:
                stored = {text(n): doc for n, doc in pipe.hgetall(k.periodic).items()}
                due = {text(n): int(s) for n, s in pipe.zrange(k.periodic_due, 0, -1, withscores=True)}
                now = server_ms(self.client.time()) if now_ms is None else now_ms
                upserts, removals = plan(now, stored, due)
                mine = {n: u for n, u in upserts.items() if self.keys.for_queue(_queue_of(u[0])) == k}
                gone = set(removals) | ((set(stored) | set(due)) & (set(upserts) - set(mine)))
                pipe.multi()
                for name, (document, next_ms) in mine.items():
                    pipe.hset(k.periodic, name, document)
                    pipe.zadd(k.periodic_due, {name: next_ms})
                if gone:
                    pipe.hdel(k.periodic, *gone)
                    pipe.zrem(k.periodic_due, *gone)

            self._register(transaction, k)

    def _register(self, transaction: Callable[[Any], None], k: Keys) -> None:
        self.producer_call(
            "registering periodic tasks",
            lambda: self.client.transaction(transaction, k.periodic, k.periodic_due),
        )

    def periodic_state(self) -> tuple[dict[str, bytes], dict[str, int]]:
        """The stored periodic documents and next runs (ms), as ``periodic_tasks()`` shows them."""
        groups = self._all_groups()

        def read() -> list[Any]:
            pipe = self.client.pipeline(transaction=False)
            for k in groups:
                pipe.hgetall(k.periodic)
                pipe.zrange(k.periodic_due, 0, -1, withscores=True)
            return pipe.execute()

        replies = self.producer_call("reading periodic tasks", read)
        docs: dict[str, bytes] = {}
        due: dict[str, int] = {}
        for i in range(0, len(replies), 2):
            docs.update({text(n): d for n, d in replies[i].items()})
            due.update({text(n): int(s) for n, s in replies[i + 1]})
        return docs, due


def _queue_of(document: str) -> str:
    """The queue a periodic definition's document names ('' when it names none)."""
    try:
        queue = json.loads(document).get("queue")
    except (ValueError, AttributeError):
        return ""
    return queue if isinstance(queue, str) else ""


__all__ = ["RedisSchedulerLink"]
