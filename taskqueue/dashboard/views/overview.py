"""The overview: totals, health, and per queue the throughput (succeeded and failed
attempts per minute) and execution time (p50, p95) over the chosen range, from the
per-minute history in Redis (so it survives restarts of everything but Redis)."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, request

from taskqueue.dashboard.charts import line_chart
from taskqueue.dashboard.history import RANGES, STEPS, queue_history
from taskqueue.dashboard.render import page
from taskqueue.dashboard.views.live import fragment, live_view


def context() -> dict[str, Any]:
    from taskqueue.dashboard.context import state

    backend = state().backend
    chosen = request.args.get("range", "1h")
    if chosen not in RANGES:
        abort(400, f"range must be one of {', '.join(RANGES)}, got {chosen!r}")
    minutes = RANGES[chosen]
    queues = backend.queues
    snap = backend.inspection.snapshot(queues, dead_limit=0, scheduled_limit=0)
    step = STEPS[chosen]
    current, raw = backend.inspection.history(queues, minutes, step)
    per = "minute" if step == 1 else f"{step} minutes"
    health = backend.health()
    histories = [queue_history(q, raw[q]) for q in queues]
    charts = []
    for h in histories:
        charts.append(
            {
                "queue": h.queue,
                "throughput": line_chart(
                    f"{h.queue}: attempts per {per}",
                    [("succeeded", [f.ok for f in h.minutes]), ("failed", [f.failed for f in h.minutes])],
                    minutes,
                ),
                "latency": line_chart(
                    f"{h.queue}: execution time",
                    [("p50", [f.p50_ms for f in h.minutes]), ("p95", [f.p95_ms for f in h.minutes])],
                    minutes,
                    " ms",
                ),
                "history": h,
            }
        )
    running = sum(
        len([s for s in (w.get("slots") or []) if isinstance(s, dict) and s.get("task_id")])
        for w in snap.workers.values()
    )
    last = [h.minutes[-1] for h in histories]
    totals = {
        "pending": sum(snap.pending.values()),
        "scheduled": snap.scheduled,
        "running": running,
        "dead": sum(snap.dead_letters.values()),
        "workers": len(snap.workers),
        "threads": sum(int(w.get("threads") or 0) for w in snap.workers.values()),
        "processed": sum(s.get("processed", 0) for s in snap.stats.values()),
        "failed": sum(s.get("failed", 0) for s in snap.stats.values()),
        "this_minute_ok": sum(f.ok for f in last),
        "this_minute_failed": sum(f.failed for f in last),
    }
    return {
        "range": chosen,
        "ranges": list(RANGES),
        "minutes": minutes,
        "minutes_per_point": step,
        "last_window": "this minute" if step == 1 else f"in the last {step} minutes",
        "current_minute": current,
        "totals": totals,
        "snap": snap,
        "queues": queues,
        "charts": charts,
        "health": health,
    }


def data(ctx: dict[str, Any]) -> dict[str, Any]:
    return {
        "totals": ctx["totals"],
        "health": ctx["health"].status,
        "queues": {
            c["queue"]: {
                "pending": ctx["snap"].pending.get(c["queue"], 0),
                "ok_per_point": [f.ok for f in c["history"].minutes],
                "failed_per_point": [f.failed for f in c["history"].minutes],
                "p50_ms": [f.p50_ms for f in c["history"].minutes],
                "p95_ms": [f.p95_ms for f in c["history"].minutes],
            }
            for c in ctx["charts"]
        },
        "current_minute": ctx["current_minute"],
        "minutes_per_point": ctx["minutes_per_point"],
    }


def overview() -> str:
    ctx = context()
    return page("overview.html", "Overview", live=fragment("_overview.html", ctx), view="overview", **ctx)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/", "overview", overview)
    live_view("overview", "_overview.html", context, data)


__all__ = ["context", "data", "register"]
