"""Building ``TaskQueueMetrics`` from one Redis reading.

Counters and histograms are written by the Lua scripts in the same call that
changes a task's state; reading them is two pipelined round trips whatever
the queue sizes (``Inspection.read_metrics``), and turning the reading into
figures touches Redis no more (``from_reading``), so the monitor builds the
same figures from its own snapshot.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from taskqueue.broker.readings import busy_threads
from taskqueue.metrics.histogram import LatencyStats
from taskqueue.metrics.model import (
    AutoscalerMetrics,
    QueueMetrics,
    TaskMetrics,
    TaskQueueMetrics,
    WorkerMetrics,
    WorkerThreadMetrics,
)

if TYPE_CHECKING:
    from taskqueue.broker import MetricsReading
    from taskqueue.broker.ports import Inspection
    from taskqueue.config import Settings


def get_metrics(inspection: Inspection, settings: Settings) -> TaskQueueMetrics:
    """Read the metrics of every configured queue of the namespace."""
    return from_reading(inspection.read_metrics(settings.queues_by_priority()), settings)


def from_reading(reading: MetricsReading, settings: Settings) -> TaskQueueMetrics:
    """Turn raw Redis data into figures (no Redis access here)."""
    queue_metrics: list[QueueMetrics] = []
    task_metrics: list[TaskMetrics] = []
    for name in reading.queues:
        tasks = _task_metrics(name, reading.metrics.get(name, {}))
        task_metrics += tasks
        queue_metrics.append(_queue_metrics(name, reading, settings, tasks))
    workers = [_worker(w, info, reading.now_ms) for w, info in sorted(reading.workers.items())]
    active = sum(w.threads for w in workers)
    pending = sum(q.pending_tasks for q in queue_metrics)
    return TaskQueueMetrics(
        timestamp=reading.now_ms / 1000,
        active_workers=active,
        busy_workers=sum(w.busy_threads for w in workers),
        worker_processes=len(workers),
        tasks_per_worker=pending / active if active else 0.0,
        total_pending_tasks=pending,
        total_running_tasks=reading.running,
        total_prefetched_tasks=reading.prefetched,
        total_unserved_tasks=reading.unserved,
        total_scheduled_tasks=reading.scheduled,
        total_waiting_tasks=sum(reading.waiting.values()),
        total_processed_tasks=sum(q.processed_tasks for q in queue_metrics),
        total_failed_tasks=sum(q.failed_tasks for q in queue_metrics),
        total_retried_tasks=sum(q.retried_tasks for q in queue_metrics),
        total_dead_tasks=sum(q.dead_tasks for q in queue_metrics),
        dead_letter_tasks=sum(q.dead_letter_tasks for q in queue_metrics),
        throughput_last_minute=sum(q.throughput_last_minute for q in queue_metrics),
        queue_metrics=queue_metrics,
        task_metrics=task_metrics,
        workers=workers,
        autoscaler=_autoscaler(reading, workers),
    )


def _task_metrics(queue: str, fields: dict[str, int]) -> list[TaskMetrics]:
    """One entry per task name seen in the queue's metrics hash, by name."""
    return [
        TaskMetrics(
            task_name=task_name,
            queue_name=queue,
            processed_tasks=f.get("processed", 0),
            failed_tasks=f.get("failed", 0),
            retried_tasks=f.get("retried", 0),
            dead_tasks=f.get("dead", 0),
            execution_time=LatencyStats.from_fields(f, "exec"),
            queue_wait=LatencyStats.from_fields(f, "wait"),
        )
        for task_name, f in sorted(_by_task(fields).items())
    ]


def _queue_metrics(
    name: str, reading: MetricsReading, settings: Settings, tasks: list[TaskMetrics]
) -> QueueMetrics:
    stats = reading.stats.get(name, {})
    oldest_age = None
    if name in reading.oldest and reading.pending.get(name):
        enqueued, due = reading.oldest[name]
        since = max(enqueued or reading.now_ms, due or 0)
        oldest_age = max(0.0, (reading.now_ms - since) / 1000)
    return QueueMetrics(
        queue_name=name,
        priority=settings.queues.get(name, 0),
        paused=name in reading.paused,
        pending_tasks=reading.pending.get(name, 0),
        waiting_tasks=reading.waiting.get(name, 0),
        dead_letter_tasks=reading.dead_letters.get(name, 0),
        enqueued_tasks=stats.get("enqueued", 0),
        processed_tasks=stats.get("processed", 0),
        failed_tasks=stats.get("failed", 0),
        retried_tasks=stats.get("retried", 0),
        dead_tasks=stats.get("dead", 0),
        lease_expired=stats.get("lease_expired", 0),
        throughput_last_minute=_throughput(reading.metrics.get(name, {}), reading.now_ms),
        oldest_pending_age_seconds=oldest_age,
        execution_time=LatencyStats.merged(t.execution_time for t in tasks),
        queue_wait=LatencyStats.merged(t.queue_wait for t in tasks),
    )


def _autoscaler(reading: MetricsReading, workers: list[WorkerMetrics]) -> AutoscalerMetrics:
    try:
        last = (
            json.loads(reading.autoscaler["last_decision"]) if "last_decision" in reading.autoscaler else None
        )
    except ValueError:
        last = None
    return AutoscalerMetrics(
        scale_ups=int(reading.autoscaler.get("scale_up", 0) or 0),
        scale_downs=int(reading.autoscaler.get("scale_down", 0) or 0),
        last_decision=last if isinstance(last, dict) else None,
        processes={w.worker_id: w.autoscaler for w in workers if w.autoscaler},
    )


def _throughput(fields: dict[str, int], now_ms: int) -> int:
    """Tasks finished in the last 60 s, from the per-second slots of the metrics hash."""
    now_s = now_ms // 1000
    total = 0
    for slot in range(60):
        stamp = fields.get(f"tpt.{slot}")
        if stamp is not None and 0 <= now_s - stamp < 60:
            total += fields.get(f"tp.{slot}", 0)
    return total


def _by_task(fields: dict[str, int]) -> dict[str, dict[str, int]]:
    """Split ``<metric>|<task name>`` fields by task name."""
    out: dict[str, dict[str, int]] = {}
    for key, value in fields.items():
        metric, sep, name = key.partition("|")
        if sep and name:
            out.setdefault(name, {})[metric] = value
    return out


def _worker(worker_id: str, info: dict[str, Any], now_ms: int) -> WorkerMetrics:
    heartbeat = info.get("heartbeat_ms")
    slots = info.get("slots") if isinstance(info.get("slots"), list) else []
    return WorkerMetrics(
        worker_id=worker_id,
        host=str(info.get("host", "")),
        pid=info.get("pid"),
        queues=tuple(info.get("queues") or ()),
        threads=int(info.get("threads") or 0),
        busy_threads=busy_threads(info),
        started_at=info.get("started_at"),
        heartbeat_age_seconds=(now_ms - heartbeat) / 1000 if isinstance(heartbeat, int) else None,
        thread_details=tuple(_thread(s, now_ms) for s in slots or () if isinstance(s, dict)),
        autoscaler=info.get("autoscaler") if isinstance(info.get("autoscaler"), dict) else None,
    )


def _thread(slot: dict[str, Any], now_ms: int) -> WorkerThreadMetrics:
    """One published thread state. Its "running for" is counted from the published start
    (``since``) to the reading's instant, not copied from the publication: a thread's
    state is written when it changes, so what it said then ages between writes."""
    task_id = slot.get("task_id") or None
    since = slot.get("since")
    started = float(since) if isinstance(since, (int, float)) and not isinstance(since, bool) else None
    running: float | None = None
    if task_id and started is not None:
        running = round(max(0.0, now_ms / 1000 - started), 3)
    elif task_id and isinstance(slot.get("running_s"), (int, float)):
        running = float(slot["running_s"])  # a worker that publishes no start time
    return WorkerThreadMetrics(
        name=str(slot.get("thread", "")),
        task_name=slot.get("task"),
        task_id=task_id,
        running_seconds=running,
        retiring=bool(slot.get("retiring")),
        started_at=started if task_id else None,
    )


__all__ = ["from_reading", "get_metrics"]
