"""Which queue a command works on: the one ``--app`` names, or one built from the settings.

``--app module:attr`` imports the user's module so that its tasks register;
every way that can fail (no such module, an error inside it, no such
attribute, not a TaskQueue) is one line naming the spec and the cause.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import sys
import traceback
from collections.abc import Iterator
from types import ModuleType
from typing import TYPE_CHECKING, Any

import click

from taskqueue.broker.errors import REDIS_ERRORS
from taskqueue.cli.group import Failure, Options, UsageFailure
from taskqueue.config import load_settings
from taskqueue.errors import BrokerError, ConfigurationError
from taskqueue.queue import TaskQueue
from taskqueue.registry import TaskRegistry
from taskqueue.urls import mask_url

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection


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


def open_queue(
    ctx: click.Context, app: str | None, url: str | None, registry: TaskRegistry | None = None
) -> TaskQueue:
    """The queue a command works on (closed when the command ends), checked to answer.

    Without ``app`` it is built from the settings, with ``registry`` (default: the
    process-wide one) as its tasks."""
    options: Options = ctx.find_object(Options) or Options(None, None)
    if app:
        q = import_app(app, options, url)
    else:
        settings = load_settings(options.settings_path, options.env)
        q = TaskQueue(url or None, settings=settings, registry=registry)
    ctx.call_on_close(q.close)
    return ready(q)
