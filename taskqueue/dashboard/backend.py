"""What the dashboard is given: the ports it reads and acts through, the settings,
and how to ask for health. Never the whole ``TaskQueue``: a standalone dashboard
runs no worker and knows none of the tasks' code."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from taskqueue.admin import QueueAdmin
    from taskqueue.broker.ports import FlowInspection, Inspection, Producer
    from taskqueue.config import Settings
    from taskqueue.health import HealthStatus
    from taskqueue.queue import TaskQueue


@dataclasses.dataclass(frozen=True)
class Backend:
    inspection: Inspection
    producer: Producer
    admin: QueueAdmin
    settings: Settings
    #: Masked: shown in the page header.
    url: str
    health: Callable[[], HealthStatus]
    #: The limit buckets and pools (flow control); None: this backend has none to show.
    flow: FlowInspection | None = None

    @classmethod
    def of(cls, queue: TaskQueue) -> Backend:
        return cls(
            queue.broker,
            queue.broker,
            queue,
            queue.settings,
            queue.broker.url,
            queue.health_check,
            queue.broker,
        )

    @property
    def queues(self) -> list[str]:
        return self.settings.queues_by_priority()


__all__ = ["Backend"]
