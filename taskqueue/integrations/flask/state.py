"""What one app holds (its queue, its HTTP settings, its worker pool) and when the pool may start."""

from __future__ import annotations

import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, cast

import click
from flask import Flask, current_app
from flask.helpers import get_debug_flag

from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.errors import BrokerError
from taskqueue.integrations.flask.auth import HttpApi
from taskqueue.queue import TaskQueue
from taskqueue.urls import mask_url

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection, Producer

log = logging.getLogger("taskqueue.flask")

EXTENSION_NAME = "taskqueue"


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


class AppState:
    """What one app holds: its queue, its HTTP settings and its worker pool.

    Views reach the broker through the two ports they need: ``producer``
    (enqueue, read and cancel a task) and ``inspection`` (ping).
    """

    def __init__(self, queue: TaskQueue, owned: bool, api: HttpApi, workers: int | None) -> None:
        self.queue = queue
        self.producer: Producer = queue.broker
        self.inspection: Inspection = queue.broker
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
            except REDIS_ERRORS as exc:
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


def shutdown_at_exit(ref: weakref.ref[AppState]) -> None:
    state = ref()
    if state is not None:
        state.shutdown()


def current_state() -> AppState:
    """The state of the app handling the current request (or CLI command)."""
    return cast(AppState, current_app.extensions[EXTENSION_NAME])
