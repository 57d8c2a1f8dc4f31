"""Metrics: counters, latency percentiles and workers, read from Redis.

``q.get_metrics()`` returns a ``TaskQueueMetrics`` (``get_metrics(inspection,
settings)`` does the same from the inspection port); ``taskqueue.metrics.prometheus``
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
)
from taskqueue.metrics.reading import from_reading, get_metrics

__all__ = [
    "TaskQueueMetrics",
    "QueueMetrics",
    "TaskMetrics",
    "WorkerMetrics",
    "WorkerThreadMetrics",
    "AutoscalerMetrics",
    "LatencyStats",
    "BOUNDS_SECONDS",
    "get_metrics",
    "from_reading",
]
