"""Every HTTP error as an RFC 9457 problem document: ``type``, ``title``, ``status``, ``detail``.

Views raise ``HTTPProblem`` (through ``fail``); the blueprint's error
handlers turn every other exception into one too, so a client never gets an
HTML error page, a traceback, or a Redis host name.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import Any, NoReturn

from flask import Response, request
from werkzeug.exceptions import HTTPException

from taskqueue.errors import BrokerError

log = logging.getLogger("taskqueue.flask")

PROBLEM_TYPE = "urn:taskqueue:problem:"
PROBLEM_MIMETYPE = "application/problem+json"


class HTTPProblem(HTTPException):
    """An HTTP error answered as a problem document; raise it from a view."""

    def __init__(
        self, status: int, slug: str, title: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(detail)
        self.code = status
        self.slug = slug
        self.title = title
        self.detail = detail
        self.extra_headers = dict(headers or {})

    def get_response(self, environ: Any = None, scope: Any = None) -> Response:
        return problem(self.code or 500, self.slug, self.title, self.detail, self.extra_headers)


def problem(
    status: int, slug: str, title: str, detail: str, headers: Mapping[str, str] | None = None
) -> Response:
    body = {"type": PROBLEM_TYPE + slug, "title": title, "status": status, "detail": detail}
    response = Response(json.dumps(body), status=status, mimetype=PROBLEM_MIMETYPE)
    response.headers["Cache-Control"] = "no-store"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


def fail(status: int, slug: str, title: str, detail: str, **headers: str) -> NoReturn:
    """Answer with a problem document; ``WWW_Authenticate="..."`` becomes ``WWW-Authenticate``."""
    raise HTTPProblem(status, slug, title, detail, {k.replace("_", "-"): v for k, v in headers.items()})


def json_response(body: Any) -> Response:
    response = Response(json.dumps(body), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def http_error(exc: HTTPException) -> Response:
    if isinstance(exc, HTTPProblem):
        return exc.get_response()
    code = exc.code or 500
    slug = {413: "payload-too-large"}.get(code, (exc.name or "error").lower().replace(" ", "-"))
    return problem(code, slug, exc.name or "Error", exc.description or "")


def broker_down(exc: BrokerError) -> Response:
    # The cause names hosts; it goes to the log, never to the client.
    log.warning("taskqueue: answering 503: %s", exc)
    return problem(
        503,
        "broker-unavailable",
        "Task broker unavailable",
        "Redis is unreachable or failing; try again later",
        {"Retry-After": "5"},
    )


def internal_error(exc: Exception) -> Response:
    log.exception("taskqueue: error in %s %s", request.method, request.path)
    return problem(500, "internal-error", "Internal server error", "the server failed; see its log")
