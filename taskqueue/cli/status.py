"""``taskqueue status``: queues, live workers, periodic tasks and dead letters, as tables or JSON.

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
from taskqueue.cli.app import open_queue
from taskqueue.cli.group import app_option, cli, json_option, url_option
from taskqueue.config import Settings
from taskqueue.queue import TaskQueue
from taskqueue.urls import mask_url

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection
    from taskqueue.periodic import PeriodicTask


def gather_status(q: TaskQueue) -> dict[str, Any]:
    """Everything ``taskqueue status`` shows about ``q``, as plain data (no secrets)."""
    inspection: Inspection = q.broker
    return status_report(inspection, q.settings, q.url, q.periodic_tasks())


def status_report(
    inspection: Inspection, settings: Settings, url: str, periodic: Sequence[PeriodicTask]
) -> dict[str, Any]:
    """The status of one namespace: what Redis holds, and the periodic tasks given."""
    names = settings.queues_by_priority()
    queues = _queue_rows(inspection, settings, names)
    workers = _worker_rows(inspection.live_workers())
    return {
        "url": mask_url(url),
        "namespace": settings.redis.namespace,
        "queues": queues,
        "workers": workers,
        "periodic": [dataclasses.asdict(p) for p in periodic],
        "totals": {
            "pending": sum(q["pending"] for q in queues),
            "dead": sum(q["dead"] for q in queues),
            "workers": len(workers),
            "threads": sum(int(w["threads"] or 0) for w in workers),
        },
    }


def _queue_rows(inspection: Inspection, settings: Settings, names: list[str]) -> list[dict[str, Any]]:
    pending = inspection.queue_lengths(names)
    dead = inspection.dead_count(names)
    stats = inspection.stats(names)
    paused = inspection.paused_queues()
    return [
        {
            "name": name,
            "priority": settings.queues[name],
            "pending": int(pending.get(name, 0)),
            "dead": int(dead.get(name, 0)),
            "processed": stats.get(name, {}).get("processed", 0),
            "failed": stats.get(name, {}).get("failed", 0),
            "retried": stats.get(name, {}).get("retried", 0),
            "paused": name in paused,
        }
        for name in names
    ]


def _worker_rows(live: Mapping[str, Mapping[str, Any]]) -> list[dict[str, Any]]:
    now = time.time()
    rows = []
    for worker_id, info in sorted(live.items()):
        started = info.get("started_at")
        rows.append(
            {
                "id": worker_id,
                "host": info.get("host", ""),
                "pid": info.get("pid"),
                "threads": info.get("threads", 0),
                "busy": info.get("busy", 0),
                "queues": info.get("queues", []),
                "started_at": started,
                "uptime_s": round(now - started, 1) if started else None,
                "heartbeat_ms": info.get("heartbeat_ms"),
            }
        )
    return rows


# -- text tables ---------------------------------------------------------------------------
def cut(value: Any, width: int) -> str:
    """``value`` as text of at most ``width`` characters; a longer one ends in '~'."""
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: max(1, width - 1)] + "~"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[int]) -> str:
    """Fixed-width columns (numbers right-aligned); cells over their width end in '~'."""
    numeric = [bool(rows) and isinstance(rows[0][i], (int, float)) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = []
        for i, (value, width) in enumerate(zip(row, widths, strict=True)):
            text = cut(value, width)
            cells.append(text.rjust(width) if numeric[i] else text.ljust(width))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _moment(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone().strftime("%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def _queues_table(queues: list[dict[str, Any]]) -> str:
    rows = [
        [
            q["name"],
            q["priority"],
            q["pending"],
            q["dead"],
            q["processed"],
            q["failed"],
            "paused" if q["paused"] else "",
        ]
        for q in queues
    ]
    headers = ["QUEUE", "PRIO", "PENDING", "DEAD", "PROCESSED", "FAILED", "STATE"]
    return table(headers, rows, [20, 5, 9, 7, 10, 8, 6])


def _workers_table(workers: list[dict[str, Any]]) -> str:
    rows = [
        [
            w["host"],
            w["pid"],
            w["threads"],
            w["busy"],
            _ago(w["uptime_s"]),
            ",".join(w["queues"]),
            w["id"].rsplit(":", 1)[-1],
        ]
        for w in workers
    ]
    return table(["HOST", "PID", "THREADS", "BUSY", "UP", "QUEUES", "ID"], rows, [16, 7, 7, 4, 5, 18, 8])


def _periodic_table(periodic: list[dict[str, Any]]) -> str:
    rows = [
        [p.get("name", ""), p.get("queue", ""), p.get("schedule", ""), _moment(p.get("next_run"))]
        for p in periodic
    ]
    return table(["NAME", "QUEUE", "SCHEDULE", "NEXT RUN"], rows, [30, 8, 22, 14])


def render_status(data: dict[str, Any]) -> str:
    """The status as text tables that fit in 80 columns."""
    out = [cut(f"taskqueue {__version__}  {data['url']}  namespace {data['namespace']}", 80), ""]
    out.append(_queues_table(data["queues"]))
    workers = data["workers"]
    out += ["", f"WORKERS: {len(workers)} process(es), {data['totals']['threads']} thread(s)"]
    if workers:
        out.append(_workers_table(workers))
    if data["periodic"]:
        out += ["", f"PERIODIC: {len(data['periodic'])}", _periodic_table(data["periodic"])]
    total_dead = data["totals"]["dead"]
    out += ["", f"DEAD LETTERS: {total_dead}" + ("  (taskqueue dead list)" if total_dead else "")]
    return "\n".join(out)


@cli.command()
@app_option()
@url_option
@json_option
@click.pass_context
def status(ctx: click.Context, app: str | None, url: str | None, as_json: bool) -> None:
    """Show queues (pending, dead, counters), live workers, periodic tasks and dead letters."""
    data = gather_status(open_queue(ctx, app, url))
    click.echo(json.dumps(data, indent=2, default=str) if as_json else render_status(data))
