"""``flask taskqueue worker`` and ``flask taskqueue status``: the ``taskqueue`` CLI on the app's queue.

The same loop and report as ``taskqueue worker`` / ``taskqueue status``, with
the same one-line errors and exit codes, inside Flask's app context.
"""

from __future__ import annotations

import json

import click
from flask.cli import AppGroup

from taskqueue import cli
from taskqueue.cli.app import wait_for_redis
from taskqueue.integrations.flask.state import current_state
from taskqueue.queue import TaskQueue


class _Group(cli.TaskQueueGroup, AppGroup):
    """taskqueue's one-line errors and exit codes, Flask's app context."""


def _ready_queue() -> TaskQueue:
    return cli.ready(current_state().queue)


def cli_group() -> click.Group:
    """A fresh ``taskqueue`` group for one app's ``flask`` command."""

    @click.group("taskqueue", cls=_Group)
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
        q = current_state().queue  # waits for Redis for workers.startup_wait, as `taskqueue worker`
        q = wait_for_redis(q, q.settings.workers.startup_wait)
        cli.run_worker(ctx, q, workers, queues, scheduler, autoscale, metrics_port)

    @group.command("status")
    @click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table.")
    def status(as_json: bool) -> None:
        """Show the queues, live workers and dead letters of the app's queue."""
        data = cli.gather_status(_ready_queue())
        click.echo(json.dumps(data, indent=2, default=str) if as_json else cli.render_status(data))

    return group
