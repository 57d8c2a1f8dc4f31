"""This process's scheduler: created on first use and kept in the queue's services.

Besides starting and stopping it, two things reach it from the producer
side: a delayed task due before the scheduler's next tick wakes it early
(``nudge``), and a periodic definition declared while it runs (a notebook
cell) is registered in Redis at once (``declared``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from taskqueue.broker import EnqueueRequest, RedisBroker
from taskqueue.config import Settings
from taskqueue.periodic import PeriodicDefinition
from taskqueue.scheduler import Scheduler
from taskqueue.services import Services


class LocalScheduler:
    """Finds (or creates) the scheduler in ``services``; see the module docstring."""

    def __init__(
        self,
        broker: RedisBroker,
        services: Services,
        definitions: Callable[[], dict[str, PeriodicDefinition]],
        settings: Callable[[], Settings],
    ) -> None:
        self.broker = broker
        self.services = services
        self.definitions = definitions
        self.settings = settings

    def get(self) -> Scheduler:
        """The scheduler, created (not started) on first use."""
        scheduler = self.services.get(Scheduler)
        if scheduler is None:
            scheduler = Scheduler(self.broker, self.definitions, self.settings().scheduler)
            self.services.add(scheduler)
        return scheduler

    def running(self) -> Scheduler | None:
        scheduler = self.services.get(Scheduler)
        return scheduler if scheduler is not None and scheduler.running else None

    def stop(self, timeout: float | None) -> None:
        scheduler = self.services.get(Scheduler)
        if scheduler is not None:
            scheduler.stop(timeout)

    def declared(self) -> None:
        """A periodic definition was added: a running scheduler registers it now."""
        scheduler = self.running()
        if scheduler is not None:
            scheduler.sync(remove_missing=False)

    def nudge(self, requests: Sequence[EnqueueRequest]) -> None:
        """Wake a running scheduler early for a delayed task due before its next tick."""
        later = [r for r in requests if r.delay_ms >= 0 or r.eta_ms > 0]
        scheduler = self.running() if later else None
        if scheduler is not None:
            now = time.time()
            scheduler.nudge(min(r.delay_ms / 1000 if r.eta_ms == 0 else r.eta_ms / 1000 - now for r in later))


__all__ = ["LocalScheduler"]
