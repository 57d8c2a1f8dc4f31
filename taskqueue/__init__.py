"""taskqueue: a Redis-backed task queue with a synchronous API and thread workers."""

from taskqueue.builder import TaskQueueBuilder
from taskqueue.config import Settings, load_settings
from taskqueue.context import TaskContext, current_task
from taskqueue.dead_letters import DeadLetter
from taskqueue.errors import (
    BrokerError,
    ConfigurationError,
    PayloadTooLarge,
    RateLimited,
    Reject,
    Retry,
    SerializationError,
    TaskCancelled,
    TaskFailed,
    TaskNotFound,
    TaskQueueError,
    TaskTimeout,
)
from taskqueue.handle import TaskHandle
from taskqueue.hooks import TaskEvent
from taskqueue.periodic import PeriodicTask
from taskqueue.progress import Progress
from taskqueue.queue import TaskQueue
from taskqueue.registry import TaskRegistry, registry
from taskqueue.retry import RetryPolicy
from taskqueue.scheduler import Scheduler, TickResult
from taskqueue.status import TaskStatus
from taskqueue.task import Signature, Task, TaskFunction
from taskqueue.workflow import ChainHandle, ChordHandle, GroupHandle, WorkflowHandle, chain, chord, group

__version__ = "0.1.0"

__all__ = [
    # the queue and its tasks
    "TaskQueue",
    "TaskQueueBuilder",
    "Task",
    "TaskFunction",
    "Signature",
    "TaskHandle",
    "TaskStatus",
    "Progress",
    "DeadLetter",
    "RetryPolicy",
    "PeriodicTask",
    "Scheduler",
    "TickResult",
    "TaskRegistry",
    "registry",
    # workflows (DESIGN 10)
    "chain",
    "group",
    "chord",
    "GroupHandle",
    "ChainHandle",
    "ChordHandle",
    "WorkflowHandle",
    "current_task",
    "TaskContext",
    "Settings",
    "load_settings",
    # hooks: q.on(event, fn) calls fn(TaskEvent)
    "TaskEvent",
    # control flow inside tasks
    "Retry",
    "Reject",
    "RateLimited",
    # errors
    "TaskQueueError",
    "BrokerError",
    "ConfigurationError",
    "PayloadTooLarge",
    "SerializationError",
    "TaskCancelled",
    "TaskFailed",
    "TaskNotFound",
    "TaskTimeout",
]
