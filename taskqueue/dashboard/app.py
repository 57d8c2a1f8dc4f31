"""The dashboard as a Flask blueprint (mounted in an app, or served alone by ``server.py``).

Each page lives in ``views/`` (one module per page); this module wires them to
the blueprint with what every request goes through: the clock that reports the
server time per page, the token check, and the CSRF, cross-site and read-only
checks of every POST (see ``auth.py``).
"""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Flask, Response, g, jsonify, redirect, request, url_for
from werkzeug.exceptions import HTTPException

from taskqueue.dashboard import views
from taskqueue.dashboard.auth import CSRF_COOKIE, SESSION_COOKIE, SESSION_SECONDS, Access, cross_site, csrf_ok
from taskqueue.dashboard.backend import Backend
from taskqueue.dashboard.context import EXTENSION, DashboardState, safe_next, state
from taskqueue.dashboard.render import FILTERS, page, server_ms

#: Endpoints open without signing in: the login form and the stylesheet and script.
OPEN = {"login", "static"}


def _refuse(status: int, message: str) -> Response:
    if request.accept_mimetypes.best == "application/json" or request.path.endswith(".json"):
        response = jsonify({"error": message, "status": status})
    else:
        response = Response(page("error.html", "Error", error=message, status=status), mimetype="text/html")
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="taskqueue dashboard"'
    return response


def _guard() -> Response | None:
    g.tq_started = time.perf_counter()
    endpoint = (request.endpoint or "").rsplit(".", 1)[-1]
    access = state().access
    if request.method == "POST" and cross_site(request):
        return _refuse(403, "cross-site request refused")
    if endpoint in OPEN:
        if request.method == "POST" and not csrf_ok(request):
            return _refuse(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        return None
    if not access.signed_in(request):
        if request.headers.get("Authorization") or request.path.endswith(".json"):
            return _refuse(401, "authentication required: send 'Authorization: Bearer <token>'")
        return redirect(url_for(".login", next=request.full_path.rstrip("?")), 303)  # type: ignore[return-value]
    if request.method == "POST":
        if access.read_only and endpoint != "logout":
            return _refuse(403, "this dashboard is read-only: changes are refused")
        if not access.bearer(request) and not csrf_ok(request):
            return _refuse(403, "the form's CSRF token is missing or wrong: reload the page and try again")
    return None


def _finish(response: Response) -> Response:
    new = getattr(g, "tq_new_csrf", None)
    if new and not request.cookies.get(CSRF_COOKIE):
        response.set_cookie(CSRF_COOKIE, new, httponly=True, samesite="Strict", path=_cookie_path())
    h = response.headers
    h.setdefault(
        "Content-Security-Policy",
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        f"connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {state().frame_ancestors}",
    )
    h.setdefault("X-Content-Type-Options", "nosniff")
    h.setdefault("Referrer-Policy", "same-origin")  # "no-referrer" makes Chromium send Origin: null
    h.setdefault("Cache-Control", "no-store")
    if hasattr(g, "tq_started"):
        h["Server-Timing"] = f"app;dur={server_ms():.1f}"
    return response


def _cookie_path() -> str:
    return url_for(".overview").rstrip("/") or "/"


def _login() -> Any:
    access = state().access
    target = safe_next(request.values.get("next"), url_for(".overview"))
    if not access.token_required:
        return redirect(target, 303)
    if request.method == "POST":
        if access.token_accepted(request.form.get("token", "")) and request.form.get("token"):
            response = redirect(target, 303)
            response.set_cookie(
                SESSION_COOKIE,
                access.session_value(),
                max_age=SESSION_SECONDS,
                httponly=True,
                samesite="Strict",
                secure=request.is_secure,
                path=_cookie_path(),
            )
            return response
        return page("login.html", "Sign in", next=target, failed=True), 401
    return page("login.html", "Sign in", next=target, failed=False)


def _logout() -> Any:
    response = redirect(url_for(".login"), 303)
    response.delete_cookie(SESSION_COOKIE, path=_cookie_path())
    return response


def _http_error(exc: HTTPException) -> Response:
    return _refuse(exc.code or 500, exc.description or exc.name)


def dashboard_blueprint(
    backend: Backend,
    access: Access | None = None,
    *,
    banner: str | None = None,
    name: str = "tq_dashboard",
    frame_ancestors: str = "'self'",
) -> Blueprint:
    """The dashboard's pages on ``backend``, guarded by ``access`` (default: no token)."""
    dash_state = DashboardState(backend, access or Access(), banner, frame_ancestors)
    bp = Blueprint(name, __name__, template_folder="templates", static_folder="static")

    @bp.record_once
    def _register(setup: Any) -> None:
        app: Flask = setup.app
        app.extensions.setdefault(EXTENSION, {})[bp.name] = dash_state
        for key, fn in FILTERS.items():
            app.jinja_env.filters.setdefault(f"tq_{key}", fn)

    bp.before_request(_guard)
    bp.after_request(_finish)
    bp.add_url_rule("/login", "login", _login, methods=["GET", "POST"])
    bp.add_url_rule("/logout", "logout", _logout, methods=["POST"])
    bp.register_error_handler(HTTPException, _http_error)
    views.register(bp)
    return bp


def create_app(
    backend: Backend,
    access: Access | None = None,
    *,
    banner: str | None = None,
    frame_ancestors: str = "'self'",
) -> Flask:
    """A Flask app that serves only the dashboard, at its root (``taskqueue dashboard``)."""
    app = Flask("taskqueue.dashboard")
    bp = dashboard_blueprint(backend, access, banner=banner, frame_ancestors=frame_ancestors)
    app.register_blueprint(bp, url_prefix="")
    return app


__all__ = ["create_app", "dashboard_blueprint"]
