"""One task in full (status, attempts, history, logs, result or traceback, arguments,
progress; cancel and retry now), and search by task id, task name and status.

Search by name or status reads the indexes that hold tasks by state: the queues
(PENDING), the scheduled set (SCHEDULED, RETRYING), the leases (RUNNING) and
the dead letters (DEAD), a bounded page of each, in one round trip. Finished
tasks (SUCCEEDED, FAILED, CANCELLED) are in no index: they are found by id.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Blueprint, abort, redirect, request, url_for

from taskqueue.dashboard.render import page
from taskqueue.dashboard.views.common import chosen_ids, paging, result_text, view_of

#: Status -> the indexes that hold tasks in it.
SEARCHABLE = {
    "PENDING": ("pending",),
    "SCHEDULED": ("scheduled",),
    "RETRYING": ("scheduled",),
    "RUNNING": ("running",),
    "DEAD": ("dead",),
}
#: What the stored status of a task in an index may be, per status a reader sees.
_STORED = {
    "PENDING": "PENDING",
    "SCHEDULED": "SCHEDULED",
    "RETRYING": "RETRYING",
    "RUNNING": "RUNNING",
    "DEAD": "DEAD",
}


def _backend() -> Any:
    from taskqueue.dashboard.context import state

    return state().backend


def detail(task_id: str) -> Any:
    detail = _backend().inspection.task_detail(task_id)
    if detail is None:
        abort(404, f"task {task_id} is not in Redis: it never existed, was purged, or its record expired")
    view = view_of(detail.record)
    has_result, result = result_text(detail.record)
    progress: Any = None
    if detail.progress:
        try:
            progress = json.loads(detail.progress)
        except ValueError:
            progress = detail.progress
    return page(
        "task.html",
        f"Task {task_id}",
        task=view,
        detail=detail,
        has_result=has_result,
        result=result,
        progress=progress,
        links=_links(detail.record),
    )


def _links(record: Any) -> dict[str, Any]:
    """A task's place in a workflow: what it depends on (and still waits for), what
    depends on it, each with its status; one more round trip, only for such tasks."""
    deps_port = _backend().dependencies
    dependents = deps_port.dependents(record.id) if deps_port is not None else []
    dependencies = list(record.dependencies)
    if not dependencies and not dependents:
        return {"dependencies": [], "dependents": [], "workflow": record.workflow, "cause": record.cause}
    ids = dependencies + dependents
    status = dict(zip(ids, _backend().producer.task_statuses(ids), strict=True))
    awaited = set(deps_port.waiting_for([record.id])[0]) if deps_port is not None else set()
    return {
        "dependencies": [(i, status.get(i) or "EXPIRED", i in awaited) for i in dependencies],
        "dependents": [(i, status.get(i) or "EXPIRED") for i in dependents],
        "workflow": record.workflow,
        "cause": record.cause,
    }


def _cancel(task_id: str) -> Any:
    from taskqueue.dashboard.context import back

    before = _backend().producer.cancel(task_id)
    if before is None:
        abort(404, f"task {task_id} is not in Redis")
    return back(f"cancel asked of task {task_id} (it was {before})", "overview")


def _retry(task_id: str) -> Any:
    from taskqueue.dashboard.context import back

    (moved,) = _backend().inspection.retry_now([task_id])
    if not moved:
        abort(
            409, f"task {task_id} is not scheduled, retrying, dead, failed or cancelled: nothing to run now"
        )
    return back(f"task {task_id} ({moved}) is back in its queue", "overview")


def _bulk_run_now() -> Any:
    from taskqueue.dashboard.context import back

    moved = _backend().inspection.retry_now(chosen_ids())
    return back(f"{sum(1 for m in moved if m)} task(s) moved to their queue", "scheduled")


def _bulk_cancel() -> Any:
    from taskqueue.dashboard.context import back

    before = _backend().producer.cancel_many(chosen_ids())
    return back(f"cancel asked of {sum(1 for b in before if b)} task(s)", "scheduled")


def search() -> Any:
    backend = _backend()
    task_id = request.args.get("id", "").strip()
    name = request.args.get("name", "").strip()
    status = request.args.get("status", "").strip().upper()
    if task_id:
        if backend.inspection.task_detail(task_id) is not None:
            return redirect(url_for(".task", task_id=task_id), 303)
        return page(
            "search.html",
            "Search",
            results=None,
            missing=task_id,
            name=name,
            status=status,
            statuses=list(SEARCHABLE),
            offset=0,
            limit=0,
            next_offset=None,
        )
    if status and status not in SEARCHABLE:
        abort(
            400,
            f"status must be one of {', '.join(SEARCHABLE)} (finished tasks are found by id), got {status!r}",
        )
    offset, limit = paging()
    results, pages = None, []
    if name or status:
        indexes = SEARCHABLE[status] if status else ("pending", "scheduled", "running", "dead")
        requests = [(i, q) for i in indexes for q in (backend.queues if i in ("pending", "dead") else [""])]
        pages = backend.inspection.task_pages(
            requests, offset, limit, name=name, status=_STORED.get(status, "")
        )
        results = [view_of(r, s) for pg in pages for r, s in zip(pg.rows, pg.scores, strict=True)]
    more = [pg.next_offset for pg in pages if pg.next_offset is not None]
    return page(
        "search.html",
        "Search",
        results=results,
        missing="",
        name=name,
        status=status,
        statuses=list(SEARCHABLE),
        offset=offset,
        limit=limit,
        next_offset=min(more) if more else None,
    )


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/task/<path:task_id>", "task", detail)
    bp.add_url_rule("/task/<path:task_id>/cancel", "cancel", _cancel, methods=["POST"])
    bp.add_url_rule("/task/<path:task_id>/retry", "retry", _retry, methods=["POST"])
    bp.add_url_rule("/tasks/run-now", "run_now", _bulk_run_now, methods=["POST"])
    bp.add_url_rule("/tasks/cancel", "cancel_many", _bulk_cancel, methods=["POST"])
    bp.add_url_rule("/search", "search", search)


__all__ = ["SEARCHABLE", "register"]
