"""The metrics figures that ``q.get_metrics()`` returns (``taskqueue.metrics.reading``
builds them from Redis).

Every figure comes from Redis, never from this process's memory, so any process
(a web app, a CLI, a notebook with no workers) sees the same numbers, summed over
every worker process on the server.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from taskqueue.metrics.histogram import LatencyStats, _format_seconds

#: Per-task-name counters kept in each queue's metrics hash.
TASK_COUNTERS = ("processed", "failed", "retried", "dead")


@dataclass(frozen=True)
class TaskMetrics:
    """Counters and latencies of one task name in one queue."""

    task_name: str
    queue_name: str
    processed_tasks: int = 0
    failed_tasks: int = 0
    retried_tasks: int = 0
    dead_tasks: int = 0
    execution_time: LatencyStats = field(default_factory=LatencyStats)
    queue_wait: LatencyStats = field(default_factory=LatencyStats)

    def to_dict(self) -> dict[str, Any]:
        return {
            "task_name": self.task_name,
            "queue_name": self.queue_name,
            "processed_tasks": self.processed_tasks,
            "failed_tasks": self.failed_tasks,
            "retried_tasks": self.retried_tasks,
            "dead_tasks": self.dead_tasks,
            "execution_time": self.execution_time.to_dict(),
            "queue_wait": self.queue_wait.to_dict(),
        }

    def __repr__(self) -> str:
        return (
            f"TaskMetrics({self.task_name!r} in {self.queue_name!r}: processed={self.processed_tasks}, "
            f"failed={self.failed_tasks}, retried={self.retried_tasks}, dead={self.dead_tasks}, "
            f"exec p95={_format_seconds(self.execution_time.p95)}, "
            f"wait p95={_format_seconds(self.queue_wait.p95)})"
        )


@dataclass(frozen=True)
class QueueMetrics:
    """One queue: what waits in it, what went through it, and how fast."""

    queue_name: str
    priority: int = 0
    paused: bool = False
    pending_tasks: int = 0
    #: Tasks WAITING for their dependencies (workflows); never in a worker.
    waiting_tasks: int = 0
    #: Tasks in the dead-letter queue now (requeue or purge them).
    dead_letter_tasks: int = 0
    enqueued_tasks: int = 0
    processed_tasks: int = 0
    #: Tasks that failed for good (including those that went to the dead letters).
    failed_tasks: int = 0
    #: Failed attempts that were scheduled again.
    retried_tasks: int = 0
    #: Tasks that went to the dead letters (retries spent, rejected, bad input, worker lost).
    dead_tasks: int = 0
    #: Attempts whose worker died, so the task was delivered again.
    lease_expired: int = 0
    #: Tasks that finished (succeeded or failed for good) in the last 60 seconds.
    throughput_last_minute: int = 0
    #: Seconds the task at the head of the queue has waited (None when empty).
    oldest_pending_age_seconds: float | None = None
    execution_time: LatencyStats = field(default_factory=LatencyStats)
    queue_wait: LatencyStats = field(default_factory=LatencyStats)

    def to_dict(self) -> dict[str, Any]:
        return {
            "queue_name": self.queue_name,
            "priority": self.priority,
            "paused": self.paused,
            "pending_tasks": self.pending_tasks,
            "waiting_tasks": self.waiting_tasks,
            "dead_letter_tasks": self.dead_letter_tasks,
            "enqueued_tasks": self.enqueued_tasks,
            "processed_tasks": self.processed_tasks,
            "failed_tasks": self.failed_tasks,
            "retried_tasks": self.retried_tasks,
            "dead_tasks": self.dead_tasks,
            "lease_expired": self.lease_expired,
            "throughput_last_minute": self.throughput_last_minute,
            "oldest_pending_age_seconds": self.oldest_pending_age_seconds,
            "execution_time": self.execution_time.to_dict(),
            "queue_wait": self.queue_wait.to_dict(),
        }

    def __repr__(self) -> str:
        age = self.oldest_pending_age_seconds
        return (
            f"QueueMetrics({self.queue_name!r}{' paused' if self.paused else ''}: "
            f"pending={self.pending_tasks}, waiting={self.waiting_tasks}"
            f"{f' (oldest {_format_seconds(age)})' if age is not None else ''}, "
            f"processed={self.processed_tasks}, failed={self.failed_tasks}, "
            f"retried={self.retried_tasks}, dead={self.dead_tasks}, "
            f"last minute={self.throughput_last_minute}, "
            f"exec p50/p95/p99={_format_seconds(self.execution_time.p50)}/"
            f"{_format_seconds(self.execution_time.p95)}/{_format_seconds(self.execution_time.p99)}, "
            f"wait p95={_format_seconds(self.queue_wait.p95)})"
        )


@dataclass(frozen=True)
class WorkerThreadMetrics:
    """One worker thread of a process, as its state publisher last published it (a
    thread that takes up or finishes a task that runs past ``workers.status_delay``
    is published within that delay, not a heartbeat later)."""

    name: str
    task_name: str | None = None
    task_id: str | None = None
    #: Seconds its task has run, at the reading's instant (from ``started_at``, so it is
    #: current however long ago the thread's state was published).
    running_seconds: float | None = None
    retiring: bool = False
    #: When its task started (epoch seconds, the worker's clock).
    started_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "task_name": self.task_name,
            "task_id": self.task_id,
            "running_seconds": self.running_seconds,
            "started_at": self.started_at,
            "retiring": self.retiring,
        }

    def __repr__(self) -> str:
        doing = f"running {self.task_name or self.task_id}" if self.task_id else "idle"
        return f"WorkerThreadMetrics({self.name}: {doing}{', retiring' if self.retiring else ''})"


@dataclass(frozen=True)
class WorkerMetrics:
    """One live worker process (its registry entry)."""

    worker_id: str
    host: str = ""
    pid: int | None = None
    queues: tuple[str, ...] = ()
    threads: int = 0
    busy_threads: int = 0
    started_at: float | None = None
    #: Seconds since its last heartbeat (it disappears after two heartbeat intervals).
    heartbeat_age_seconds: float | None = None
    thread_details: tuple[WorkerThreadMetrics, ...] = ()
    #: The process's autoscaler state (bounds, target, decisions), None without one.
    autoscaler: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker_id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "queues": list(self.queues),
            "threads": self.threads,
            "busy_threads": self.busy_threads,
            "started_at": self.started_at,
            "heartbeat_age_seconds": self.heartbeat_age_seconds,
            "thread_details": [t.to_dict() for t in self.thread_details],
            "autoscaler": self.autoscaler,
        }

    def __repr__(self) -> str:
        scaler = ""
        if self.autoscaler:
            scaler = (
                f", autoscaler {self.autoscaler.get('min_workers')}..{self.autoscaler.get('max_workers')}"
            )
        return (
            f"WorkerMetrics({self.worker_id}: {self.busy_threads}/{self.threads} threads busy, "
            f"queues={','.join(self.queues)}{scaler})"
        )


@dataclass(frozen=True)
class AutoscalerMetrics:
    """Autoscaler decisions, summed over every process that runs one."""

    scale_ups: int = 0
    scale_downs: int = 0
    last_decision: dict[str, Any] | None = None
    #: worker id -> that process's autoscaler state (from its heartbeat).
    processes: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "scale_ups": self.scale_ups,
            "scale_downs": self.scale_downs,
            "last_decision": self.last_decision,
            "processes": dict(self.processes),
        }

    def __repr__(self) -> str:
        last = ""
        if self.last_decision:
            d = self.last_decision
            last = f", last {d.get('from_workers')}->{d.get('to_workers')} ({d.get('reason')})"
        return (
            f"AutoscalerMetrics(running in {len(self.processes)} process(es), "
            f"ups={self.scale_ups}, downs={self.scale_downs}{last})"
        )


@dataclass(frozen=True)
class TaskQueueMetrics:
    """The whole namespace at one instant (``timestamp``, Redis server clock)."""

    timestamp: float
    #: Worker threads in every live worker process.
    active_workers: int = 0
    busy_workers: int = 0
    worker_processes: int = 0
    #: Pending tasks per active worker thread (0.0 when there is no worker).
    tasks_per_worker: float = 0.0
    #: Tasks waiting in their queue (those that wait for a worker serving them included).
    total_pending_tasks: int = 0
    #: Tasks whose code runs in a worker thread (busy threads of the live workers).
    total_running_tasks: int = 0
    #: Tasks leased into a worker's prefetch buffer, not started (they read PENDING).
    total_prefetched_tasks: int = 0
    #: Pending tasks that no live worker serves (by name): they wait for one, and are
    #: dead-lettered as unknown-task after ``workers.unknown_task_grace``.
    total_unserved_tasks: int = 0
    #: Tasks waiting for their delay or retry time.
    total_scheduled_tasks: int = 0
    #: Tasks WAITING for their dependencies (workflows).
    total_waiting_tasks: int = 0
    total_processed_tasks: int = 0
    total_failed_tasks: int = 0
    total_retried_tasks: int = 0
    total_dead_tasks: int = 0
    dead_letter_tasks: int = 0
    throughput_last_minute: int = 0
    queue_metrics: list[QueueMetrics] = field(default_factory=list)
    task_metrics: list[TaskMetrics] = field(default_factory=list)
    workers: list[WorkerMetrics] = field(default_factory=list)
    autoscaler: AutoscalerMetrics = field(default_factory=AutoscalerMetrics)

    def queue(self, name: str) -> QueueMetrics:
        """The metrics of one queue by name."""
        for q in self.queue_metrics:
            if q.queue_name == name:
                return q
        known = ", ".join(q.queue_name for q in self.queue_metrics)
        raise KeyError(f"no queue named {name!r} in these metrics; queues: {known}")

    def task(self, name: str, queue: str | None = None) -> TaskMetrics:
        """The metrics of one task name (summed over queues unless ``queue`` is given)."""
        parts = [t for t in self.task_metrics if t.task_name == name and queue in (None, t.queue_name)]
        if not parts:
            raise KeyError(f"no metrics for task {name!r}{f' in queue {queue!r}' if queue else ''} yet")
        if len(parts) == 1:
            return parts[0]
        return TaskMetrics(
            task_name=name,
            queue_name="*",
            processed_tasks=sum(p.processed_tasks for p in parts),
            failed_tasks=sum(p.failed_tasks for p in parts),
            retried_tasks=sum(p.retried_tasks for p in parts),
            dead_tasks=sum(p.dead_tasks for p in parts),
            execution_time=LatencyStats.merged(p.execution_time for p in parts),
            queue_wait=LatencyStats.merged(p.queue_wait for p in parts),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "timestamp": self.timestamp,
            "active_workers": self.active_workers,
            "busy_workers": self.busy_workers,
            "worker_processes": self.worker_processes,
            "tasks_per_worker": self.tasks_per_worker,
            "total_pending_tasks": self.total_pending_tasks,
            "total_running_tasks": self.total_running_tasks,
            "total_prefetched_tasks": self.total_prefetched_tasks,
            "total_unserved_tasks": self.total_unserved_tasks,
            "total_scheduled_tasks": self.total_scheduled_tasks,
            "total_waiting_tasks": self.total_waiting_tasks,
            "total_processed_tasks": self.total_processed_tasks,
            "total_failed_tasks": self.total_failed_tasks,
            "total_retried_tasks": self.total_retried_tasks,
            "total_dead_tasks": self.total_dead_tasks,
            "dead_letter_tasks": self.dead_letter_tasks,
            "throughput_last_minute": self.throughput_last_minute,
            "queue_metrics": [q.to_dict() for q in self.queue_metrics],
            "task_metrics": [t.to_dict() for t in self.task_metrics],
            "workers": [w.to_dict() for w in self.workers],
            "autoscaler": self.autoscaler.to_dict(),
        }

    def _repr_html_(self) -> str:
        from taskqueue.display import metrics_html

        return metrics_html(self)

    def __repr__(self) -> str:
        queues = ", ".join(f"{q.queue_name}={q.pending_tasks}" for q in self.queue_metrics)
        return (
            f"TaskQueueMetrics(workers={self.active_workers} threads in {self.worker_processes} "
            f"process(es), {self.busy_workers} busy; pending={self.total_pending_tasks} ({queues}), "
            f"running={self.total_running_tasks}, prefetched={self.total_prefetched_tasks}, "
            f"unserved={self.total_unserved_tasks}, scheduled={self.total_scheduled_tasks}, "
            f"waiting={self.total_waiting_tasks}, "
            f"processed={self.total_processed_tasks}, failed={self.total_failed_tasks}, "
            f"dead letters={self.dead_letter_tasks}, last minute={self.throughput_last_minute}, "
            f"tasks/worker={self.tasks_per_worker:.2f})"
        )
