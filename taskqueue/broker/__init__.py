"""The Redis broker: key layout (keys.py), Lua scripts (scripts/), connections.

``memory://`` is the same broker over fakeredis, so both modes run the same
scripts and pass the same contract tests.
"""

from taskqueue.broker.connection import create_client, mask_url
from taskqueue.broker.keys import Keys
from taskqueue.broker.redis import (
    FINAL_STATES,
    Delivery,
    EnqueueRequest,
    FetchResult,
    MetricsReading,
    RedisBroker,
    TaskRecord,
)

__all__ = [
    "FINAL_STATES",
    "Delivery",
    "EnqueueRequest",
    "FetchResult",
    "Keys",
    "MetricsReading",
    "RedisBroker",
    "TaskRecord",
    "create_client",
    "mask_url",
]
