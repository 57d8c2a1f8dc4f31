"""Dead letters, newest first, filtered by queue and task name: their error and reason;
requeue and delete, chosen ones or all of a queue."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort, request

from taskqueue.dashboard.render import page
from taskqueue.dashboard.views.common import checked_queue, chosen_ids, paging, view_of
from taskqueue.dashboard.views.live import fragment, live_view


def _backend() -> Any:
    from taskqueue.dashboard.context import state

    return state().backend


def context() -> dict[str, Any]:
    backend = _backend()
    queue = checked_queue(backend.queues, request.args.get("queue", ""), allow_all=True)
    name = request.args.get("name", "").strip()
    offset, limit = paging()
    queues = [queue] if queue else backend.queues
    pages = backend.inspection.task_pages([("dead", q) for q in queues], offset, limit, name=name)
    tasks = [view_of(r, s) for pg in pages for r, s in zip(pg.rows, pg.scores, strict=True)]
    tasks.sort(key=lambda t: -(t.score or 0))
    more = [pg.next_offset for pg in pages if pg.next_offset is not None]
    return {
        "queue": queue,
        "name": name,
        "queues": backend.queues,
        "tasks": tasks[:limit] if len(queues) > 1 else tasks,
        "total": sum(pg.total for pg in pages),
        "next_offset": min(more) if more else None,
        "offset": offset,
        "limit": limit,
    }


def dead() -> str:
    ctx = context()
    return page("dead.html", "Dead letters", live=fragment("_dead.html", ctx), view="dead", **ctx)


def _requeue() -> Any:
    from taskqueue.dashboard.context import back

    backend = _backend()
    if request.form.get("all"):
        queue = checked_queue(backend.queues, request.form.get("queue", ""))
        return back(f"requeued {backend.admin.requeue_dead(queue=queue)} dead letter(s) of {queue}", "dead")
    ids = [i.split(" ", 1)[-1] for i in chosen_ids()]
    moved = backend.inspection.retry_now(ids)
    return back(f"requeued {sum(1 for m in moved if m == 'DEAD')} dead letter(s)", "dead")


def _delete() -> Any:
    from taskqueue.dashboard.context import back

    backend = _backend()
    if request.form.get("all"):
        queue = checked_queue(backend.queues, request.form.get("queue", ""))
        return back(f"deleted {backend.admin.purge_dead(queue)} dead letter(s) of {queue}", "dead")
    by_queue: dict[str, list[str]] = {}
    for value in chosen_ids():
        queue, sep, task_id = value.partition(" ")
        if not sep:
            abort(400, "each chosen dead letter must be '<queue> <task id>'")
        by_queue.setdefault(checked_queue(backend.queues, queue), []).append(task_id)
    n = sum(backend.inspection.delete_dead(q, ids) for q, ids in by_queue.items())
    return back(f"deleted {n} dead letter(s)", "dead")


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/dead", "dead", dead)
    bp.add_url_rule("/dead/requeue", "requeue_dead", _requeue, methods=["POST"])
    bp.add_url_rule("/dead/delete", "delete_dead", _delete, methods=["POST"])
    live_view(
        "dead",
        "_dead.html",
        context,
        lambda ctx: {"total": ctx["total"], "ids": [t.id for t in ctx["tasks"]]},
    )


__all__ = ["register"]
