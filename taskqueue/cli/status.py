"""``taskqueue status``: queues, live workers and what their threads run, unserved tasks,
periodic tasks and dead letters, as tables or JSON.

The report is plain data read through the broker's ``Inspection`` port, so
``flask taskqueue status`` and the demo print the same thing.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import click

from taskqueue import __version__
from taskqueue.broker.ports import Dependencies, ProgressStore
from taskqueue.cli.app import open_queue
from taskqueue.cli.group import app_option, cli, json_option, url_option
from taskqueue.cli.tables import ago, name_width, table
from taskqueue.cli.tasks import unserved_lines, unserved_report
from taskqueue.config import Settings
from taskqueue.metrics import from_reading
from taskqueue.progress import decode as decode_progress
from taskqueue.queue import TaskQueue
from taskqueue.urls import mask_url

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection
    from taskqueue.broker.readings import MetricsReading
    from taskqueue.periodic import PeriodicTask


def gather_status(q: TaskQueue) -> dict[str, Any]:
    """Everything ``taskqueue status`` shows about ``q``, as plain data (no secrets)."""
    inspection: Inspection = q.broker
    return status_report(inspection, q.settings, q.url, q.periodic_tasks())


def status_report(
    inspection: Inspection, settings: Settings, url: str, periodic: Sequence[PeriodicTask]
) -> dict[str, Any]:
    """The status of one namespace: what Redis holds, and the periodic tasks given.

    "running" counts the threads whose task's code runs, as live workers
    publish them; a leased task that waits in a worker's prefetch buffer is
    "prefetched" (leases minus running), not running.
    """
    names = settings.queues_by_priority()
    reading = inspection.read_metrics(names)
    queues = _queue_rows(reading, settings, names)
    figures = from_reading(reading, settings).queue_metrics
    last_minute = {m.queue_name: m.throughput_last_minute for m in figures}
    for row in queues:
        row["last_minute"] = last_minute.get(row["name"], 0)
    workers = _worker_rows(reading.workers, time.time())
    running = sorted(
        (
            {**slot, "worker": w["id"], "pid": w["pid"]}
            for w in workers
            for slot in w["slots"]
            if slot["task_id"]
        ),
        key=lambda r: -(r["running_s"] or 0),
    )
    if running and isinstance(inspection, ProgressStore):
        for row, raw in zip(running, inspection.read_progress([r["task_id"] for r in running]), strict=True):
            reported = decode_progress(raw)
            row["progress"] = str(reported) if reported is not None else None
    busy = sum(w["busy"] for w in workers)
    grace = settings.workers.unknown_task_grace
    unserved = unserved_report(inspection.unserved(limit=3), reading.now_ms, grace)
    waiting = _waiting_rows(inspection, reading, names)
    return {
        "url": mask_url(url),
        "namespace": settings.redis.namespace,
        "queues": queues,
        "workers": workers,
        "running": running,
        "unserved": unserved,
        "waiting": waiting,
        "periodic": [dataclasses.asdict(p) for p in periodic],
        "totals": {
            "pending": sum(q["pending"] for q in queues),
            "scheduled": reading.scheduled,
            "waiting": sum(reading.waiting.values()),
            "running": busy,
            "prefetched": max(0, reading.leased - busy),
            "unserved": unserved["count"],
            "dead": sum(q["dead"] for q in queues),
            "workers": len(workers),
            "threads": sum(int(w["threads"] or 0) for w in workers),
            "idle_threads": max(0, sum(int(w["threads"] or 0) for w in workers) - busy),
            # tasks that finished (succeeded or failed) in the last 60 s, every process
            "last_minute": sum(q["last_minute"] for q in queues),
        },
    }


def _queue_rows(reading: MetricsReading, settings: Settings, names: list[str]) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "priority": settings.queues[name],
            "pending": int(reading.pending.get(name, 0)),
            "waiting": int(reading.waiting.get(name, 0)),
            "dead": int(reading.dead_letters.get(name, 0)),
            "processed": reading.stats.get(name, {}).get("processed", 0),
            "failed": reading.stats.get(name, {}).get("failed", 0),
            "retried": reading.stats.get(name, {}).get("retried", 0),
            "paused": name in reading.paused,
        }
        for name in names
    ]


def _waiting_rows(
    inspection: Any, reading: MetricsReading, names: list[str], limit: int = 5
) -> list[dict[str, Any]]:
    """A few WAITING tasks and the dependencies each still waits for (workflows)."""
    if not isinstance(inspection, Dependencies) or not any(reading.waiting.values()):
        return []
    ids = [i for name in names if reading.waiting.get(name) for i in inspection.waiting_ids(name, limit)][
        :limit
    ]
    return [{"id": i, "waiting_for": deps} for i, deps in zip(ids, inspection.waiting_for(ids), strict=True)]


def _worker_rows(live: Mapping[str, Mapping[str, Any]], now: float) -> list[dict[str, Any]]:
    rows = []
    for worker_id, info in sorted(live.items()):
        started = info.get("started_at")
        slots = [_slot(s, now) for s in info.get("slots") or [] if isinstance(s, dict)]
        rows.append(
            {
                "id": worker_id,
                "host": info.get("host", ""),
                "pid": info.get("pid"),
                "threads": info.get("threads", 0),
                # busy threads are those running a task's code; a worker that publishes no
                # slots (another version) is taken at its word
                "busy": sum(1 for s in slots if s["task_id"]) if "slots" in info else info.get("busy", 0),
                "queues": info.get("queues", []),
                "started_at": started,
                "uptime_s": round(now - started, 1) if started else None,
                "heartbeat_ms": info.get("heartbeat_ms"),
                "slots": slots,
            }
        )
    return rows


def _slot(published: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One thread's state; how long its task has run is counted from when it started
    (``since``), so it is current however long ago the worker published it."""
    since, running_s = published.get("since"), published.get("running_s")
    if isinstance(since, (int, float)):
        running_s = round(max(0.0, now - since), 1)
    return {
        "thread": str(published.get("thread") or ""),
        "task": published.get("task"),
        "task_id": published.get("task_id"),
        "running_s": running_s,
    }


# -- text tables ---------------------------------------------------------------------------
def _moment(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone().strftime("%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def _queues_table(queues: list[dict[str, Any]]) -> str:
    rows = [
        [
            q["name"],
            q["priority"],
            q["pending"],
            q.get("waiting", 0),
            q["dead"],
            q["processed"],
            q["failed"],
            q["last_minute"],
            "paused" if q["paused"] else "",
        ]
        for q in queues
    ]
    headers = ["QUEUE", "PRIO", "PENDING", "WAITING", "DEAD", "PROCESSED", "FAILED", "LAST MIN", "STATE"]
    others = [4, 7, 7, 6, 9, 6, 8, 6]
    name_w = name_width((row[0] for row in rows), "QUEUE", others)
    return table(headers, rows, [name_w, *others])


def _workers_table(workers: list[dict[str, Any]]) -> str:
    """One row per process; the host (a name) cut only past NAME_FLOOR, the queues it
    serves last and never cut."""
    rows = [
        [
            w["host"],
            w["pid"],
            w["threads"],
            w["busy"],
            ago(w["uptime_s"]),
            w["id"].rsplit(":", 1)[-1][:8],
            ",".join(w["queues"]),
        ]
        for w in workers
    ]
    others = [7, 7, 4, 5, 8]
    queues_w = max([6, *(len(row[6]) for row in rows)])
    host_w = name_width((row[0] for row in rows), "HOST", [*others, min(queues_w, 18)])
    return table(["HOST", "PID", "THREADS", "BUSY", "UP", "ID", "QUEUES"], rows, [host_w, *others, queues_w])


def _running_table(running: list[dict[str, Any]]) -> str:
    """What each busy thread runs, for how long, where (pid/thread), how far it got (what
    it reported with ``current_task().progress``); the task name last, as in ``taskqueue
    dead list``, so only a long name makes a line longer than 80."""
    rows = [
        [
            r["task_id"],
            ago(r["running_s"]),
            f"{r['pid']}/{r['thread'].rsplit('-', 1)[-1]}",
            r.get("progress") or "",
            r["task"] or "?",
        ]
        for r in running
    ]
    others = [32, 5, 10, 12]
    name_w = name_width((row[4] for row in rows), "TASK", others)
    return table(["TASK ID", "FOR", "PID/THREAD", "PROGRESS", "TASK"], rows, [*others, name_w])


def _periodic_table(periodic: list[dict[str, Any]]) -> str:
    rows = [
        [
            p.get("name", ""),
            p.get("queue", ""),
            _moment(p.get("next_run")),
            p.get("schedule", "") + ("  (paused)" if p.get("paused") else ""),
        ]
        for p in periodic
    ]
    others = [8, 14, 40]
    name_w = name_width((row[0] for row in rows), "NAME", others)
    return table(["NAME", "QUEUE", "NEXT RUN", "SCHEDULE"], rows, [name_w, *others])


def render_status(data: dict[str, Any]) -> str:
    """The status as text tables (80 columns unless a name needs more: none is cut below
    NAME_FLOOR characters, and the header line is never cut)."""
    totals = data["totals"]
    out = [f"taskqueue {__version__}  {data['url']}  namespace {data['namespace']}", ""]
    out.append(_queues_table(data["queues"]))
    out.append(f"LAST MINUTE: {totals['last_minute']} task(s) finished, every process")
    if totals["scheduled"]:
        out.append(f"SCHEDULED: {totals['scheduled']} task(s), delayed or waiting to retry")
    if totals.get("waiting"):
        out.append(f"WAITING: {totals['waiting']} task(s) waiting for their dependencies (workflows)")
        for w in data.get("waiting", []):
            deps = ", ".join(w["waiting_for"][:3]) + (" ..." if len(w["waiting_for"]) > 3 else "")
            out.append(f"  {w['id']} waits for {len(w['waiting_for'])}: {deps}")
    workers = data["workers"]
    out += [
        "",
        f"WORKERS: {len(workers)} process(es), {totals['threads']} thread(s), "
        f"{totals['running']} busy, {totals['idle_threads']} idle",
    ]
    if workers:
        out.append(_workers_table(workers))
    out += [
        "",
        f"RUNNING: {totals['running']} task(s); prefetched (leased, not started): {totals['prefetched']}",
    ]
    if data["running"]:
        out.append(_running_table(data["running"]))
    unserved = unserved_lines(data["unserved"])
    if unserved:
        out += ["", *unserved]
    if data["periodic"]:
        out += ["", f"PERIODIC: {len(data['periodic'])}", _periodic_table(data["periodic"])]
    total_dead = totals["dead"]
    out += ["", f"DEAD LETTERS: {total_dead}" + ("  (taskqueue dead list)" if total_dead else "")]
    return "\n".join(out)


@cli.command()
@app_option()
@url_option
@json_option
@click.pass_context
def status(ctx: click.Context, app: str | None, url: str | None, as_json: bool) -> None:
    """Show queues, live workers and what their threads run, unserved, periodic and dead tasks."""
    data = gather_status(open_queue(ctx, app, url))
    click.echo(json.dumps(data, indent=2, default=str) if as_json else render_status(data))
