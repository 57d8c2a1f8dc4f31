"""This process's worker threads: the pool, created on the first start.

The pool is built once, for the queues it serves (highest priority first);
later starts add threads to it, ``resize`` sets their number and ``stop``
drains it (running tasks finish within the grace period, prefetched ones go
back to the front of their queues). Starting fails at once, in the caller's
thread, when Redis cannot be reached, rather than later in a worker thread.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import redis

from taskqueue.broker import RedisBroker
from taskqueue.config import Settings
from taskqueue.hooks import Hooks
from taskqueue.identifiers import check_queue
from taskqueue.registry import TaskRegistry
from taskqueue.serialization import Signer
from taskqueue.worker import WorkerPool

log = logging.getLogger("taskqueue.queue")


class LocalWorkers:
    """The worker pool of this process (None until started, and again once stopped)."""

    def __init__(
        self,
        broker: RedisBroker,
        registry: TaskRegistry,
        settings: Callable[[], Settings],
        signer: Signer,
        hooks: Hooks,
    ) -> None:
        self.broker = broker
        self.registry = registry
        self.settings = settings
        self.signer = signer
        self.hooks = hooks
        self.pool: WorkerPool | None = None

    def start(self, count: int | None, queues: Sequence[str] | None) -> None:
        """Run ``count`` more worker threads (``workers.initial_count`` when None)."""
        settings = self.settings()
        count = settings.workers.initial_count if count is None else count
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be an int >= 1, got {count!r}")
        if self.pool is None:
            self.pool = self._create(settings, queues)
        try:
            self.pool.start(count)
        except redis.exceptions.RedisError as exc:
            raise self.broker.wrap_error(exc, "registering the worker process") from exc

    def _create(self, settings: Settings, queues: Sequence[str] | None) -> WorkerPool:
        served = [check_queue(settings, q) for q in queues or settings.workers.queues or ()]
        served = sorted(served or settings.queues_by_priority(), key=lambda q: -settings.queues[q])
        broker = self.broker
        broker.producer_call(
            "loading scripts to start workers", lambda: broker.scripts.load_all(broker.client)
        )
        _warn_if_evicting(broker.eviction_policy())
        return WorkerPool(broker, self.registry, settings, served, self.signer, hooks=self.hooks)

    def count(self) -> int:
        return self.pool.count() if self.pool else 0

    def resize(self, count: int) -> None:
        """Run exactly ``count`` threads (starting the pool if needed)."""
        if self.pool is None:
            self.start(count, None)
        else:
            self.pool.resize(count)

    def stop(self, timeout: float | None = None) -> bool:
        """Stop taking work and wait for running tasks; True when every one finished."""
        if self.pool is None:
            return True
        pool, self.pool = self.pool, None
        return pool.stop(timeout)


def _warn_if_evicting(policy: str | None) -> None:
    """Say so at start-up when Redis may evict our keys under memory pressure."""
    if policy is not None and policy != "noeviction":
        log.warning(
            "Redis maxmemory-policy is %r: when Redis reaches maxmemory it may evict queued "
            "tasks, results and dead letters. Set maxmemory-policy noeviction (producers then "
            "get BrokerError when memory is full, and nothing is lost)",
            policy,
        )


__all__ = ["LocalWorkers"]
