"""The one JSON endpoint the pages poll: ``/api/<view>.json`` with the page's query.

It answers the page's live region rendered by the server (escaped like the page
itself) and the figures it shows as data, so scripts can read the same numbers.
A page registers its live region with ``live_view``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Blueprint, abort, jsonify, render_template, request
from markupsafe import Markup

from taskqueue.dashboard.render import FILTERS, csrf_token, server_ms

#: view -> (fragment template, context builder, data of the context for scripts)
LIVE: dict[str, tuple[str, Callable[[], dict[str, Any]], Callable[[dict[str, Any]], Any]]] = {}


def live_view(
    name: str, template: str, build: Callable[[], dict[str, Any]], data: Callable[[dict[str, Any]], Any]
) -> None:
    LIVE[name] = (template, build, data)


def fragment(template: str, context: dict[str, Any]) -> Markup:
    """A page's live region, rendered (and so escaped) by its template: safe to embed."""
    from taskqueue.dashboard.context import state

    st = state()
    return Markup(
        render_template(
            f"tq_dashboard/{template}",
            bp=request.blueprint,
            read_only=st.access.read_only,
            csrf=csrf_token(),
            **context,
        )
    )


def _live(view: str) -> Any:
    if view not in LIVE:
        abort(404, f"no live view {view!r}; views: {', '.join(sorted(LIVE))}")
    template, build, data = LIVE[view]
    context = build()
    html = str(fragment(template, context))
    return jsonify({"view": view, "html": html, "data": data(context), "server_ms": round(server_ms(), 1)})


def register(bp: Blueprint) -> None:
    bp.add_url_rule("/api/<view>.json", "live", _live)


__all__ = ["FILTERS", "LIVE", "fragment", "live_view", "register"]
