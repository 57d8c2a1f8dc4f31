"""The ``taskqueue`` command line (click): run workers, inspect and administer queues.

One module per command (``worker``, ``status``, ``tasks``, ``enqueue``,
``dead`` with ``purge``, ``demo``), each adding itself to the group of
``group``, which also holds the exit codes and the shared options; ``app``
finds the queue a command works on; ``tables`` lays out their text tables.

Exit codes: 0 ok, 1 runtime failure (Redis unreachable, a task failed...),
2 usage or configuration error. Expected errors are one line on stderr,
never a traceback.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from taskqueue.cli import dashboard, dead, demo, enqueue, status, tasks, worker  # noqa: F401 - each adds its command
from taskqueue.cli.app import import_app, open_queue, ready
from taskqueue.cli.group import (
    EXIT_FAILURE,
    EXIT_OK,
    EXIT_USAGE,
    ConfigFailure,
    Failure,
    Options,
    TaskQueueGroup,
    UsageFailure,
    _Group,
    app_option,
    checked_queue,
    cli,
    json_option,
    url_option,
    yes_option,
)
from taskqueue.cli.status import gather_status, render_status, status_report
from taskqueue.cli.tables import table
from taskqueue.cli.worker import configure_logging, run_worker, worker_options


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point; returns the exit code (0 ok, 1 runtime failure, 2 usage/config)."""
    try:
        code = cli.main(
            args=list(argv) if argv is not None else None, prog_name="taskqueue", standalone_mode=False
        )
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EXIT_FAILURE
    return code if isinstance(code, int) else EXIT_OK


__all__ = [
    "EXIT_FAILURE",
    "EXIT_OK",
    "EXIT_USAGE",
    "ConfigFailure",
    "Failure",
    "Options",
    "TaskQueueGroup",
    "UsageFailure",
    "_Group",
    "app_option",
    "checked_queue",
    "cli",
    "configure_logging",
    "gather_status",
    "import_app",
    "json_option",
    "main",
    "open_queue",
    "ready",
    "render_status",
    "run_worker",
    "status_report",
    "table",
    "url_option",
    "worker_options",
    "yes_option",
]
