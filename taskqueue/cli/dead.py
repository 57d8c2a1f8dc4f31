"""``taskqueue dead list|requeue|purge`` and ``taskqueue purge QUEUE``: the destructive ones.

Both purges ask for confirmation on a terminal and need ``--yes`` elsewhere,
so a script never deletes by accident.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

import click

from taskqueue.cli.app import open_queue
from taskqueue.cli.group import (
    Failure,
    UsageFailure,
    app_option,
    checked_queue,
    cli,
    confirm,
    json_option,
    url_option,
    yes_option,
)
from taskqueue.cli.tables import cut, name_width, table

#: A ``DeadLetter``: its fields are slots filled from keyword arguments, which a type checker
#: cannot see, so they are read as Any here.
Letter = Any


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


def _print_json(letters: Sequence[Letter]) -> None:
    fields = list(type(letters[0]).__slots__) if letters else []
    click.echo(json.dumps([{f: getattr(d, f) for f in fields} for d in letters], indent=2, default=repr))


def _print_one(d: Letter) -> None:
    """One dead task in full: its reason, arguments and traceback."""
    error = d.error or {}
    click.echo(f"{d.id}  {d.name}  queue {d.queue}  attempts {d.attempts}  died {_when(d.died_ms)}")
    click.echo(f"reason: {d.reason}")
    click.echo(f"args: {json.dumps(d.args, default=repr)}  kwargs: {json.dumps(d.kwargs, default=repr)}")
    if error.get("traceback"):
        click.echo(error["traceback"].rstrip())


def _print_table(letters: Sequence[Letter]) -> None:
    """One row per dead task, its reason on the line below; 80 columns unless a name needs more."""
    others = [32, 8, 5, 11]
    lines = table(
        ["ID", "QUEUE", "TRIES", "DIED", "TASK"],
        [[d.id, d.queue, d.attempts, _when(d.died_ms)[5:16], d.name] for d in letters],
        [*others, name_width((d.name for d in letters), "TASK", others)],
    ).splitlines()
    click.echo(lines[0])
    for line, d in zip(lines[1:], letters, strict=True):
        click.echo(f"{line}\n  {cut(d.reason, 78)}")


def _list(letters: list[Letter], task_id: str | None, as_json: bool) -> None:
    if task_id is not None:
        letters = [d for d in letters if d.id == task_id]
        if not letters:
            raise Failure(f"task {task_id} is not in the dead-letter queue")
    if as_json:
        _print_json(letters)
    elif task_id is not None:
        _print_one(letters[0])
    elif not letters:
        click.echo("no dead tasks")
    else:
        _print_table(letters)


@cli.command()
@click.argument("action", type=click.Choice(["list", "requeue", "purge"]))
@app_option()
@url_option
@click.option("--queue", "-q", "queue_name", metavar="Q", help="Only this queue (default: all).")
@click.option("--id", "task_id", metavar="ID", help="Only this task (list, requeue).")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Most tasks to list per queue.",
)
@json_option
@yes_option
@click.pass_context
def dead(
    ctx: click.Context,
    action: str,
    app: str | None,
    url: str | None,
    queue_name: str | None,
    task_id: str | None,
    limit: int,
    as_json: bool,
    yes: bool,
) -> None:
    """List, requeue or purge dead tasks (retries spent, rejected, or bad input)."""
    q = open_queue(ctx, app, url)
    if queue_name is not None:
        checked_queue(q.settings, queue_name, "--queue")
    if action == "list":
        _list(q.dead_letters(queue_name, limit=limit), task_id, as_json)
    elif action == "requeue":
        count = q.requeue_dead(task_id, queue=queue_name)
        click.echo(json.dumps({"requeued": count}) if as_json else f"requeued {count} task(s)")
    else:
        if task_id is not None:
            raise UsageFailure("purge removes whole queues' dead letters; drop --id", param_hint="--id")
        confirm(yes, f"Delete every dead task of {queue_name or 'every queue'}?")
        count = q.purge_dead(queue_name)
        click.echo(json.dumps({"purged": count}) if as_json else f"purged {count} dead task(s)")


@cli.command()
@click.argument("queue_name", metavar="QUEUE")
@app_option()
@url_option
@yes_option
@json_option
@click.pass_context
def purge(
    ctx: click.Context, queue_name: str, app: str | None, url: str | None, yes: bool, as_json: bool
) -> None:
    """Delete every pending task of QUEUE (running and scheduled tasks are not touched)."""
    q = open_queue(ctx, app, url)
    checked_queue(q.settings, queue_name, "QUEUE")
    confirm(yes, f"Delete every pending task of queue {queue_name!r}?")
    count = q.purge(queue_name)
    click.echo(json.dumps({"purged": count}) if as_json else f"purged {count} task(s) from {queue_name}")
