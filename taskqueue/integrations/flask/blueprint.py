"""The HTTP API: one blueprint under ``flask.route_prefix``, every answer JSON or a problem document.

Only POST takes a task name and only GET/DELETE take a task id, so the two
never collide; the fixed GET routes (metrics, health) win over the id rule
because werkzeug ranks static parts first, so a task whose id is "health" is
readable from Python only. Views reach the broker through the app state's
ports, or through ``TaskQueue``'s public API.
"""

from __future__ import annotations

from typing import Any, NoReturn

from flask import Blueprint, Response, url_for
from werkzeug.exceptions import HTTPException

from taskqueue.broker import TaskRecord
from taskqueue.errors import BrokerError, ConfigurationError, PayloadTooLarge, SerializationError
from taskqueue.errors import describe as shorten
from taskqueue.handle import TaskHandle
from taskqueue.identifiers import valid_task_id
from taskqueue.integrations.flask.auth import HttpApi
from taskqueue.integrations.flask.bodies import EnqueueBody, check_arguments, parse_enqueue, read_json
from taskqueue.integrations.flask.documents import jsonable, task_document
from taskqueue.integrations.flask.problems import (
    broker_down,
    fail,
    http_error,
    internal_error,
    json_response,
)
from taskqueue.integrations.flask.state import current_state
from taskqueue.queue import TaskQueue
from taskqueue.status import FINAL_STATES, STARTED_OR_HELD, as_read
from taskqueue.task import Signature

#: Methods answered under the prefix even where no route matches, so they get a problem document.
_ALL_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]


def blueprint(api: HttpApi) -> Blueprint:
    """The routes ``api`` enables, with problem documents for every error."""
    bp = Blueprint("taskqueue", __name__)
    bp.register_error_handler(HTTPException, http_error)
    bp.register_error_handler(BrokerError, broker_down)
    bp.register_error_handler(Exception, internal_error)
    if api.enable_metrics:
        bp.add_url_rule("/metrics", "metrics", metrics, methods=["GET"])
        bp.add_url_rule("/metrics/prometheus", "prometheus_metrics", prometheus_metrics, methods=["GET"])
    if api.enable_health_check:
        bp.add_url_rule("/health", "health", health, methods=["GET"])
    bp.add_url_rule("/<path:task_name>", "enqueue", enqueue, methods=["POST"])
    bp.add_url_rule("/<path:task_id>", "task_status", task_status, methods=["GET"])
    bp.add_url_rule("/<path:task_id>", "cancel_task", cancel_task, methods=["DELETE"])
    if api.prefix:  # at the root (empty prefix) these would take over the app's own URLs
        bp.add_url_rule("", "no_route_bare", no_route, methods=_ALL_METHODS)
        bp.add_url_rule("/", "no_route", no_route, methods=_ALL_METHODS)
        bp.add_url_rule("/<path:rest>", "bad_method", bad_method, methods=["PUT", "PATCH"])
    return bp


# -- metrics and health ------------------------------------------------------------------
def metrics() -> Response:
    state = current_state()
    state.api.authorise()
    return json_response(jsonable(state.queue.get_metrics().to_dict()))


def prometheus_metrics() -> Response:
    state = current_state()
    state.api.authorise()
    try:
        from taskqueue.metrics.prometheus import generate_latest
    except ImportError as exc:
        fail(501, "prometheus-unavailable", "Prometheus export not installed", str(exc))
    body, content_type = generate_latest(state.queue)
    return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})


def health() -> tuple[Response, int]:
    state = current_state()
    authorised = state.api.authorise(optional=state.api.public_health)
    report = state.queue.health_check()
    status = str(report.status)
    # Without a token (public_health) only the verdict: the details name hosts and workers.
    body = jsonable(report.to_dict()) if authorised else {"status": status}
    return json_response(body), 503 if status == "unhealthy" else 200


# -- tasks ---------------------------------------------------------------------------------
def _send(q: TaskQueue, task_name: str, body: EnqueueBody) -> TaskHandle:
    """Enqueue, with each refusal of ``enqueue`` as the problem document that explains it."""
    try:
        return q.enqueue(
            Signature(task_name, tuple(body.args), body.kwargs), queue=body.queue, delay=body.delay
        )
    except PayloadTooLarge as exc:
        fail(413, "payload-too-large", "Payload too large", str(exc))
    except SerializationError as exc:
        fail(400, "invalid-arguments", "Invalid arguments", str(exc))
    except TypeError as exc:  # a value that does not fit the task's annotations (it names the field)
        fail(400, "invalid-arguments", "Invalid arguments", str(exc))
    except ConfigurationError as exc:  # an unknown queue name
        fail(400, "invalid-request", "Invalid request", str(exc))


def enqueue(task_name: str) -> tuple[Response, int, dict[str, str]]:
    state = current_state()
    api, q = state.api, state.queue
    api.authorise()
    if not api.allows(task_name) or task_name not in q.registry:
        fail(404, "unknown-task", "Unknown task", f"no task named {shorten(task_name)} can be enqueued here")
    body = parse_enqueue(read_json(api.max_body_bytes))
    definition = q.registry.get(task_name)
    check_arguments(definition, body)
    handle = _send(q, task_name, body)
    location = url_for(".task_status", task_id=handle.id)
    document = {
        "id": handle.id,
        "name": task_name,
        "queue": body.queue or definition.queue,
        "status": "SCHEDULED" if body.delay else "PENDING",
        "url": location,
    }
    return json_response(document), 202, {"Location": location}


def _visible_record(task_id: str) -> TaskRecord:
    """The task, if this API may show it; 404 otherwise (same answer either way)."""
    state = current_state()
    record = state.producer.get_task(task_id) if valid_task_id(task_id) else None
    if record is None or not state.api.allows(record.name):
        fail(
            404,
            "task-not-found",
            "Task not found",
            f"no task {shorten(task_id)}: it never existed, was purged, or its result expired",
        )
    return record


def task_status(task_id: str) -> Response:
    current_state().api.authorise()
    return json_response(task_document(_visible_record(task_id)))


def cancel_task(task_id: str) -> tuple[Response, int]:
    state = current_state()
    state.api.authorise()
    _visible_record(task_id)
    previous = state.producer.cancel(task_id)
    if previous is None:
        fail(404, "task-not-found", "Task not found", f"task {task_id} is not in Redis")
    if previous in FINAL_STATES:
        fail(409, "task-finished", "Task already finished", f"task {task_id} is {previous}")
    if previous in STARTED_OR_HELD:  # its worker stops it before it starts, or asks it to stop
        return json_response({"id": task_id, "status": as_read(previous), "cancel_requested": True}), 202
    return json_response({"id": task_id, "status": "CANCELLED", "cancelled": True}), 200


# -- everything else under the prefix ------------------------------------------------------
def no_route(**_: Any) -> NoReturn:
    prefix = current_state().api.prefix
    fail(404, "not-found", "Not found", f"nothing here; POST {prefix}/<task name> enqueues a task")


def bad_method(**_: Any) -> NoReturn:
    prefix = current_state().api.prefix
    fail(
        405,
        "method-not-allowed",
        "Method not allowed",
        f"use POST {prefix}/<task name>, GET or DELETE {prefix}/<task id>",
        Allow="GET, HEAD, POST, DELETE, OPTIONS",
    )
