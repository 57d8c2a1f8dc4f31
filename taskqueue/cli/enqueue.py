"""``taskqueue enqueue NAME``: send one task with JSON arguments, optionally wait for its result.

Arguments are checked against the task before anything is written: a call
that cannot fit is a usage error (exit 2), not a dead letter later.
"""

from __future__ import annotations

import json
from typing import Any

import click

from taskqueue.cli.app import open_queue
from taskqueue.cli.group import Failure, UsageFailure, app_option, checked_queue, cli, json_option, url_option
from taskqueue.errors import TaskFailed, TaskNotFound
from taskqueue.handle import TaskHandle
from taskqueue.queue import TaskQueue
from taskqueue.registry import TaskDefinition
from taskqueue.serialization import Envelope
from taskqueue.task import Signature


def _json_arg(value: str, option: str, kind: type, example: str) -> Any:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise UsageFailure(f"not valid JSON ({exc}); e.g. {option} {example!r}", param_hint=option) from None
    if not isinstance(parsed, kind):
        what = "array" if kind is list else "object"
        raise UsageFailure(f"must be a JSON {what}, e.g. {option} {example!r}", param_hint=option)
    return parsed


def _definition(q: TaskQueue, name: str, app: str, args: list[Any], kwargs: dict[str, Any]) -> TaskDefinition:
    """The task NAME of the app, once the arguments are known to fit it."""
    try:
        definition = q.definition(name)
    except TaskNotFound:
        known = ", ".join(sorted(q.registry)) or "(none)"
        raise UsageFailure(f"no task named {name!r} is registered by {app}; registered: {known}") from None
    try:
        definition.prepare(Envelope(name, tuple(args), kwargs, {}))
    except TypeError as exc:
        raise UsageFailure(str(exc)) from None
    return definition


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
@app_option(required=True)
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
    app: str,
    url: str | None,
    args_json: str,
    kwargs_json: str,
    queue_name: str | None,
    delay: float | None,
    wait: float | None,
    as_json: bool,
) -> None:
    """Send the task NAME (registered by --app) with JSON arguments; prints its id."""
    args = _json_arg(args_json, "--args", list, "[1, 2]")
    kwargs = _json_arg(kwargs_json, "--kwargs", dict, '{"x": 1}')
    q = open_queue(ctx, app, url)
    definition = _definition(q, name, app, args, kwargs)
    if queue_name is not None:
        checked_queue(q.settings, queue_name, "--queue")
    try:
        handle = q.enqueue(Signature(name, tuple(args), kwargs), queue=queue_name, delay=delay)
    except TypeError as exc:  # a value that does not fit the task's annotations
        raise UsageFailure(str(exc)) from None
    record: dict[str, Any] = {"id": handle.id, "name": name, "queue": queue_name or definition.queue}
    if wait is not None:
        record["result"] = _result(handle, wait)
        record["status"] = "SUCCEEDED"
    if as_json:
        click.echo(json.dumps(record, default=repr))
    elif wait is not None:
        click.echo(f"{handle.id} {json.dumps(record['result'], default=repr)}")
    else:
        click.echo(handle.id)
