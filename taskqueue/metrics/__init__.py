"""Metrics: counters, latency percentiles and workers, read from Redis.

``q.get_metrics()`` returns a ``TaskQueueMetrics``; ``taskqueue.metrics.prometheus``
exposes the same figures to Prometheus (needs the ``prometheus`` extra).
"""

from taskqueue.metrics.histogram import BOUNDS_SECONDS, LatencyStats
from taskqueue.metrics.model import (
    AutoscalerMetrics,
    QueueMetrics,
    TaskMetrics,
    TaskQueueMetrics,
    WorkerMetrics,
    WorkerThreadMetrics,
    collect,
    from_reading,
)

__all__ = [
    "TaskQueueMetrics",
    "QueueMetrics",
    "TaskMetrics",
    "WorkerMetrics",
    "WorkerThreadMetrics",
    "AutoscalerMetrics",
    "LatencyStats",
    "BOUNDS_SECONDS",
    "collect",
    "from_reading",
]
