"""Workflows: the newest chains, groups and chords with how far each got, and one
workflow's members in order with their status (DESIGN 10).

Two round trips a page whatever a workflow's size: the records (one read per queue
group), then the status of every member shown (one pipeline).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from flask import Blueprint, abort

from taskqueue.dashboard.render import page
from taskqueue.dashboard.views.live import fragment, live_view

#: Workflows listed on the page, newest first.
LISTED = 50
#: Statuses that end a task.
_FINAL = {"SUCCEEDED", "FAILED", "DEAD", "CANCELLED"}


def _backend() -> Any:
    from taskqueue.dashboard.context import state

    return state().backend


def context() -> dict[str, Any]:
    backend = _backend()
    if backend.dependencies is None:
        return {"rows": []}
    records = backend.dependencies.workflows(backend.queues, LISTED)
    ids = [task_id for r in records for task_id, _ in r.members]
    statuses = dict(zip(ids, backend.producer.task_statuses(ids), strict=True)) if ids else {}
    rows = []
    for r in records:
        counts = Counter(statuses.get(task_id) or "EXPIRED" for task_id, _ in r.members)
        rows.append(
            {
                "record": r,
                "total": len(r.members),
                "done": sum(n for s, n in counts.items() if s in _FINAL),
                "failed": sum(counts[s] for s in ("FAILED", "DEAD", "CANCELLED")),
                "waiting": counts["WAITING"],
                "counts": dict(sorted(counts.items())),
            }
        )
    return {"rows": rows}


def workflows() -> str:
    ctx = context()
    return page("workflows.html", "Workflows", live=fragment("_workflows.html", ctx), view="workflows", **ctx)


def detail(workflow_id: str) -> str:
    backend = _backend()
    record = backend.dependencies.workflow(workflow_id) if backend.dependencies is not None else None
    if record is None:
        abort(404, f"workflow {workflow_id} is not in Redis: it never existed, or its record expired")
    ids = [task_id for task_id, _ in record.members]
    statuses = backend.producer.task_statuses(ids) if ids else []
    members = [
        {"id": task_id, "queue": queue, "status": status or "EXPIRED"}
        for (task_id, queue), status in zip(record.members, statuses, strict=True)
    ]
    return page("workflow.html", f"Workflow {workflow_id}", record=record, members=members)


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/workflows", "workflows", workflows)
    bp.add_url_rule("/workflows/<workflow_id>", "workflow", detail)
    live_view(
        "workflows",
        "_workflows.html",
        context,
        lambda ctx: [[r["record"].id, r["done"], r["total"], r["failed"]] for r in ctx["rows"]],
    )


__all__ = ["register"]
