"""Flask integration: one queue per app, HTTP endpoints, and workers inside the app.

``TaskQueueExtension(app)`` gives the app one ``TaskQueue`` (so every request
handler shares one Redis connection pool), a blueprint under
``flask.route_prefix`` (default ``/tasks``) and, with ``start_workers=True``,
a worker pool in background threads of the app process.

The HTTP surface is deliberately narrow, because it is a way into the
workers: only registered task names (and only allow-listed ones when
``flask.allowed_tasks`` is set) can be enqueued, bodies are size-limited,
JSON-only (so a cross-site form cannot post one without a CORS preflight)
and validated against the task's signature before anything is written, and
responses never contain a task's arguments or an error's traceback. Every
error is an RFC 9457 problem document (``type``, ``title``, ``status``,
``detail``).

URL rules (``<prefix>`` = ``flask.route_prefix``)::

    POST   <prefix>/<task name>           enqueue (names may contain dots and slashes)
    GET    <prefix>/<task id>             status, result or error
    DELETE <prefix>/<task id>             cancel
    GET    <prefix>/metrics               q.get_metrics() as JSON      (flask.enable_metrics)
    GET    <prefix>/metrics/prometheus    Prometheus text exposition   (flask.enable_metrics)
    GET    <prefix>/health                q.health_check(): 200, or 503 when unhealthy

Only POST takes a name and only GET/DELETE take an id, so the two never
collide; the fixed GET routes win over the id rule.

``flask taskqueue worker`` and ``flask taskqueue status`` run the
``taskqueue`` CLI's worker and status on the app's queue.
"""

from __future__ import annotations

import atexit
import base64
import dataclasses
import difflib
import hashlib
import hmac
import inspect
import json
import logging
import math
import os
import threading
import weakref
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, NoReturn

import click
import redis
from flask import Blueprint, Flask, Response, current_app, has_app_context, request, url_for
from flask.helpers import get_debug_flag
from werkzeug.exceptions import HTTPException

from taskqueue.broker import TaskRecord, mask_url
from taskqueue.config import ALIASES as ENV_ALIASES
from taskqueue.config import FlaskSettings, Settings
from taskqueue.errors import (
    BrokerError,
    ConfigurationError,
    PayloadTooLarge,
    SerializationError,
    TaskQueueError,
)
from taskqueue.errors import describe as shorten
from taskqueue.handle import error_of
from taskqueue.identifiers import valid_task_id
from taskqueue.queue import TaskQueue
from taskqueue.registry import TaskDefinition, check_name
from taskqueue.serialization import loads
from taskqueue.status import FINAL_STATES
from taskqueue.task import Signature

log = logging.getLogger("taskqueue.flask")

EXTENSION_NAME = "taskqueue"
PROBLEM_TYPE = "urn:taskqueue:problem:"
PROBLEM_MIMETYPE = "application/problem+json"

#: ``app.config`` keys: ``TASK_QUEUE_<SECTION>__<KEY>`` (as the environment
#: variables) and these short names, read on top of the dynaconf settings.
CONFIG_PREFIX = "TASK_QUEUE_"
CONFIG_ALIASES: dict[str, tuple[str, str]] = {
    "TASK_QUEUE_URL": ("redis", "url"),
    **{
        name: tuple(key.split(".", 1))  # type: ignore[misc]
        for name, key in ENV_ALIASES.items()
        if name.startswith(CONFIG_PREFIX)
    },
}
START_WORKERS_KEY = "TASK_QUEUE_START_WORKERS"

ENQUEUE_FIELDS = ("args", "kwargs", "queue", "delay")


# -- problem documents ---------------------------------------------------------------
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


def _fail(status: int, slug: str, title: str, detail: str, **headers: str) -> NoReturn:
    raise HTTPProblem(status, slug, title, detail, {k.replace("_", "-"): v for k, v in headers.items()})


# -- settings ------------------------------------------------------------------------
def _setting_names() -> dict[str, set[str]]:
    """Section -> its keys, for the sections app.config may set."""
    names: dict[str, set[str]] = {}
    for f in dataclasses.fields(Settings):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            names[f.name] = {g.name for g in dataclasses.fields(default)}
    names["auto_register"] = {"enabled"}
    return names


def config_overrides(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The settings ``app.config`` sets, as sections: ``{"flask": {"auth_token": ...}}``.

    A misspelt ``TASK_QUEUE_*`` key is an error rather than silently ignored:
    a typo in ``TASK_QUEUE_FLASK__AUTH_TOKEN`` would otherwise leave the
    endpoints open.
    """
    known = _setting_names()
    spelled = [f"{CONFIG_PREFIX}{s.upper()}__{k.upper()}" for s in known for k in known[s]]
    out: dict[str, dict[str, Any]] = {}
    problems: list[str] = []
    for key, value in config.items():
        if not isinstance(key, str) or not key.startswith(CONFIG_PREFIX) or key == START_WORKERS_KEY:
            continue
        if key in CONFIG_ALIASES:
            section, name = CONFIG_ALIASES[key]
        else:
            section, sep, name = key[len(CONFIG_PREFIX) :].lower().partition("__")
            queue_name, _, field = name.rpartition("__")
            if section == "queues" and queue_name and field == "priority":  # ..._QUEUES__<NAME>__PRIORITY
                out.setdefault("queues", {})[queue_name] = {"priority": value}
                continue
            if not sep or name not in known.get(section, ()):
                close = difflib.get_close_matches(key, [*spelled, *CONFIG_ALIASES, START_WORKERS_KEY], n=1)
                hint = f"; did you mean {close[0]}?" if close else ""
                problems.append(
                    f"app.config[{key!r}]: not a taskqueue setting{hint} "
                    "(use TASK_QUEUE_<SECTION>__<KEY>, e.g. TASK_QUEUE_FLASK__AUTH_TOKEN)"
                )
                continue
        out.setdefault(section, {})[name] = value
    if problems:
        raise ConfigurationError(problems)
    return out


def _flag(value: Any, key: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in (
        "1",
        "true",
        "yes",
        "on",
        "0",
        "false",
        "no",
        "off",
    ):
        return value.strip().lower() in ("1", "true", "yes", "on")
    raise ConfigurationError(f"app.config[{key!r}] = {value!r}: expected true or false")


@dataclasses.dataclass(frozen=True)
class HttpApi:
    """The flask section, checked and ready for requests (tokens kept only as digests)."""

    prefix: str
    enable_metrics: bool
    enable_health_check: bool
    public_health: bool
    allowed_tasks: frozenset[str] | None
    max_body_bytes: int
    token_digests: tuple[bytes, ...] = dataclasses.field(repr=False)

    @classmethod
    def from_settings(cls, fs: FlaskSettings) -> HttpApi:
        problems = []
        prefix = fs.route_prefix
        if prefix and (not prefix.startswith("/") or prefix.endswith("/")):
            problems.append(
                f"flask.route_prefix = {prefix!r}: must start with '/' and not end with '/' "
                "(e.g. /tasks), or be empty"
            )
        if fs.max_body_bytes < 1:
            problems.append(f"flask.max_body_bytes = {fs.max_body_bytes!r}: must be >= 1")
        tokens = [t for t in (fs.auth_token, *fs.auth_tokens) if t]
        if any(t != t.strip() or not t.isprintable() for t in tokens):
            problems.append(
                "flask.auth_token / flask.auth_tokens: a token has surrounding whitespace or "
                "unprintable characters (value not shown)"
            )
        for name in fs.allowed_tasks:
            try:
                check_name(name)
            except ValueError as exc:
                problems.append(f"flask.allowed_tasks: {exc}")
        if problems:
            raise ConfigurationError(problems)
        return cls(
            prefix=prefix,
            enable_metrics=fs.enable_metrics,
            enable_health_check=fs.enable_health_check,
            public_health=fs.public_health,
            allowed_tasks=frozenset(fs.allowed_tasks) or None,
            max_body_bytes=fs.max_body_bytes,
            token_digests=tuple(hashlib.sha256(t.encode()).digest() for t in tokens),
        )

    @property
    def auth_required(self) -> bool:
        return bool(self.token_digests)

    def allows(self, name: str) -> bool:
        return self.allowed_tasks is None or name in self.allowed_tasks

    def token_accepted(self, presented: str) -> bool:
        """Compare with every token in constant time: equal-length digests, no early exit."""
        digest = hashlib.sha256(presented.encode("utf-8", "surrogateescape")).digest()
        accepted = False
        for known in self.token_digests:
            accepted |= hmac.compare_digest(digest, known)
        return accepted

    def authorise(self, *, optional: bool = False) -> bool:
        """True when no token is configured or the request carries an accepted one.

        Otherwise 401 (no bearer token) or 403 (a token that is not accepted),
        or False when ``optional``.
        """
        if not self.token_digests:
            return True
        scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
        credentials = credentials.strip()
        if scheme.lower() != "bearer" or not credentials:
            if optional:
                return False
            _fail(
                401,
                "unauthorized",
                "Authentication required",
                "send the API token as 'Authorization: Bearer <token>'",
                WWW_Authenticate='Bearer realm="taskqueue"',
            )
        if not self.token_accepted(credentials):
            if optional:
                return False
            _fail(
                403,
                "forbidden",
                "Token not accepted",
                "the bearer token is not one of this server's API tokens",
                WWW_Authenticate='Bearer realm="taskqueue", error="invalid_token"',
            )
        return True


# -- when may workers start in this process ------------------------------------------
def worker_start_mode(app: Flask) -> str:
    """``"now"``, ``"first-request"`` or ``"never"`` for a pool in this process.

    The Flask reloader runs the app in two processes: a watcher (which never
    serves) and a child with ``WERKZEUG_RUN_MAIN=true`` (which does, and is
    replaced on every reload). Workers belong in the child only, or every
    reload would leave a second pool with stale code in the watcher.
    """
    if os.environ.get("WERKZEUG_RUN_MAIN") == "true":
        return "now"  # the reloader's child: the process that serves
    ctx = click.get_current_context(silent=True)
    if ctx is not None and os.environ.get("FLASK_RUN_FROM_CLI") == "true":
        if ctx.command.name == "run":
            reload = ctx.params.get("reload")
            if reload is None:  # flask run's own default
                reload = get_debug_flag()
            return "never" if reload else "now"
        return "never"  # flask shell, flask routes, flask taskqueue status...: no pool
    # Not under `flask run` (gunicorn, waitress, app.run(), a script): a debug app
    # may be a reloader watcher, which never serves, so wait for a request.
    return "first-request" if app.debug else "now"


# -- per-app state -------------------------------------------------------------------
class AppState:
    """What one app holds: its queue, its HTTP settings and its worker pool."""

    def __init__(self, queue: TaskQueue, owned: bool, api: HttpApi, workers: int | None) -> None:
        self.queue = queue
        self.owned = owned
        self.api = api
        self.workers = workers
        self.pending_start = False
        self.started = False
        self._lock = threading.Lock()

    def start_workers(self, count: int | None = None) -> None:
        with self._lock:
            self.pending_start = False
            if self.started:
                return
            try:
                self.queue.start_workers(count if count is not None else self.workers)
            except (redis.exceptions.RedisError, BrokerError) as exc:
                raise BrokerError(
                    f"cannot start the app's worker threads: {exc}. Start Redis (or fix redis.url), or "
                    "set TASK_QUEUE_START_WORKERS = False and run `flask taskqueue worker` later",
                    url=mask_url(self.queue.url),
                ) from exc
            self.started = True
        log.info(
            "taskqueue: %d worker thread(s) started in process %d", self.queue.worker_count(), os.getpid()
        )

    def start_pending(self) -> None:
        if self.pending_start:
            self.start_workers()

    def shutdown(self) -> None:
        """At exit: stop our workers gracefully; close the queue if we built it."""
        if self.owned:
            self.queue.close()
        elif self.started:
            self.queue.stop_workers()


def _shutdown_at_exit(ref: weakref.ref[AppState]) -> None:
    state = ref()
    if state is not None:
        state.shutdown()


def _state() -> AppState:
    return current_app.extensions[EXTENSION_NAME]


# -- the extension -------------------------------------------------------------------
class TaskQueueExtension:
    """``TaskQueueExtension(app)`` or ``ext = TaskQueueExtension(); ext.init_app(app)``.

    ``queue``: the ``TaskQueue`` to use; without it each app gets its own,
    built by ``TaskQueue.from_settings()`` with the app's ``TASK_QUEUE_*``
    keys laid on top. ``start_workers``: run a worker pool in this process
    (default: ``app.config["TASK_QUEUE_START_WORKERS"]``, else False);
    ``workers``: its thread count (default ``workers.initial_count``).
    """

    def __init__(
        self,
        app: Flask | None = None,
        queue: TaskQueue | None = None,
        *,
        start_workers: bool | None = None,
        workers: int | None = None,
    ) -> None:
        if queue is not None and not isinstance(queue, TaskQueue):
            raise TypeError(f"queue must be a TaskQueue (or None to build one from settings), got {queue!r}")
        if start_workers is not None and not isinstance(start_workers, bool):
            raise TypeError(f"start_workers must be True or False, got {start_workers!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        self._queue = queue
        self._start_workers = start_workers
        self._workers = workers
        self._app: Flask | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        if not isinstance(app, Flask):
            raise TypeError(f"init_app takes a Flask app, got {app!r}")
        if EXTENSION_NAME in app.extensions:
            raise RuntimeError("TaskQueueExtension is already initialised on this app")
        overrides = config_overrides(app.config)
        if self._queue is not None:
            foreign = sorted(f"{s}.{k}" for s, keys in overrides.items() if s != "flask" for k in keys)
            if foreign:
                raise ConfigurationError(
                    f"app.config sets {', '.join(foreign)}, but the TaskQueue passed to the extension "
                    "exists already; put those settings in the queue's settings, or let the extension "
                    "build the queue (TaskQueueExtension(app) without queue=)"
                )
            queue, owned = self._queue, False
            flask_settings = queue.settings.flask
            if "flask" in overrides:
                flask_settings = queue.settings.replace(flask=overrides["flask"]).flask
        else:
            queue, owned = TaskQueue.from_settings(**overrides), True
            flask_settings = queue.settings.flask
        try:
            api = HttpApi.from_settings(flask_settings)
            start = self._start_workers
            if start is None:
                start = _flag(app.config.get(START_WORKERS_KEY, False), START_WORKERS_KEY)
        except TaskQueueError:
            if owned:
                queue.close()
            raise

        state = AppState(queue, owned, api, self._workers)
        app.extensions[EXTENSION_NAME] = state
        app.register_blueprint(_blueprint(api), url_prefix=api.prefix or None)
        app.cli.add_command(_cli_group())
        if self._app is None:
            self._app = app
        if not api.auth_required and not (app.debug or app.testing):
            log.warning(
                "taskqueue: no flask.auth_token is set, so anyone who can reach this app can "
                "enqueue tasks under %s/",
                api.prefix,
            )
        if start:
            mode = worker_start_mode(app)
            if mode == "now":
                state.start_workers()
            elif mode == "first-request":
                state.pending_start = True
                app.before_request(state.start_pending)
                log.info("taskqueue: debug mode outside `flask run`; workers start at the first request")
            else:
                log.info("taskqueue: not starting workers in this process (reloader watcher or CLI command)")
        if owned or start:
            atexit.register(_shutdown_at_exit, weakref.ref(state))

    def state(self, app: Flask | None = None) -> AppState:
        app = app or self._current_app()
        try:
            return app.extensions[EXTENSION_NAME]
        except KeyError:
            raise RuntimeError("TaskQueueExtension.init_app(app) was not called for this app") from None

    def _current_app(self) -> Flask:
        if has_app_context():
            return current_app._get_current_object()  # type: ignore[attr-defined]
        if self._app is not None:
            return self._app
        raise RuntimeError("no Flask app: call init_app(app) first, or use the extension in an app context")

    @property
    def queue(self) -> TaskQueue:
        """The app's queue: enqueue from request handlers with ``ext.queue.enqueue(...)``."""
        return self.state().queue

    def start_workers(self, app: Flask | None = None, count: int | None = None) -> None:
        """Start the pool now: for gunicorn's ``post_fork`` hook with ``--preload``."""
        self.state(app).start_workers(count)


# -- flask taskqueue worker / status ---------------------------------------------------
def _cli_group() -> click.Group:
    """``flask taskqueue worker`` and ``flask taskqueue status``, on the app's own queue."""
    from flask.cli import AppGroup

    from taskqueue import cli

    class Group(cli._Group, AppGroup):  # taskqueue's one-line errors and exit codes, Flask's app context
        pass

    def ready_queue() -> TaskQueue:
        q = _state().queue
        try:
            q.broker.ping()
        except (OSError, redis.exceptions.RedisError) as exc:
            raise cli.Failure(f"cannot reach Redis at {mask_url(q.url)}: {exc}") from None
        return q

    @click.group("taskqueue", cls=Group)
    def group() -> None:
        """Run workers for this app's task queue, or show its status."""

    @group.command("worker")
    @cli.worker_options
    @click.pass_context
    def worker(
        ctx: click.Context,
        workers: int | None,
        queues: str | None,
        scheduler: bool,
        autoscale: tuple[int, int] | None,
        metrics_port: int | None,
        log_level: str,
    ) -> None:
        """Run worker threads for the app's tasks until SIGTERM or Ctrl-C, as `taskqueue worker`.

        The app's own start_workers pool does not start under this command.
        """
        cli.configure_logging(log_level)
        cli.run_worker(ctx, ready_queue(), workers, queues, scheduler, autoscale, metrics_port)

    @group.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
    def status(as_json: bool) -> None:
        """Show the queues, live workers and dead letters of the app's queue."""
        data = cli.gather_status(ready_queue())
        click.echo(json.dumps(data, indent=2, default=str) if as_json else cli.render_status(data))

    return group


# -- the blueprint -------------------------------------------------------------------
def _blueprint(api: HttpApi) -> Blueprint:
    bp = Blueprint("taskqueue", __name__)
    bp.register_error_handler(HTTPException, _http_error)
    bp.register_error_handler(BrokerError, _broker_down)
    bp.register_error_handler(Exception, _internal_error)

    # Fixed routes win over <task id> (werkzeug ranks static parts first); a task
    # whose id is "health" or "metrics" is readable from Python, not over HTTP.
    if api.enable_metrics:

        @bp.get("/metrics")
        def metrics() -> Response:
            api.authorise()
            return _json(jsonable(_state().queue.get_metrics().to_dict()))

        @bp.get("/metrics/prometheus")
        def prometheus_metrics() -> Response:
            api.authorise()
            try:
                from taskqueue.metrics.prometheus import generate_latest
            except ImportError as exc:
                _fail(501, "prometheus-unavailable", "Prometheus export not installed", str(exc))
            body, content_type = generate_latest(_state().queue)
            return Response(body, content_type=content_type, headers={"Cache-Control": "no-store"})

    if api.enable_health_check:

        @bp.get("/health")
        def health() -> tuple[Response, int]:
            authorised = api.authorise(optional=api.public_health)
            report = _state().queue.health_check()
            status = str(report.status)
            # Without a token (public_health) only the verdict: the details name hosts and workers.
            body = jsonable(report.to_dict()) if authorised else {"status": status}
            return _json(body), 503 if status == "unhealthy" else 200

    @bp.post("/<path:task_name>")
    def enqueue(task_name: str) -> tuple[Response, int, dict[str, str]]:
        api.authorise()
        q = _state().queue
        if not api.allows(task_name) or task_name not in q.registry:
            _fail(
                404,
                "unknown-task",
                "Unknown task",
                f"no task named {shorten(task_name)} can be enqueued here",
            )
        args, kwargs, queue_name, delay = _parse_enqueue(_read_json(api.max_body_bytes))
        _check_arguments(q.registry.get(task_name), args, kwargs)
        try:
            handle = q.enqueue(Signature(task_name, tuple(args), kwargs), queue=queue_name, delay=delay)
        except PayloadTooLarge as exc:
            _fail(413, "payload-too-large", "Payload too large", str(exc))
        except (SerializationError, TypeError) as exc:  # TypeError: a class task's field type
            _fail(400, "invalid-arguments", "Invalid arguments", str(exc))
        except ConfigurationError as exc:  # an unknown queue name
            _fail(400, "invalid-request", "Invalid request", str(exc))
        location = url_for(".task_status", task_id=handle.id)
        body = {
            "id": handle.id,
            "name": task_name,
            "queue": queue_name or q.registry.get(task_name).queue,
            "status": "SCHEDULED" if delay else "PENDING",
            "url": location,
        }
        return _json(body), 202, {"Location": location}

    @bp.get("/<path:task_id>")
    def task_status(task_id: str) -> Response:
        api.authorise()
        return _json(task_document(_visible_record(api, task_id)))

    @bp.delete("/<path:task_id>")
    def cancel_task(task_id: str) -> tuple[Response, int]:
        api.authorise()
        _visible_record(api, task_id)
        previous = _state().queue.broker.cancel(task_id)
        if previous is None:
            _fail(404, "task-not-found", "Task not found", f"task {task_id} is not in Redis")
        if previous in FINAL_STATES:
            _fail(409, "task-finished", "Task already finished", f"task {task_id} is {previous}")
        if previous == "RUNNING":
            return _json({"id": task_id, "status": "RUNNING", "cancel_requested": True}), 202
        return _json({"id": task_id, "status": "CANCELLED", "cancelled": True}), 200

    # Everything else under the prefix answers with a problem document too.
    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]

    def no_route(**_: Any) -> NoReturn:
        _fail(404, "not-found", "Not found", f"nothing here; POST {api.prefix}/<task name> enqueues a task")

    def bad_method(**_: Any) -> NoReturn:
        _fail(
            405,
            "method-not-allowed",
            "Method not allowed",
            f"use POST {api.prefix}/<task name>, GET or DELETE {api.prefix}/<task id>",
            Allow="GET, HEAD, POST, DELETE, OPTIONS",
        )

    if api.prefix:  # at the root (empty prefix) these would take over the app's own URLs
        bp.add_url_rule("", "no_route_bare", no_route, methods=methods)
        bp.add_url_rule("/", "no_route", no_route, methods=methods)
        bp.add_url_rule("/<path:rest>", "bad_method", bad_method, methods=["PUT", "PATCH"])
    return bp


def _json(body: Any) -> Response:
    response = Response(json.dumps(body), mimetype="application/json")
    response.headers["Cache-Control"] = "no-store"
    return response


def _http_error(exc: HTTPException) -> Response:
    if isinstance(exc, HTTPProblem):
        return exc.get_response()
    code = exc.code or 500
    slug = {413: "payload-too-large"}.get(code, (exc.name or "error").lower().replace(" ", "-"))
    return problem(code, slug, exc.name or "Error", exc.description or "")


def _broker_down(exc: BrokerError) -> Response:
    # The cause names hosts; it goes to the log, never to the client.
    log.warning("taskqueue: answering 503: %s", exc)
    return problem(
        503,
        "broker-unavailable",
        "Task broker unavailable",
        "Redis is unreachable or failing; try again later",
        {"Retry-After": "5"},
    )


def _internal_error(exc: Exception) -> Response:
    log.exception("taskqueue: error in %s %s", request.method, request.path)
    return problem(500, "internal-error", "Internal server error", "the server failed; see its log")


# -- request bodies ------------------------------------------------------------------
def _read_json(limit: int) -> dict[str, Any]:
    mimetype = request.mimetype
    if mimetype != "application/json" and not mimetype.endswith("+json"):
        _fail(
            415,
            "unsupported-media-type",
            "Unsupported media type",
            f"send a JSON body with 'Content-Type: application/json' (got {mimetype or 'none'!r})",
        )
    too_large = f"the request body is over the limit of {limit} bytes (flask.max_body_bytes)"
    if request.content_length is not None and request.content_length > limit:
        _fail(413, "payload-too-large", "Payload too large", too_large)
    raw = request.stream.read(limit + 1)
    if len(raw) > limit:
        _fail(413, "payload-too-large", "Payload too large", too_large)
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except RecursionError:
        _fail(400, "invalid-json", "Invalid JSON", "the body nests too deeply")
    except ValueError as exc:
        _fail(400, "invalid-json", "Invalid JSON", f"the body is not valid JSON: {exc}")
    if not isinstance(body, dict):
        _fail(400, "invalid-request", "Invalid request", f"the body must be a JSON object, got {_kind(body)}")
    return body


def _kind(value: Any) -> str:
    return {list: "an array", str: "a string", bool: "a boolean", type(None): "null"}.get(
        type(value), "a number"
    )


def _parse_enqueue(body: dict[str, Any]) -> tuple[list[Any], dict[str, Any], str | None, float | None]:
    unknown = sorted(set(body) - set(ENQUEUE_FIELDS))
    if unknown:
        _fail(
            400,
            "invalid-request",
            "Invalid request",
            f"unknown field(s) {', '.join(unknown)}; the body may have args (array), "
            "kwargs (object), queue (string) and delay (seconds)",
        )
    args, kwargs = body.get("args", []), body.get("kwargs", {})
    queue, delay = body.get("queue"), body.get("delay")
    if not isinstance(args, list):
        _fail(400, "invalid-request", "Invalid request", f"args must be an array, got {_kind(args)}")
    if not isinstance(kwargs, dict):
        _fail(400, "invalid-request", "Invalid request", f"kwargs must be an object, got {_kind(kwargs)}")
    if queue is not None and not isinstance(queue, str):
        _fail(400, "invalid-request", "Invalid request", f"queue must be a string, got {_kind(queue)}")
    if delay is not None:
        if isinstance(delay, bool) or not isinstance(delay, (int, float)) or not math.isfinite(delay):
            _fail(
                400, "invalid-request", "Invalid request", f"delay must be a number of seconds, got {delay!r}"
            )
        if delay < 0:
            _fail(400, "invalid-request", "Invalid request", f"delay must be >= 0 seconds, got {delay!r}")
    return args, kwargs, queue, None if delay is None else float(delay)


def _check_arguments(definition: TaskDefinition, args: list[Any], kwargs: dict[str, Any]) -> None:
    """Refuse, before anything is written, arguments the task could not accept."""
    if definition.kind == "class" and args:
        _fail(
            400,
            "invalid-arguments",
            "Invalid arguments",
            f"task {definition.name!r} takes named fields only: send them as kwargs",
        )
    try:
        signature = inspect.signature(definition.target)
    except (TypeError, ValueError):  # no signature to check against: the worker decides
        return
    try:
        signature.bind(*args, **kwargs)
    except TypeError as exc:
        _fail(
            400,
            "invalid-arguments",
            "Invalid arguments",
            f"arguments do not fit {definition.name}{signature}: {exc}",
        )


# -- task records as JSON --------------------------------------------------------------
def _visible_record(api: HttpApi, task_id: str) -> TaskRecord:
    """The task, if this API may show it; 404 otherwise (same answer either way)."""
    valid = valid_task_id(task_id)
    record = _state().queue.broker.get_task(task_id) if valid else None
    if record is None or not api.allows(record.name):
        _fail(
            404,
            "task-not-found",
            "Task not found",
            f"no task {shorten(task_id)}: it never existed, was purged, or its result expired",
        )
    return record


def _time(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def jsonable(value: Any) -> Any:
    """A task result as JSON: bytes as base64 text, datetimes as ISO 8601, tuples as arrays."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def task_document(record: TaskRecord) -> dict[str, Any]:
    """What GET <prefix>/<id> shows: state, times, result or error; never the arguments."""
    out: dict[str, Any] = {
        "id": record.id,
        "name": record.name,
        "queue": record.queue,
        "status": record.status,
        "attempts": record.attempts,
        "max_retries": record.max_retries,
        "enqueued_at": _time(record.enqueued_ms),
        "due_at": _time(record.due_ms) if record.status in ("SCHEDULED", "RETRYING") else None,
        "started_at": _time(record.started_ms),
        "finished_at": _time(record.finished_ms),
        "runtime_ms": record.runtime_ms,
    }
    if record.status == "SUCCEEDED":
        try:
            out["result"] = jsonable(loads(record.result or b"\xc0", what=f"result of task {record.id}"))
        except SerializationError as exc:
            out["result"] = None
            out["error"] = {"type": "SerializationError", "message": str(exc)}
    elif record.status in ("FAILED", "DEAD", "CANCELLED") or (record.status == "RETRYING" and record.error):
        failure = error_of(record)
        # The traceback stays out: it can quote source lines and local values.
        out["error"] = {"type": failure.error_type, "message": failure.error_message}
        if record.reason:
            out["reason"] = record.reason
    return out
