"""The monitor's sections as HTML, from one snapshot and the figures built from it.

Pure functions (no widget, no Redis), so each section can be read and tested
on its own; ``taskqueue.monitor.widget`` puts their output into the widgets.
Every value is escaped by ``taskqueue.display``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from taskqueue import display
from taskqueue.health import unserved_message
from taskqueue.monitor.chart import GREEN, RED, Rates
from taskqueue.outcome import decode_error
from taskqueue.periodic import PeriodicDefinition, periodic_list

if TYPE_CHECKING:
    from taskqueue.broker import DeadEntry, Snapshot
    from taskqueue.metrics import TaskQueueMetrics

MUTED = "<span class='tq-muted'>{}</span>"


def totals_html(snap: Snapshot, grace: float | None = None) -> str:
    """The namespace's task counts: running is what worker threads run now (their published
    states), prefetched what sits leased in their buffers, not started (it reads PENDING)."""
    line = (
        f"pending <b>{sum(snap.pending.values())}</b> · running <b>{snap.running}</b> · "
        f"prefetched <b>{snap.prefetched}</b> · scheduled <b>{snap.scheduled}</b> · "
        f"waiting <b>{sum(snap.waiting.values())}</b> · "
        f"dead letters <b>{sum(snap.dead_letters.values())}</b>"
    )
    if snap.unserved:
        line += f"<br><span class='tq-err'>{display.esc(unserved_message(snap.unserved, grace))}</span>"
    return line


def rates_html(snap: Snapshot, rates: Rates | None, metrics: TaskQueueMetrics | None) -> str:
    """The last minute's rates under the chart, then the namespace's totals."""
    processed = sum(s.get("processed", 0) for s in snap.stats.values())
    failed = sum(s.get("failed", 0) for s in snap.stats.values())
    retried = sum(s.get("retried", 0) for s in snap.stats.values())
    if rates is None:
        last_minute = "rates appear after the second refresh"
    else:
        span = "last minute" if rates.seen_s >= 60 else f"last {rates.seen_s:.0f} s"
        last_minute = (
            f"{span}: <span style='color:{GREEN}'>■</span> processed <b>{rates.recent[0]}</b> · "
            f"<span style='color:{RED}'>■</span> failed <b>{rates.recent[1]}</b>"
        )
    server = metrics.throughput_last_minute if metrics is not None else 0
    return f"{last_minute}<br>finished in the last 60 s, every process: <b>{server}</b><br>" + MUTED.format(
        f"totals: processed {processed} · failed {failed} · retried {retried}"
    )


def queue_metrics_html(metrics: TaskQueueMetrics) -> str:
    rows = [
        (
            q.queue_name,
            q.processed_tasks,
            q.failed_tasks,
            q.retried_tasks,
            q.throughput_last_minute,
            display.duration(q.execution_time.p50),
            display.duration(q.execution_time.p95),
            display.duration(q.execution_time.p99),
            display.duration(q.queue_wait.p95),
            display.duration(q.oldest_pending_age_seconds),
        )
        for q in metrics.queue_metrics
    ]
    header = [
        "queue",
        "processed",
        "failed",
        "retried",
        "last min",
        "p50",
        "p95",
        "p99",
        "wait p95",
        "oldest",
    ]
    return display.table(rows, header)


def workers_html(
    metrics: TaskQueueMetrics, here: str | None, progress: Mapping[str, str] | None = None
) -> tuple[str, str]:
    """The workers' summary line and table; ``here`` is this process's worker id; ``progress``
    what running tasks reported, by task id."""
    rows = []
    for w in metrics.workers:
        label = f"{w.host or '?'}:{w.pid or '?'}" + (" (this process)" if w.worker_id == here else "")
        scaler = w.autoscaler or {}
        target = (
            f"{scaler.get('target')} ({scaler.get('min_workers')}..{scaler.get('max_workers')})"
            if scaler
            else "-"
        )
        idle = max(0, w.threads - w.busy_threads)
        heartbeat = display.duration(w.heartbeat_age_seconds)
        rows.append((label, ",".join(w.queues), w.threads, w.busy_threads, idle, target, heartbeat))
    idle = max(0, metrics.active_workers - metrics.busy_workers)
    summary = (
        f"<b>{metrics.worker_processes}</b> process(es) · <b>{metrics.active_workers}</b> threads · "
        f"<b>{metrics.busy_workers}</b> busy · <b>{idle}</b> idle · "
        f"<b>{metrics.tasks_per_worker:.2f}</b> pending per thread"
    )
    header = ["process", "queues", "threads", "busy", "idle", "autoscaler target", "heartbeat"]
    table = display.table(rows, header) if rows else MUTED.format("no live worker process")
    return summary, table + running_html(metrics, progress)


#: Busy threads listed under the workers table (the rest are counted).
RUNNING_LIMIT = 20


def running_html(metrics: TaskQueueMetrics, progress: Mapping[str, str] | None = None) -> str:
    """What each busy thread runs, for how long (counted to the snapshot's instant) and how
    far it got (``progress``: what each task reported, by task id)."""
    progress = progress or {}
    busy = [
        (w, t)
        for w in metrics.workers
        for t in sorted(w.thread_details, key=lambda t: -(t.running_seconds or 0.0))
        if t.task_id
    ]
    if not busy:
        return ""
    rows = [
        (
            f"{w.host or '?'}:{w.pid or '?'}",
            t.name,
            t.task_name or "?",
            (t.task_id or "")[:12],
            display.duration(t.running_seconds),
            progress.get(t.task_id or "", ""),
        )
        for w, t in busy[:RUNNING_LIMIT]
    ]
    more = len(busy) - len(rows)
    table = display.table(rows, ["process", "thread", "running", "id", "for", "progress"])
    return table + (MUTED.format(f"… and {more} more busy threads") if more > 0 else "")


def scheduled_html(snap: Snapshot) -> tuple[str, str]:
    """The title and table of the delayed tasks and retries due next."""
    title = f"<h4 style='margin:4px 0'>Scheduled ({snap.scheduled})</h4>"
    rows = [
        (
            e.id[:12],
            e.name,
            e.queue,
            e.status.lower(),
            display.clock(e.due_ms),
            "due" if e.due_ms <= snap.now_ms else "in " + display.duration((e.due_ms - snap.now_ms) / 1000),
        )
        for e in snap.upcoming
    ]
    if not rows:
        return title, MUTED.format("no delayed task or retry waiting")
    more = snap.scheduled - len(rows)
    table = display.table(rows, ["id", "task", "queue", "status", "runs at", ""])
    return title, table + (MUTED.format(f"… and {more} more") if more > 0 else "")


def periodic_html(
    snap: Snapshot, declared: Mapping[str, PeriodicDefinition], scheduler_here: bool
) -> tuple[str, str]:
    """The title and table of the periodic tasks (stored ones and this process's)."""
    periodic = periodic_list(snap.periodic_docs, snap.periodic_due, dict(declared))
    here = "running in this process" if scheduler_here else "not running here"
    title = (
        f"<h4 style='margin:8px 0 4px'>Periodic ({len(periodic)}) "
        f"<span class='tq-muted' style='font-weight:normal'>· scheduler {here}</span></h4>"
    )

    def when(moment: Any) -> str:
        if moment is None:
            return "-"
        ms = moment.timestamp() * 1000
        relative = "due" if ms <= snap.now_ms else "in " + display.duration((ms - snap.now_ms) / 1000)
        return f"{display.clock(ms)} ({relative})"

    rows = [
        (
            p.name,
            p.schedule,
            p.queue,
            when(p.next_run) if p.registered else "not registered (no scheduler started)",
            display.clock(p.last_run.timestamp() * 1000) if p.last_run else "-",
            p.runs,
        )
        for p in periodic
    ]
    if not rows:
        return title, MUTED.format("no periodic task (q.periodic(...))")
    return title, display.table(rows, ["name", "schedule", "queue", "next run", "last run", "runs"])


def dead_title_html(snap: Snapshot) -> str:
    total = sum(snap.dead_letters.values())
    shown = f", newest {len(snap.dead)} shown" if total > len(snap.dead) else ""
    return f"<h4 style='margin:4px 0'>Dead letters ({total}{shown})</h4>"


def dead_options(snap: Snapshot) -> list[tuple[str, str]]:
    """One (label, task id) per dead letter listed, for the selection box."""
    options = []
    for e in snap.dead:
        error = decode_error(e.error, e.reason)
        label = (
            f"{display.clock(e.died_ms)}  {e.queue}  {e.name or '?'}  {e.id[:12]}  "
            f"{error.type}: {display.short(error.message, 80)}"
        )
        options.append((label, e.id))
    return options


def dead_detail_html(entry: DeadEntry) -> str:
    """One dead letter: the task, its attempts and reason, the error and its traceback."""
    error = decode_error(entry.error, entry.reason)
    traceback = f"<pre class='tq-pre'>{display.esc(error.traceback)}</pre>" if error.traceback else ""
    return (
        display.fields(
            [
                ("task", display.esc(f"{entry.name} ({entry.id}) in {entry.queue}")),
                ("attempts", display.esc(entry.attempts)),
                ("reason", display.esc(entry.reason)),
                ("error", display.error_html(error.type, error.message)),
            ]
        )
        + traceback
    )


__all__ = [
    "dead_detail_html",
    "dead_options",
    "dead_title_html",
    "periodic_html",
    "queue_metrics_html",
    "rates_html",
    "running_html",
    "scheduled_html",
    "totals_html",
    "workers_html",
]
