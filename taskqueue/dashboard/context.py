"""What a request of the dashboard works with: its state (backend, access, banner)
and the redirect back after a change. Views and the blueprint both import this."""

from __future__ import annotations

import dataclasses
from urllib.parse import quote

from flask import Response, current_app, redirect, request, url_for

from taskqueue.dashboard.auth import Access
from taskqueue.dashboard.backend import Backend

EXTENSION = "taskqueue_dashboard"


@dataclasses.dataclass(frozen=True)
class DashboardState:
    backend: Backend
    access: Access
    #: Shown on every page (no token: who can reach it; read-only), None for none.
    banner: str | None = None
    #: Who may show the dashboard in a frame (CSP): itself only, but a notebook's page too
    #: for ``q.dashboard()``.
    frame_ancestors: str = "'self'"


def state() -> DashboardState:
    found: DashboardState = current_app.extensions[EXTENSION][request.blueprint]
    return found


def safe_next(target: str | None, default: str) -> str:
    """A redirect target only within this site: a path, never '//host' or a full URL."""
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def back(message: str = "", default_endpoint: str = "overview") -> Response:
    """After a change: 303 to where the form came from (``next``), with a message to show."""
    target = safe_next(request.form.get("next"), url_for(f".{default_endpoint}"))
    if message:
        target += ("&" if "?" in target else "?") + "msg=" + quote(message)
    return redirect(target, 303)  # type: ignore[return-value]


__all__ = ["EXTENSION", "DashboardState", "back", "safe_next", "state"]
