"""Scheduled and retrying tasks, soonest first, with their due times; run now, cancel."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, request

from taskqueue.dashboard.render import page
from taskqueue.dashboard.views.common import paging, view_of
from taskqueue.dashboard.views.live import fragment, live_view

STATUSES = ("", "SCHEDULED", "RETRYING")


def context() -> dict[str, Any]:
    from taskqueue.dashboard.context import state

    status = request.args.get("status", "").upper()
    if status not in STATUSES:
        abort(400, f"status must be SCHEDULED or RETRYING (or empty for both), got {status!r}")
    offset, limit = paging()
    (pg,) = state().backend.inspection.task_pages([("scheduled", "")], offset, limit, status=status)
    return {
        "status": status,
        "page": pg,
        "tasks": [view_of(r, s) for r, s in zip(pg.rows, pg.scores, strict=True)],
        "offset": offset,
        "limit": limit,
    }


def scheduled() -> str:
    ctx = context()
    return page("scheduled.html", "Scheduled", live=fragment("_scheduled.html", ctx), view="scheduled", **ctx)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/scheduled", "scheduled", scheduled)
    live_view(
        "scheduled",
        "_scheduled.html",
        context,
        lambda ctx: {"total": ctx["page"].total, "ids": [t.id for t in ctx["tasks"]]},
    )


__all__ = ["register"]
