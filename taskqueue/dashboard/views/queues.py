"""Queues: depth, the oldest pending task's age, dead letters and counters per queue;
pause, resume and purge (after typing the queue's name); one queue's pending tasks."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, request

from taskqueue.dashboard.render import page
from taskqueue.dashboard.views.common import checked_queue, paging, view_of
from taskqueue.dashboard.views.live import fragment, live_view


def _backend() -> Any:
    from taskqueue.dashboard.context import state

    return state().backend


def context() -> dict[str, Any]:
    backend = _backend()
    queues = backend.queues
    snap = backend.inspection.snapshot(queues, dead_limit=0, scheduled_limit=0)
    rows = []
    for q in queues:
        enqueued, due = snap.oldest.get(q, (None, None))
        since = max(x for x in (enqueued, due) if x is not None) if (enqueued or due) else None
        rows.append(
            {
                "name": q,
                "priority": backend.settings.queues[q],
                "pending": snap.pending.get(q, 0),
                "oldest_s": (snap.now_ms - since) / 1000 if since else None,
                "dead": snap.dead_letters.get(q, 0),
                "processed": snap.stats.get(q, {}).get("processed", 0),
                "failed": snap.stats.get(q, {}).get("failed", 0),
                "retried": snap.stats.get(q, {}).get("retried", 0),
                "paused": q in snap.paused,
            }
        )
    return {"rows": rows}


def queues() -> str:
    ctx = context()
    return page("queues.html", "Queues", live=fragment("_queues.html", ctx), view="queues", **ctx)


def one_queue(name: str) -> str:
    backend = _backend()
    checked_queue(backend.queues, name)
    offset, limit = paging()
    (pg,) = backend.inspection.task_pages([("pending", name)], offset, limit)
    tasks = [view_of(r) for r in pg.rows]
    return page("queue.html", f"Queue {name}", queue=name, page=pg, tasks=tasks, offset=offset, limit=limit)


def _pause(name: str) -> Any:
    from taskqueue.dashboard.context import back

    backend = _backend()
    checked_queue(backend.queues, name)
    paused = request.path.endswith("/pause")
    backend.inspection.pause(name, paused)
    return back(f"queue {name} {'paused' if paused else 'resumed'}", "queues")


def _purge(name: str) -> Any:
    from taskqueue.dashboard.context import back

    backend = _backend()
    checked_queue(backend.queues, name)
    if request.form.get("confirm", "") != name:
        abort(400, f"to purge, type the name of the queue ({name}) in the confirmation box")
    n = backend.admin.purge(name)
    return back(f"purged {n} pending task(s) of {name}", "queues")


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/queues", "queues", queues)
    bp.add_url_rule("/queues/<name>", "queue", one_queue)
    bp.add_url_rule("/queues/<name>/pause", "pause", _pause, methods=["POST"])
    bp.add_url_rule("/queues/<name>/resume", "resume", _pause, methods=["POST"])
    bp.add_url_rule("/queues/<name>/purge", "purge", _purge, methods=["POST"])
    live_view("queues", "_queues.html", context, lambda ctx: ctx["rows"])


__all__ = ["register"]
