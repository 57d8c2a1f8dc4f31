"""What tests need from the broker beyond its ports, built on the ports themselves
(``ack_and_fetch``) or on plain Redis commands with keys from ``Keys``.

The broker has no ``fetch``, ``ack`` or ``queue_ids``: no production caller needs
them, and a test that leases or settles one task should go through the same call
a worker makes.
"""

from __future__ import annotations

from taskqueue.broker import Delivery, FetchResult, RedisBroker
from taskqueue.broker.records import text


def fetch(broker: RedisBroker, worker_id: str, queues: list[str], count: int = 1) -> FetchResult:
    """Lease up to ``count`` tasks, as a worker's ``ack_and_fetch`` with nothing to ack."""
    _, fetched = broker.ack_and_fetch([], worker_id, queues, count)
    assert fetched is not None
    return fetched


def ack(broker: RedisBroker, delivery: Delivery, result: bytes, runtime_ms: int = 0) -> bool:
    """Store one result, as ``ack_and_fetch`` with nothing to lease; False when the lease was lost."""
    stored, _ = broker.ack_and_fetch([(delivery, result, runtime_ms)], "", [], 0)
    return stored[0]


def queue_ids(broker: RedisBroker, queue: str = "default") -> list[str]:
    """The ids waiting in a queue, head first (LRANGE of the queue's list)."""
    return [text(i) for i in broker.client.lrange(broker.group(queue).queue(queue), 0, -1)]
