"""Rendering: the templates (Jinja, autoescaped: everything from Redis is text, never
markup), the filters they use, and what every page gets (navigation, banners, the
CSRF token, read-only, the server time spent on the page)."""

from __future__ import annotations

import json
import time
from datetime import datetime
from typing import Any

from flask import current_app, g, render_template, request

from taskqueue.dashboard.auth import CSRF_COOKIE, new_csrf

#: (endpoint, label) of the navigation bar, in order. Workflows and limits add theirs here.
NAV = [
    ("overview", "Overview"),
    ("queues", "Queues"),
    ("workers", "Workers"),
    ("scheduled", "Scheduled"),
    ("dead", "Dead letters"),
    ("periodic", "Periodic"),
    ("limits", "Limits"),
    ("search", "Search"),
]


def ago(seconds: float | None) -> str:
    """A duration the way people read it: 4s, 3m 20s, 2h 5m, 3d 4h."""
    if seconds is None:
        return "-"
    s = int(max(0, seconds))
    if s < 60:
        return f"{seconds:.1f}s" if seconds < 10 else f"{s}s"
    if s < 3600:
        return f"{s // 60}m {s % 60}s"
    if s < 86400:
        return f"{s // 3600}h {s % 3600 // 60}m"
    return f"{s // 86400}d {s % 86400 // 3600}h"


def when(ms: int | None) -> str:
    """A server-clock time in ms as local date and time."""
    if not ms:
        return "-"
    return datetime.fromtimestamp(ms / 1000).strftime("%Y-%m-%d %H:%M:%S")


def millis(ms: float | None) -> str:
    if ms is None:
        return "-"
    return f"{ms:.0f} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def pretty(value: Any) -> str:
    """A value as JSON text when it can be, else its repr (shown escaped, never evaluated)."""
    try:
        return json.dumps(value, indent=2, default=repr, ensure_ascii=False)
    except (TypeError, ValueError):
        return repr(value)


FILTERS = {"ago": ago, "when": when, "millis": millis, "pretty": pretty}


def csrf_token() -> str:
    """This browser's CSRF token: the cookie's, or a new one that after_request sets."""
    token = request.cookies.get(CSRF_COOKIE) or getattr(g, "tq_new_csrf", None)
    if not token:
        token = g.tq_new_csrf = new_csrf()
    return token


def server_ms() -> float:
    return (time.perf_counter() - g.tq_started) * 1000


def page(template: str, title: str, **context: Any) -> str:
    """Render one dashboard page with what every page shows."""
    state = current_app.extensions["taskqueue_dashboard"][request.blueprint]
    return render_template(
        f"tq_dashboard/{template}",
        title=title,
        nav=NAV,
        bp=request.blueprint,
        access=state.access,
        read_only=state.access.read_only,
        url=state.backend.url,
        namespace=state.backend.settings.redis.namespace,
        banner=state.banner,
        csrf=csrf_token(),
        message=request.args.get("msg", ""),
        server_ms=server_ms,
        **context,
    )


__all__ = ["FILTERS", "NAV", "ago", "csrf_token", "millis", "page", "pretty", "server_ms", "when"]
