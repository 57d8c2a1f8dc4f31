"""Limits: every rate bucket and concurrency pool per queue and task name (flow control).

Read from the queue groups' limits index (written when a limited task is enqueued):
the rate, the next free start, the slots taken and the tasks held for one.
"""

from __future__ import annotations

from typing import Any

from flask import Blueprint

from taskqueue.dashboard.render import page
from taskqueue.dashboard.views.live import fragment, live_view


def context() -> dict[str, Any]:
    from taskqueue.dashboard.context import state

    backend = state().backend
    if backend.flow is None:
        return {"pools": [], "now_ms": 0}
    now_ms, pools = backend.flow.limit_pools(backend.queues)
    return {"pools": pools, "now_ms": now_ms}


def limits() -> str:
    ctx = context()
    return page("limits.html", "Limits", live=fragment("_limits.html", ctx), view="limits", **ctx)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/limits", "limits", limits)
    live_view(
        "limits",
        "_limits.html",
        context,
        lambda ctx: [[p.queue, p.bucket, p.running, p.held, p.next_start_ms] for p in ctx["pools"]],
    )


__all__ = ["register"]
