"""Periodic tasks: schedule, next and last run, runs and skips; trigger now, pause, resume."""

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
    inspection = _backend().inspection
    snap = inspection.snapshot([], dead_limit=0, scheduled_limit=0)
    paused = inspection.paused_periodic()
    return {"periodic": periodic_list(snap.periodic_docs, snap.periodic_due, {}, paused)}


def periodic() -> str:
    ctx = context()
    return page("periodic.html", "Periodic", live=fragment("_periodic.html", ctx), view="periodic", **ctx)


def _trigger(name: str) -> Any:
    from taskqueue.dashboard.context import back

    if not _backend().inspection.trigger_periodic(name):
        abort(404, f"no periodic task {name!r} is registered")
    return back(f"{name} runs at the next scheduler tick", "periodic")


def _pause(name: str) -> Any:
    from flask import request

    from taskqueue.dashboard.context import back

    paused = request.path.endswith("/pause")
    if not _backend().inspection.pause_periodic(name, paused):
        abort(404, f"no periodic task {name!r} is registered")
    done = "paused: its slots are skipped until resumed" if paused else "resumed: its next slot runs"
    return back(f"{name} {done}", "periodic")


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/periodic", "periodic", periodic)
    bp.add_url_rule("/periodic/<path:name>/trigger", "trigger", _trigger, methods=["POST"])
    bp.add_url_rule("/periodic/<path:name>/pause", "pause_periodic", _pause, methods=["POST"])
    bp.add_url_rule("/periodic/<path:name>/resume", "resume_periodic", _pause, methods=["POST"])
    live_view("periodic", "_periodic.html", context, lambda ctx: [p.name for p in ctx["periodic"]])


__all__ = ["register"]
