"""``taskqueue enqueue NAME``: send one task with JSON arguments, optionally wait for its result.

Without ``--app`` the name is looked up in the task registry in Redis (what
live workers serve, DESIGN 9): its default queue and retries come from there,
and the call is written by the producer as the task's own code would write
it. With ``--app`` the app's own tasks are used, and Redis' registry is not
read (it works before any worker runs). Either way arguments are checked
before anything is written: a call that cannot fit is a usage error (exit 2),
not a dead letter later.
"""

from __future__ import annotations

import difflib
import inspect
import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import click

from taskqueue.cli.app import open_queue
from taskqueue.cli.group import Failure, UsageFailure, app_option, checked_queue, cli, json_option, url_option
from taskqueue.cli.tasks import NO_WORKER
from taskqueue.errors import SerializationError, TaskFailed, TaskNotFound
from taskqueue.handle import TaskHandle
from taskqueue.producer import published_definition
from taskqueue.queue import TaskQueue
from taskqueue.registry import TaskRegistry
from taskqueue.serialization import Envelope
from taskqueue.task import Signature

if TYPE_CHECKING:
    from taskqueue.broker.ports import Inspection
    from taskqueue.broker.task_registry import ServedTask


def _json_arg(value: str, option: str, kind: type, example: str) -> Any:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise UsageFailure(f"not valid JSON ({exc}); e.g. {option} {example!r}", param_hint=option) from None
    if not isinstance(parsed, kind):
        what = "array" if kind is list else "object"
        raise UsageFailure(f"must be a JSON {what}, e.g. {option} {example!r}", param_hint=option)
    return parsed


def _suggestions(name: str, known: Iterable[str]) -> list[str]:
    """Known names close to ``name``: those it ends (``add`` for ``app.tasks.add``), then
    the closest spellings."""
    known = sorted(known)
    tails = [k for k in known if k.rsplit(".", 1)[-1] == name]
    close = difflib.get_close_matches(name, known, n=3)
    return list(dict.fromkeys([*tails, *close]))[:3]


def _did_you_mean(name: str, known: Iterable[str]) -> str:
    close = _suggestions(name, known)
    return f"did you mean {' or '.join(repr(c) for c in close)}?" if close else ""


# -- with --app: the app's own definitions -----------------------------------------------------
def _app_default_queue(q: TaskQueue, name: str, app: str, args: list[Any], kwargs: dict[str, Any]) -> str:
    """The default queue of the app's task NAME, once the arguments are known to fit it."""
    try:
        definition = q.definition(name)
    except TaskNotFound:
        known = ", ".join(sorted(q.registry)) or "(none)"
        hint = _did_you_mean(name, q.registry)
        raise UsageFailure(
            f"no task named {name!r} is registered by {app}; registered: {known}"
            + (f"; {hint}" if hint else "")
        ) from None
    try:
        definition.prepare(Envelope(name, tuple(args), kwargs, {}))
    except (TypeError, ValueError) as exc:
        raise UsageFailure(str(exc)) from None
    return definition.queue


# -- without --app: the task registry in Redis ---------------------------------------------
def _served(inspection: Inspection, name: str) -> ServedTask:
    """What live workers published of the task NAME; a usage error (exit 2) when none serves it."""
    served = inspection.served_tasks()
    if name in served:
        return served[name]
    if not served:
        raise UsageFailure(
            f"no live worker serves a task named {name!r}: {NO_WORKER} (or send it with --app)"
        )
    hint = _did_you_mean(name, served) or f"live workers serve {len(served)} other task(s)"
    raise UsageFailure(
        f"no live worker serves a task named {name!r}; {hint} (`taskqueue tasks` lists them; "
        "--app sends a task from its code)"
    )


def call_signature(params: Sequence[str]) -> inspect.Signature | None:
    """The signature a published parameter list stands for (``x``, ``y=...``, ``/``, ``*``,
    ``*args``, ``**kwargs``: see ``TaskDefinition.published``); None when it is unreadable."""
    kinds = inspect.Parameter
    kind: inspect._ParameterKind = kinds.POSITIONAL_OR_KEYWORD
    out: list[inspect.Parameter] = []
    try:
        for token in params:
            name, has_default, _ = token.partition("=")
            if token == "/":
                out = [p.replace(kind=kinds.POSITIONAL_ONLY) for p in out]
            elif token == "*":
                kind = kinds.KEYWORD_ONLY
            elif token.startswith("**"):
                out.append(kinds(token[2:], kinds.VAR_KEYWORD))
            elif token.startswith("*"):
                out.append(kinds(token[1:], kinds.VAR_POSITIONAL))
                kind = kinds.KEYWORD_ONLY
            else:
                out.append(kinds(name, kind, default=None if has_default else kinds.empty))
        return inspect.Signature(out)
    except (TypeError, ValueError):
        return None


def _register_served(q: TaskQueue, served: ServedTask, args: list[Any], kwargs: dict[str, Any]) -> str:
    """Check the call against the published parameters, give ``q``'s (private) registry the
    task as published; returns its default queue."""
    signature = call_signature(served.params) if served.queue else None  # no queue: not published
    if signature is not None:
        try:
            signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise UsageFailure(
                f"arguments do not fit {served.name}({', '.join(served.params)}): {exc}"
            ) from None
    retries = served.max_retries if served.max_retries is not None else q.settings.tasks.max_retries
    default_queue = served.queue or "default"
    q.registry.register(published_definition(served.name, default_queue, retries))
    return default_queue


def _result(handle: TaskHandle, wait: float) -> Any:
    """The task's result within ``wait`` seconds; a runtime failure (exit 1) otherwise."""
    try:
        return handle.result(timeout=wait)
    except TimeoutError:
        raise Failure(f"task {handle.id} is still {handle.status} after {wait:g} s") from None
    except TaskFailed as exc:
        raise Failure(
            f"task {handle.id} {exc.status.lower()}: {exc.error_type}: {exc.error_message}"
        ) from None


@cli.command()
@click.argument("name")
@app_option()
@url_option
@click.option(
    "--args", "args_json", default="[]", metavar="JSON", help="Positional arguments as a JSON array."
)
@click.option(
    "--kwargs", "kwargs_json", default="{}", metavar="JSON", help="Keyword arguments as a JSON object."
)
@click.option("--queue", "-q", "queue_name", metavar="Q", help="Queue (default: the task's own).")
@click.option("--delay", type=click.FloatRange(min=0), metavar="SECONDS", help="Run after this many seconds.")
@click.option(
    "--wait",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Wait up to SECONDS for the result and print it.",
)
@json_option
@click.pass_context
def enqueue(
    ctx: click.Context,
    name: str,
    app: str | None,
    url: str | None,
    args_json: str,
    kwargs_json: str,
    queue_name: str | None,
    delay: float | None,
    wait: float | None,
    as_json: bool,
) -> None:
    """Send the task NAME with JSON arguments; prints its id.

    NAME is one that live workers serve (`taskqueue tasks`), or, with --app, one
    the app registers (no worker needs to run).
    """
    args = _json_arg(args_json, "--args", list, "[1, 2]")
    kwargs = _json_arg(kwargs_json, "--kwargs", dict, '{"x": 1}')
    if app:
        q = open_queue(ctx, app, url)
        default_queue = _app_default_queue(q, name, app, args, kwargs)
    else:
        q = open_queue(ctx, None, url, registry=TaskRegistry())  # holds only the task sent
        default_queue = _register_served(q, _served(q.broker, name), args, kwargs)
    if queue_name is not None:
        target = checked_queue(q.settings, queue_name, "--queue")
    else:
        target = checked_queue(q.settings, default_queue, f"default queue of {name}")
    try:
        handle = q.enqueue(Signature(name, tuple(args), kwargs), queue=target, delay=delay)
    except (TypeError, ValueError, SerializationError) as exc:  # a field's type, an option, the size
        raise UsageFailure((str(exc).strip() or type(exc).__name__).splitlines()[0]) from None
    record: dict[str, Any] = {"id": handle.id, "name": name, "queue": target}
    if wait is not None:
        record["result"] = _result(handle, wait)
        record["status"] = "SUCCEEDED"
    if as_json:
        click.echo(json.dumps(record, default=repr))
    elif wait is not None:
        click.echo(f"{handle.id} {json.dumps(record['result'], default=repr)}")
    else:
        click.echo(handle.id)
