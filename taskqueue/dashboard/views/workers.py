"""Workers: every live process (host, pid, threads, queues, heartbeat age) and what each
of its threads runs, for how long (as the process last published it)."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint

from taskqueue.dashboard.render import page
from taskqueue.dashboard.views.live import fragment, live_view


def context() -> dict[str, Any]:
    from taskqueue.dashboard.context import state

    backend = state().backend
    snap = backend.inspection.snapshot(backend.queues, dead_limit=0, scheduled_limit=0)
    now = time.time()
    rows = []
    for worker_id, info in sorted(snap.workers.items()):
        slots = []
        for s in info.get("slots") or []:
            if not isinstance(s, dict):
                continue
            since = s.get("since")
            slots.append(
                {
                    "thread": str(s.get("thread") or ""),
                    "task": s.get("task") or "",
                    "task_id": s.get("task_id") or "",
                    "for_s": max(0.0, now - since) if isinstance(since, (int, float)) else s.get("running_s"),
                }
            )
        heartbeat = info.get("heartbeat_ms")
        started = info.get("started_at")
        rows.append(
            {
                "id": worker_id,
                "host": info.get("host", ""),
                "pid": info.get("pid"),
                "threads": info.get("threads", 0),
                "queues": info.get("queues") or [],
                "busy": sum(1 for s in slots if s["task_id"]),
                "heartbeat_s": (snap.now_ms - int(heartbeat)) / 1000 if heartbeat else None,
                "up_s": now - started if isinstance(started, (int, float)) else None,
                "slots": slots,
            }
        )
    return {"workers": rows}


def workers() -> str:
    ctx = context()
    return page("workers.html", "Workers", live=fragment("_workers.html", ctx), view="workers", **ctx)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/workers", "workers", workers)
    live_view("workers", "_workers.html", context, lambda ctx: ctx["workers"])


__all__ = ["register"]
