"""Periodic tasks: schedule, next and last run, runs and skips; trigger now."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, abort

from taskqueue.dashboard.render import page
from taskqueue.dashboard.views.live import fragment, live_view
from taskqueue.periodic import periodic_list


def _backend() -> Any:
    from taskqueue.dashboard.context import state

    return state().backend


def context() -> dict[str, Any]:
    snap = _backend().inspection.snapshot([], dead_limit=0, scheduled_limit=0)
    return {"periodic": periodic_list(snap.periodic_docs, snap.periodic_due, {})}


def periodic() -> str:
    ctx = context()
    return page("periodic.html", "Periodic", live=fragment("_periodic.html", ctx), view="periodic", **ctx)


def _trigger(name: str) -> Any:
    from taskqueue.dashboard.context import back

    if not _backend().inspection.trigger_periodic(name):
        abort(404, f"no periodic task {name!r} is registered")
    return back(f"{name} runs at the next scheduler tick", "periodic")


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/periodic", "periodic", periodic)
    bp.add_url_rule("/periodic/<path:name>/trigger", "trigger", _trigger, methods=["POST"])
    live_view("periodic", "_periodic.html", context, lambda ctx: [p.name for p in ctx["periodic"]])


__all__ = ["register"]
