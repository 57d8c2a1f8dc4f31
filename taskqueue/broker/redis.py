"""The Redis broker: every Redis command taskqueue sends goes through here.

Each state transition of a task is one Lua script (see ``scripts/``), so it
is atomic and costs one round trip; a batch of them is one pipeline.

``RedisBroker`` is the four ports in one object, each in its own module over
a shared core (``core.py``: client, keys, scripts, errors): ``producer.py``,
``worker_link.py``, ``scheduler_link.py``, ``inspection.py`` (with the task
registry's reads in ``task_registry.py``). ``TaskQueue``
holds one and hands each helper the port it needs. ``memory://`` is the same
class over fakeredis.
"""

from __future__ import annotations

from taskqueue.broker.browsing import RedisBrowsing
from taskqueue.broker.dependencies import RedisDependencies
from taskqueue.broker.inspection import RedisInspection
from taskqueue.broker.limits import RedisFlow
from taskqueue.broker.ports import Broker
from taskqueue.broker.producer import RedisProducer
from taskqueue.broker.scheduler_link import RedisSchedulerLink
from taskqueue.broker.task_registry import RedisTaskRegistry
from taskqueue.broker.worker_link import RedisWorkerLink


class RedisBroker(
    RedisProducer,
    RedisWorkerLink,
    RedisSchedulerLink,
    RedisInspection,
    RedisBrowsing,
    RedisTaskRegistry,
    RedisFlow,
    RedisDependencies,
    Broker,
):
    """All four ports on one client: ``RedisBroker(client, settings, url)``."""


__all__ = ["RedisBroker"]
