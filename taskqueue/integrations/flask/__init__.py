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

The package, by concept: ``extension`` (``TaskQueueExtension``) and ``state``
(what an app holds, when its pool starts), ``blueprint`` (the routes) with
``bodies`` (request parsing) and ``documents`` (task records as JSON),
``auth`` (``HttpApi``: the checked flask settings and bearer tokens),
``problems`` (problem documents), ``appconfig`` (``app.config`` as a settings
layer) and ``cli`` (``flask taskqueue worker`` and ``flask taskqueue status``,
which run the ``taskqueue`` CLI's worker and status on the app's queue).
"""

from taskqueue.integrations.flask.appconfig import (
    CONFIG_ALIASES,
    CONFIG_PREFIX,
    START_WORKERS_KEY,
    config_overrides,
)
from taskqueue.integrations.flask.auth import HttpApi
from taskqueue.integrations.flask.bodies import ENQUEUE_FIELDS
from taskqueue.integrations.flask.documents import jsonable, task_document
from taskqueue.integrations.flask.extension import TaskQueueExtension
from taskqueue.integrations.flask.problems import PROBLEM_MIMETYPE, PROBLEM_TYPE, HTTPProblem, problem
from taskqueue.integrations.flask.state import EXTENSION_NAME, AppState, worker_start_mode

__all__ = [
    "TaskQueueExtension",
    "AppState",
    "HttpApi",
    "worker_start_mode",
    "config_overrides",
    "CONFIG_ALIASES",
    "CONFIG_PREFIX",
    "START_WORKERS_KEY",
    "EXTENSION_NAME",
    "ENQUEUE_FIELDS",
    "HTTPProblem",
    "problem",
    "PROBLEM_TYPE",
    "PROBLEM_MIMETYPE",
    "jsonable",
    "task_document",
]
