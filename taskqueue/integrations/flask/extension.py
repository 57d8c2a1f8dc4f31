"""``TaskQueueExtension``: one queue per app, its HTTP API, and (optionally) workers in the app.

``init_app`` runs in named steps: the settings (the app's ``TASK_QUEUE_*``
keys laid over the settings files), the queue (passed in, or built and owned),
the HTTP settings, then the blueprint, the ``flask taskqueue`` commands and
the worker pool where this process may run one.
"""

from __future__ import annotations

import atexit
import logging
import weakref
from collections.abc import Mapping
from typing import Any, cast

from flask import Flask, current_app, has_app_context

from taskqueue.config import FlaskSettings, load
from taskqueue.errors import ConfigurationError, TaskQueueError
from taskqueue.integrations.flask.appconfig import SOURCE, config_overrides, sources_of, start_workers_flag
from taskqueue.integrations.flask.auth import HttpApi
from taskqueue.integrations.flask.blueprint import blueprint
from taskqueue.integrations.flask.cli import cli_group
from taskqueue.integrations.flask.state import EXTENSION_NAME, AppState, shutdown_at_exit, worker_start_mode
from taskqueue.queue import TaskQueue

log = logging.getLogger("taskqueue.flask")


def _queue_for(given: TaskQueue | None, overrides: Mapping[str, Mapping[str, Any]]) -> tuple[TaskQueue, bool]:
    """The app's queue and whether the extension owns it (builds it, closes it at exit)."""
    if given is None:
        settings = load(None, None, None, [(overrides, SOURCE)])
        return TaskQueue(settings=settings), True
    foreign = sorted(f"{s}.{k}" for s, keys in overrides.items() if s != "flask" for k in keys)
    if foreign:
        raise ConfigurationError(
            f"app.config sets {', '.join(foreign)}, but the TaskQueue passed to the extension "
            "exists already; put those settings in the queue's settings, or let the extension "
            "build the queue (TaskQueueExtension(app) without queue=)"
        )
    return given, False


def _flask_settings(queue: TaskQueue, overrides: Mapping[str, Mapping[str, Any]]) -> FlaskSettings:
    if "flask" not in overrides:
        return queue.settings.flask
    return queue.settings.replace(flask=overrides["flask"]).flask


def _mount_dashboard(app: Flask, queue: TaskQueue, api: HttpApi) -> None:
    """The dashboard's pages under ``<route_prefix>/dashboard``, with the API's tokens."""
    from taskqueue.dashboard import Access, Backend, dashboard_blueprint

    access = Access.from_digests(api.token_digests)
    banner = (
        None
        if access.token_required
        else "No flask.auth_token is set: anyone who can reach this app can see and change everything here."
    )
    app.register_blueprint(
        dashboard_blueprint(Backend.of(queue), access, banner=banner), url_prefix=f"{api.prefix}/dashboard"
    )


class TaskQueueExtension:
    """``TaskQueueExtension(app)`` or ``ext = TaskQueueExtension(); ext.init_app(app)``.

    ``queue``: the ``TaskQueue`` to use; without it each app gets its own,
    built from the settings with the app's ``TASK_QUEUE_*`` keys laid on top
    (as ``TaskQueue.from_settings(**overrides)`` would). ``start_workers``: run a
    worker pool in this process (default: ``app.config["TASK_QUEUE_START_WORKERS"]``,
    else False); ``workers``: its thread count (default ``workers.initial_count``).
    ``dashboard``: mount the web dashboard under ``<route_prefix>/dashboard``, guarded
    by the API's tokens (default: the ``flask.dashboard`` setting).
    """

    def __init__(
        self,
        app: Flask | None = None,
        queue: TaskQueue | None = None,
        *,
        start_workers: bool | None = None,
        workers: int | None = None,
        dashboard: bool | None = None,
    ) -> None:
        if queue is not None and not isinstance(queue, TaskQueue):
            raise TypeError(f"queue must be a TaskQueue (or None to build one from settings), got {queue!r}")
        if start_workers is not None and not isinstance(start_workers, bool):
            raise TypeError(f"start_workers must be True or False, got {start_workers!r}")
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if dashboard is not None and not isinstance(dashboard, bool):
            raise TypeError(
                f"dashboard must be True or False (default: the flask.dashboard setting), got {dashboard!r}"
            )
        self._dashboard = dashboard
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
        queue, owned = _queue_for(self._queue, overrides)
        try:
            api = HttpApi.from_settings(_flask_settings(queue, overrides), sources_of(overrides))
            start = self._start_workers
            if start is None:
                start = start_workers_flag(app.config)
        except TaskQueueError:
            if owned:
                queue.close()
            raise
        state = AppState(queue, owned, api, self._workers)
        app.extensions[EXTENSION_NAME] = state
        app.register_blueprint(blueprint(api), url_prefix=api.prefix or None)
        fs = _flask_settings(queue, overrides)
        if self._dashboard if self._dashboard is not None else fs.dashboard:
            _mount_dashboard(app, queue, api)
        app.cli.add_command(cli_group())
        if self._app is None:
            self._app = app
        if not api.auth_required and not (app.debug or app.testing):
            log.warning(
                "taskqueue: no flask.auth_token is set, so anyone who can reach this app can "
                "enqueue tasks under %s/",
                api.prefix,
            )
        if start:
            self._start_pool(app, state)
        if owned or start:
            atexit.register(shutdown_at_exit, weakref.ref(state))

    @staticmethod
    def _start_pool(app: Flask, state: AppState) -> None:
        """Start the pool now, at the first request, or never: see ``worker_start_mode``."""
        mode = worker_start_mode(app)
        if mode == "now":
            state.start_workers()
        elif mode == "first-request":
            state.pending_start = True
            app.before_request(state.start_pending)
            log.info("taskqueue: debug mode outside `flask run`; workers start at the first request")
        else:
            log.info("taskqueue: not starting workers in this process (reloader watcher or CLI command)")

    def state(self, app: Flask | None = None) -> AppState:
        app = app or self._current_app()
        try:
            return cast(AppState, app.extensions[EXTENSION_NAME])
        except KeyError:
            raise RuntimeError("TaskQueueExtension.init_app(app) was not called for this app") from None

    def _current_app(self) -> Flask:
        if has_app_context():
            return cast(Flask, current_app._get_current_object())  # type: ignore[attr-defined]
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
