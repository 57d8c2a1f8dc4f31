"""The broker's ports: one small typed interface per kind of caller.

Callers depend on the port they need, never on the Redis broker class or on
``TaskQueue``: a producer enqueues and reads its tasks, a worker leases and
settles them, the scheduler promotes due work, and inspection reads (and
administers) what is stored. The Redis broker implements all four, for a real
server and for ``memory://`` alike, and ``tests/test_broker_contract.py``
checks each port's contract on both.

Each docstring states the atomicity a caller may rely on.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    import redis

    from taskqueue.broker.browsing import TaskDetail, TaskPage
    from taskqueue.broker.diagnosis import WrongType
    from taskqueue.broker.limits import LimitPool
    from taskqueue.broker.plans import WorkflowPlan, WorkflowRecord
    from taskqueue.broker.readings import MetricsReading, Snapshot
    from taskqueue.broker.records import (
        Delivery,
        EnqueueRequest,
        FetchResult,
        PeriodicClaim,
        PromoteResult,
        TaskRecord,
    )
    from taskqueue.broker.task_registry import ServedTask, TaskSet, Unserved
    from taskqueue.errors import BrokerError

#: A periodic plan: (now_ms, stored definitions, next run times) -> (definitions to write, names to drop).
PeriodicPlan = Callable[[int, dict[str, bytes], dict[str, int]], tuple[dict[str, tuple[str, int]], list[str]]]

#: One acknowledgement: the delivery, its encoded result, its runtime in milliseconds.
Ack = tuple["Delivery", bytes, int]


@runtime_checkable
class Producer(Protocol):
    """What code that sends tasks and waits on them needs."""

    def enqueue(self, requests: Sequence[EnqueueRequest]) -> list[bool | str]:
        """Write every request or none (one round trip); False for a repeated request already
        stored; for a unique or debounced request that joined an existing task, its id."""

    def cancel(self, task_id: str) -> str | None:
        """Cancel a task; returns its stored status before, None if unknown.

        PENDING, SCHEDULED, RETRYING: it will never run. LEASED (a worker holds it, not
        known to have started) or RUNNING: its worker is told at once, and drops it if it
        has not started, or asks it to stop (``current_task().cancelled``)."""

    def cancel_many(self, task_ids: Sequence[str]) -> list[str | None]:
        """``cancel`` for many tasks in one round trip."""

    def get_task(self, task_id: str, *, history: bool = False) -> TaskRecord | None:
        """The stored record, or None when no such task exists (or its record expired)."""

    def get_tasks(self, task_ids: Sequence[str], *, history: bool = False) -> list[TaskRecord | None]:
        """``get_task`` for many ids in one round trip, in order."""

    def task_statuses(self, task_ids: Sequence[str]) -> list[str]:
        """The status of each task ("" when unknown), in one round trip."""

    def task_logs(self, task_id: str) -> list[str]:
        """The captured output lines of a task, oldest first."""

    def watch(self, task_id: str) -> TaskRecord | None:
        """Register interest in the task's done signal, then read its record (no lost wake-up)."""

    def wait_done(self, task_id: str, timeout: float) -> bool:
        """Block until the task's done signal or the timeout; True when signalled."""


@runtime_checkable
class WorkerLink(Protocol):
    """What a worker pool needs: leases, outcomes, heartbeats and wake-ups."""

    def ack_and_fetch(
        self,
        acks: Sequence[Ack],
        worker_id: str,
        queues: Sequence[str],
        count: int,
        logs: Mapping[str, Sequence[str]] | None = None,
        taskset: TaskSet | None = None,
    ) -> tuple[list[bool], FetchResult | None]:
        """Store results (fenced by each lease's token) and lease up to ``count`` more, in one round trip.

        With ``taskset`` only tasks it names are leased; others stay in place, in order."""

    def fail(
        self,
        delivery: Delivery,
        *,
        action: str,
        history_entry: dict[str, Any],
        error: bytes,
        delay_ms: int = 0,
        reason: str = "",
        logs: Sequence[str] = (),
        runtime_ms: int = -1,
    ) -> tuple[bool, int]:
        """Record a failed attempt and its consequence (retry, fail, dead, cancel) atomically."""

    def release(self, deliveries: Iterable[Delivery]) -> int:
        """Give unstarted leased tasks back to the front of their queues, attempts not counted."""

    def heartbeat(
        self,
        worker_id: str,
        info: dict[str, Any],
        held: Sequence[tuple[str, str, str]],
        registry_ttl: float,
        taskset: TaskSet | None = None,
    ) -> tuple[list[str], list[str]]:
        """Publish the worker and its task set, renew the leases ``held`` (task id, token,
        queue); returns (cancelled ids, lost ids)."""

    def mark_started(
        self, marks: Sequence[tuple[Delivery, int]], worker_id: str, info: dict[str, Any] | None = None
    ) -> list[bool]:
        """Mark leased tasks RUNNING (fenced by token) and publish thread states, in one call."""

    def unregister_worker(self, worker_id: str) -> None:
        """Remove the worker from the registry at a clean stop."""

    def wait_for_work(
        self, queues: Sequence[str], worker_id: str, timeout: float, taskset: TaskSet | None = None
    ) -> bool:
        """Block on the wake lists of ``queues`` (and the task set's) until woken or the timeout."""

    def wait_control(self, worker_id: str, timeout: float) -> list[str]:
        """Block on the worker's control list; the messages received (cancellations)."""

    def send_control(self, worker_id: str, message: str = "") -> None:
        """Push a control message to one worker process."""

    def wake_workers(self, worker_id: str, count: int) -> None:
        """Wake ``count`` idle threads of a worker process."""

    def wrong_types(self, queues: Sequence[str]) -> list[WrongType]:
        """The keys of the namespace and of ``queues`` that hold another type than taskqueue
        writes there (read-only): which key a WRONGTYPE reply was about."""


#: What ``SchedulerLink.claim_periodic`` answers, one code per claim (``claim_periodic.lua``).
CLAIM_ENQUEUED = 1  # the slot was claimed and its run enqueued
CLAIM_SKIPPED = 2  # the slot was claimed and skipped (missed-run policy "skip")
CLAIM_EXISTS = 3  # the slot was claimed; a task for it existed already, so none was enqueued
CLAIM_LOST = 0  # another scheduler claimed the slot first
CLAIM_NOT_DUE = -1  # the slot is not due yet by the server clock
CLAIM_UNKNOWN = -2  # the periodic task is not registered (any more)
CLAIM_PAUSED = 4  # the slot was claimed and skipped: the periodic task is paused


@runtime_checkable
class SchedulerLink(Protocol):
    """What the scheduler needs: due work moved to its queue exactly once.

    Calls raise the Redis error at once (the scheduler loop backs off);
    ``wrap_error`` turns one into the ``BrokerError`` a caller reports.
    """

    def promote(self, max_tasks: int, max_periodic: int, now_ms: int | None = None) -> PromoteResult:
        """Move due delayed tasks and retries to their queues atomically; list due periodic slots."""

    def claim_periodic(
        self, claims: Sequence[PeriodicClaim], now_ms: int | None = None
    ) -> list[tuple[int, int]]:
        """Claim each periodic slot once across every scheduler, enqueueing its run in the same step.

        Returns (a ``CLAIM_*`` code, the task's next run ms) per claim, in one round trip.
        """

    def sync_periodic(self, plan: PeriodicPlan, now_ms: int | None = None) -> None:
        """Apply this process's periodic definitions to the stored ones (WATCH transaction)."""

    def periodic_state(self) -> tuple[dict[str, bytes], dict[str, int]]:
        """The stored periodic definitions and their next run times."""

    def wrap_error(self, exc: redis.exceptions.RedisError, doing: str) -> BrokerError:
        """The ``BrokerError`` to raise for ``exc``: its cause, ``doing``, the masked URL."""


@runtime_checkable
class Inspection(Protocol):
    """What metrics, health, the monitor, the CLI and HTTP read and administer."""

    def ping(self) -> float:
        """Round-trip time in seconds; a Redis error is raised at once (health reports what it sees)."""

    def server_info(self) -> dict[str, Any]:
        """Server version, memory and persistence facts for health."""

    def eviction_policy(self) -> str | None:
        """The server's maxmemory-policy, None when it cannot be read."""

    def queue_lengths(self, queues: Sequence[str]) -> dict[str, int]:
        """Pending tasks per queue."""

    def dead_count(self, queues: Sequence[str]) -> dict[str, int]:
        """Dead letters per queue."""

    def dead_ids(self, queue: str, limit: int = 1000) -> list[str]:
        """Ids of a queue's dead letters, oldest first (the order they died)."""

    def forget_dead(self, queue: str, ids: Sequence[str]) -> None:
        """Drop index entries whose records are gone."""

    def requeue_dead(self, queue: str, task_id: str | None = None) -> int:
        """Move dead letters (one or all of a queue) back to their queue, attempts reset."""

    def purge_queue(self, queue: str) -> int:
        """Delete a queue's pending tasks; the number deleted."""

    def purge_dead(self, queue: str) -> int:
        """Delete a queue's dead letters; the number deleted."""

    def stats(self, queues: Sequence[str]) -> dict[str, dict[str, int]]:
        """Counters per queue (processed, failed, retried, dead, ...)."""

    def live_workers(self) -> dict[str, dict[str, Any]]:
        """Worker processes whose heartbeat is current, with what they published."""

    def snapshot(self, queues: Sequence[str], dead_limit: int = 20, scheduled_limit: int = 20) -> Snapshot:
        """Everything the monitor shows, read in one round trip."""

    def read_metrics(self, queues: Sequence[str]) -> MetricsReading:
        """Counters, histograms and worker facts for ``get_metrics``."""

    def record_scaling(self, direction: str, decision: dict[str, Any]) -> None:
        """Keep the autoscaler's last decision for the monitor and metrics."""

    def pause(self, queue: str, paused: bool = True) -> None:
        """Pause or resume a queue for every worker."""

    def paused_queues(self) -> set[str]:
        """The queues that are paused."""

    def served_tasks(self) -> dict[str, ServedTask]:
        """Task names that live workers serve (the task registry), with queue and parameters."""

    def unserved(self, limit: int = 10) -> Unserved:
        """Tasks waiting because no live worker serves their name: the count and the oldest."""

    # -- the dashboard's pages and actions (``broker/browsing.py``) ----------------------------
    def task_pages(
        self,
        requests: Sequence[tuple[str, str]],
        offset: int = 0,
        limit: int = 50,
        *,
        name: str = "",
        status: str = "",
        scan: int = 2000,
    ) -> list[TaskPage]:
        """A page of each (index, queue): index "pending", "scheduled", "running" or "dead";
        filtered by task name and status; at most ``scan`` entries looked at per index.
        One round trip."""

    def task_detail(self, task_id: str) -> TaskDetail | None:
        """One task's record, history, logs and progress in one round trip; None if unknown."""

    def history(
        self, queues: Sequence[str], minutes: int, step: int = 1
    ) -> tuple[int, dict[str, list[dict[str, int]]]]:
        """The history of the last ``minutes`` minutes per queue, in points of ``step``
        minutes (two round trips)."""

    def retry_now(self, task_ids: Sequence[str]) -> list[str]:
        """Scheduled, retrying, dead, failed or cancelled tasks to their queue now, atomically each."""

    def delete_dead(self, queue: str, task_ids: Sequence[str]) -> int:
        """Delete chosen dead letters of a queue with their data, atomically."""

    def trigger_periodic(self, name: str) -> bool:
        """Make a periodic task's next run due now (the next scheduler tick runs it)."""

    def pause_periodic(self, name: str, paused: bool = True) -> bool:
        """Pause (its slots are skipped) or resume a registered periodic task; False if unknown."""

    def paused_periodic(self) -> set[str]:
        """The names of the paused periodic tasks."""


@runtime_checkable
class ProgressStore(Protocol):
    """Where a worker pool writes task progress (``taskqueue.progress``)."""

    def write_progress(self, items: Sequence[tuple[str, str, str, str]]) -> int:
        """Store (task id, queue, lease token, JSON) for each task whose lease the token
        still holds, in one round trip; the number stored."""

    def read_progress(self, task_ids: Sequence[str]) -> list[str]:
        """Each task's stored progress (JSON; "" when none), in one round trip."""


@runtime_checkable
class FlowInspection(Protocol):
    """What the dashboard reads of flow control (DESIGN 11)."""

    def limit_pools(self, queues: Sequence[str]) -> tuple[int, list[LimitPool]]:
        """(server ms, the rate buckets and concurrency pools seen on ``queues``)."""


@runtime_checkable
class Dependencies(Protocol):
    """What workflows need (DESIGN 10): write one, relay its notices, read its edges.

    The decisions themselves (a dependent released exactly once, failure policies) are
    taken by the scripts that store outcomes, in the same call (``_lib_workflow.lua``).
    """

    def enqueue_workflow(self, plan: WorkflowPlan) -> None:
        """Write every member and edge of ``plan``, or none; raise ValueError naming a
        dependency from outside the plan that is not stored. One script call per slot
        group: on a single server one round trip, all or nothing; on a cluster spanning
        groups, two (members written WAITING first, released once all are written)."""

    def relay(self, queues: Sequence[str], min_age_ms: int = 0) -> int:
        """Cluster only: apply the notices waiting in the outboxes of ``queues``' groups
        (older than ``min_age_ms``) to their dependents' groups; the number applied."""

    def inputs(self, task_id: str, queue: str, count: int) -> list[bytes | None]:
        """The results a member received from its dependencies, by input index."""

    def dependents(self, task_id: str) -> list[str]:
        """The ids of the tasks that depend on ``task_id``, in the order they were added."""

    def waiting_counts(self, queues: Sequence[str]) -> dict[str, int]:
        """WAITING tasks per queue."""

    def waiting_ids(self, queue: str, limit: int = 100) -> list[str]:
        """Some of a queue's WAITING task ids (at most ``limit``)."""

    def waiting_for(self, task_ids: Sequence[str]) -> list[list[str]]:
        """Per task, the dependencies it still waits for ([] when none or not WAITING)."""

    def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        """A stored workflow record, None when unknown or expired."""

    def workflows(self, queues: Sequence[str], limit: int = 50) -> list[WorkflowRecord]:
        """The newest workflows whose record lives in ``queues``' groups, newest first."""


class Broker(Producer, WorkerLink, SchedulerLink, Inspection, Dependencies, Protocol):
    """All five ports: what ``TaskQueue`` holds and hands out piece by piece."""


__all__ = [
    "Ack",
    "Broker",
    "FlowInspection",
    "Dependencies",
    "Inspection",
    "ProgressStore",
    "PeriodicPlan",
    "Producer",
    "SchedulerLink",
    "WorkerLink",
    "CLAIM_ENQUEUED",
    "CLAIM_SKIPPED",
    "CLAIM_EXISTS",
    "CLAIM_LOST",
    "CLAIM_NOT_DUE",
    "CLAIM_UNKNOWN",
    "CLAIM_PAUSED",
]
