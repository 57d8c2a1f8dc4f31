"""The Redis broker: key layout (keys.py), Lua scripts (scripts/), connections,
and the ports (ports.py) through which the rest of taskqueue uses it.

``memory://`` is the same broker over fakeredis, so both modes run the same
scripts and pass the same contract tests (``tests/test_broker_contract.py``).
"""

from taskqueue.broker.connection import create_client, mask_url
from taskqueue.broker.keys import Keys
from taskqueue.broker.ports import (
    CLAIM_ENQUEUED,
    CLAIM_EXISTS,
    CLAIM_LOST,
    CLAIM_NOT_DUE,
    CLAIM_PAUSED,
    CLAIM_SKIPPED,
    CLAIM_UNKNOWN,
    Ack,
    Broker,
    Inspection,
    PeriodicPlan,
    Producer,
    SchedulerLink,
    WorkerLink,
)
from taskqueue.broker.readings import MetricsReading, Snapshot
from taskqueue.broker.records import (
    DeadEntry,
    Delivery,
    EnqueueRequest,
    FetchResult,
    PeriodicClaim,
    PromoteResult,
    ScheduledEntry,
    TaskRecord,
)
from taskqueue.broker.redis import RedisBroker
from taskqueue.broker.task_registry import ServedTask, TaskSet, Unserved
from taskqueue.status import FINAL_STATES

__all__ = [
    # the broker and its connection
    "RedisBroker",
    "Keys",
    "create_client",
    "mask_url",
    # the ports
    "Broker",
    "Producer",
    "WorkerLink",
    "SchedulerLink",
    "Inspection",
    "Ack",
    "PeriodicPlan",
    "CLAIM_ENQUEUED",
    "CLAIM_SKIPPED",
    "CLAIM_PAUSED",
    "CLAIM_EXISTS",
    "CLAIM_LOST",
    "CLAIM_NOT_DUE",
    "CLAIM_UNKNOWN",
    # the records they speak in
    "DeadEntry",
    "Delivery",
    "EnqueueRequest",
    "FetchResult",
    "MetricsReading",
    "PeriodicClaim",
    "PromoteResult",
    "ScheduledEntry",
    "Snapshot",
    "TaskRecord",
    "TaskSet",
    "ServedTask",
    "Unserved",
    "FINAL_STATES",
]
