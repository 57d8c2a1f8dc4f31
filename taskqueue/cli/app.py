"""Which queue a command works on: the one ``--app`` names, or one built from the settings.

``--app module:attr`` imports the user's module so that its tasks register;
every way that can fail (no such module, an error inside it, no such
attribute, not a TaskQueue) is one line naming the spec and the cause.

``taskqueue worker`` may start before its Redis (docker-compose, a reboot), so
``wait_for_redis`` retries what a retry can fix (refused or timed-out
connections, a server still loading its data) for a bounded time, and stops at
once on what none can (wrong credentials, a missing ACL grant, a cluster node
answering MOVED): waiting would only hide the error.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click
import redis
import tenacity

from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.cli.group import ConfigFailure, Failure, Options, UsageFailure
from taskqueue.config import load_settings
from taskqueue.errors import BrokerError, ConfigurationError
from taskqueue.queue import TaskQueue
from taskqueue.registry import TaskRegistry
from taskqueue.urls import mask_url

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection

log = logging.getLogger("taskqueue.cli")


@contextlib.contextmanager
def _environ(**values: str | None) -> Iterator[None]:
    """Set variables while the app module is imported, so its from_settings() sees --url/--env."""
    saved = {k: os.environ.get(k) for k in values}
    try:
        for key, value in values.items():
            if value is not None:
                os.environ[key] = value
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _where(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return f" ({frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def _import_module(module_name: str, options: Options, url: str | None) -> ModuleType:
    """Import the user's module as ``python -m`` would, with --url/--env/--settings visible to it."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the project directory is importable
    try:
        with _environ(
            TASK_QUEUE_REDIS__URL=url,
            TASK_QUEUE_ENV=options.env,
            TASK_QUEUE_SETTINGS_FILE=options.settings_path,
        ):
            return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            raise UsageFailure(
                f"cannot import {module_name!r}: no module named {exc.name!r} "
                "(run from the project directory or add it to PYTHONPATH)",
                param_hint="--app",
            ) from None
        raise UsageFailure(
            f"importing {module_name!r} failed: {exc}{_where(exc)}", param_hint="--app"
        ) from None
    except (ConfigurationError, BrokerError):
        raise
    except Exception as exc:  # noqa: BLE001 - any error in the user's module is reported in one line
        raise UsageFailure(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}{_where(exc)}", param_hint="--app"
        ) from None


def _attribute(module: ModuleType, spec: str, module_name: str, attr: str) -> Any:
    """``module.attr`` (dotted), called when it is a factory such as ``myapp:create_queue``."""
    target: Any = module
    for part in attr.split("."):
        if not hasattr(target, part):
            raise UsageFailure(f"module {module_name!r} has no attribute {attr!r}", param_hint="--app")
        target = getattr(target, part)
    if callable(target) and not isinstance(target, (TaskQueue, type)):
        try:
            target = target()
        except (ConfigurationError, BrokerError):
            raise
        except Exception as exc:  # noqa: BLE001 - the user's factory failed: one line, not a traceback
            raise UsageFailure(
                f"calling {spec!r} failed: {type(exc).__name__}: {exc}{_where(exc)}", param_hint="--app"
            ) from None
    return target


def _only_queue(module: ModuleType, module_name: str) -> TaskQueue:
    found = [v for v in vars(module).values() if isinstance(v, TaskQueue)]
    if len(found) != 1:
        raise UsageFailure(
            f"module {module_name!r} holds {len(found)} TaskQueue objects; name one: {module_name}:NAME",
            param_hint="--app",
        )
    return found[0]


def import_app(spec: str, options: Options, url: str | None) -> TaskQueue:
    """``module:attr`` (or ``module``, if it holds exactly one TaskQueue) -> the TaskQueue."""
    module_name, _, attr = spec.partition(":")
    if not module_name or (":" in spec and not attr):
        raise UsageFailure(f"{spec!r} is not module:attribute, e.g. myapp.tasks:queue", param_hint="--app")
    module = _import_module(module_name, options, url)
    target = _attribute(module, spec, module_name, attr) if attr else _only_queue(module, module_name)
    if not isinstance(target, TaskQueue):
        raise UsageFailure(f"{spec!r} is a {type(target).__name__}, not a TaskQueue", param_hint="--app")
    if url and target.url != url:
        # The module built its queue with a fixed URL: keep its tasks and settings, use --url.
        settings = target.settings.replace(redis={"url": url}).validate()
        target = TaskQueue(url, settings=settings, registry=target.registry)
    return target


def ready(q: TaskQueue) -> TaskQueue:
    """``q`` once Redis answers a PING; else the one-line runtime failure (exit 1)."""
    inspection: Inspection = q.broker
    try:
        inspection.ping()
    except (OSError, *REDIS_ERRORS) as exc:
        raise Failure(f"cannot reach Redis at {mask_url(q.url)}: {exc}") from None
    return q


def _cause(exc: BaseException) -> BaseException:
    """The Redis error inside a BrokerError (the producer side wraps them)."""
    return exc.__cause__ if isinstance(exc, BrokerError) and exc.__cause__ is not None else exc


#: Answers that say "not yet": a connection refused or timed out, a server loading its data
#: (BusyLoadingError is a ConnectionError), a cluster still forming, a replica without its primary.
_NOT_YET = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ClusterDownError,
    redis.exceptions.TryAgainError,
    redis.exceptions.MasterDownError,
    OSError,
)


def _retryable(exc: BaseException) -> bool:
    """Whether Redis may answer if asked again. AuthenticationError is a ConnectionError to
    redis-py, but no retry fixes a password."""
    exc = _cause(exc)
    return isinstance(exc, _NOT_YET) and not isinstance(exc, redis.exceptions.AuthenticationError)


def _unfixable(exc: BaseException, url: str) -> click.ClickException:
    """One line for an answer that no retry can change: exit 2 when the configuration is wrong."""
    exc = _cause(exc)
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return ConfigFailure(f"Redis at {url} refused the credentials: {exc}; check the user and password")
    if isinstance(exc, redis.exceptions.NoPermissionError):
        return ConfigFailure(
            f"Redis at {url} refused a command to this user: {exc}; grant the user the ACL line of "
            "taskqueue.broker.acl.acl_setuser()"
        )
    if isinstance(exc, redis.exceptions.AskError):  # MovedError too
        return ConfigFailure(
            f"Redis at {url} is a Redis Cluster node that does not hold this namespace (it answered "
            f"MOVED/ASK {exc}): a redis:// URL reaches one node only"
        )
    return Failure(f"Redis at {url} failed: {exc}")


def wait_for_redis(q: TaskQueue, wait: float) -> TaskQueue:
    """``q`` once Redis answers, retrying for up to ``wait`` seconds (0: one try).

    One log line when the waiting starts and one when Redis answers; exit 1 when the
    time runs out, exit 2 at once for what no retry can fix. The probe is a PING and a
    read of the namespace's worker registry: a keyed read, so that a cluster node which
    does not own the namespace's slot answers MOVED here rather than in every worker."""
    url = mask_url(q.url)
    inspection: Inspection = q.broker
    started = time.monotonic()
    waiting = False

    def probe() -> None:
        inspection.ping()
        inspection.live_workers()

    def before_sleep(state: tenacity.RetryCallState) -> None:
        nonlocal waiting
        if not waiting:
            waiting = True
            error = state.outcome.exception() if state.outcome else None
            log.warning("Redis at %s does not answer (%s): waiting up to %g s for it", url, error, wait)

    retrying = tenacity.Retrying(
        stop=tenacity.stop_before_delay(wait),
        wait=tenacity.wait_exponential(multiplier=0.1, max=2.0),
        retry=tenacity.retry_if_exception(_retryable),
        before_sleep=before_sleep,
        reraise=True,
    )
    try:
        retrying(probe)
    except (OSError, *REDIS_ERRORS) as exc:
        if not _retryable(exc):
            raise _unfixable(exc, url) from None
        within = f" within {wait:g} s (--wait-for-redis, workers.startup_wait)" if wait else ""
        raise Failure(f"cannot reach Redis at {url}{within}: {_cause(exc)}") from None
    if waiting:
        log.warning("Redis at %s answers after %.1f s of waiting", url, time.monotonic() - started)
    return q


def build_queue(
    ctx: click.Context, app: str | None, url: str | None, registry: TaskRegistry | None = None
) -> TaskQueue:
    """The queue a command works on (closed when the command ends), not yet checked to answer.

    Without ``app`` it is built from the settings, with ``registry`` (default: the
    process-wide one) as its tasks."""
    options: Options = ctx.find_object(Options) or Options(None, None)
    if app:
        q = import_app(app, options, url)
    else:
        settings = load_settings(options.settings_path, options.env)
        q = TaskQueue(url or None, settings=settings, registry=registry)
    ctx.call_on_close(q.close)
    return q


def open_queue(
    ctx: click.Context, app: str | None, url: str | None, registry: TaskRegistry | None = None
) -> TaskQueue:
    """``build_queue``, checked to answer (at once: only the worker waits for Redis)."""
    return ready(build_queue(ctx, app, url, registry))
