"""The ``taskqueue`` click group, its exit codes, and the options its commands share.

Exit codes: 0 ok, 1 runtime failure (Redis unreachable, a task failed...),
2 usage or configuration error. Expected errors are one line on stderr,
never a traceback: ``TaskQueueGroup`` turns taskqueue's errors into them.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import click

from taskqueue import __version__
from taskqueue.config import Settings
from taskqueue.errors import BrokerError, ConfigurationError, TaskQueueError
from taskqueue.identifiers import check_queue
from taskqueue.urls import mask_url, url_problem

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


class Failure(click.ClickException):
    """A runtime failure: exit code 1, one line on stderr."""

    exit_code = EXIT_FAILURE


class UsageFailure(click.ClickException):
    """A wrong option or argument found after parsing: exit code 2, one line (no usage dump)."""

    exit_code = EXIT_USAGE

    def __init__(self, message: str, param_hint: str | None = None) -> None:
        super().__init__(f"{param_hint}: {message}" if param_hint else message)


class ConfigFailure(click.ClickException):
    """A configuration error: exit code 2 (every problem listed)."""

    exit_code = EXIT_USAGE


class TaskQueueGroup(click.Group):
    """Turns taskqueue's errors into one-line messages with the documented exit codes."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigurationError as exc:
            raise ConfigFailure(f"configuration: {exc}") from None
        except BrokerError as exc:
            raise Failure(str(exc)) from None
        except TaskQueueError as exc:
            raise Failure(str(exc).splitlines()[0]) from None


_Group = TaskQueueGroup  # the name `flask taskqueue` used before the split


@dataclass
class Options:
    """The group's own options, for every command: which settings file and environment."""

    settings_path: str | None
    env: str | None


def checked_queue(settings: Settings, name: str, param_hint: str) -> str:
    """``name`` when it is a configured queue; else the usage error (exit 2) saying how to add it."""
    try:
        return check_queue(settings, name)
    except ConfigurationError as exc:
        raise UsageFailure(str(exc), param_hint=param_hint) from None


def _check_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A malformed ``--url`` is one line naming it (password masked) and the fault, exit 2."""
    problem = url_problem(value) if value else None
    if problem is not None:
        raise UsageFailure(f"{mask_url(value or '')!r}: {problem}", param_hint="--url")
    return value


def app_option(required: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return click.option(
        "--app",
        "-A",
        required=required,
        metavar="MODULE:ATTR",
        help="Import MODULE (so its tasks register) and use its TaskQueue ATTR, e.g. myapp.tasks:queue.",
    )


url_option = click.option(
    "--url",
    metavar="URL",
    callback=_check_url,
    help="Redis URL (redis://, rediss://, unix://, redis+sentinel://). Default: the settings (redis.url).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table."
)
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def confirm(yes: bool, question: str) -> None:
    """Ask on a terminal; elsewhere (a script, CI) refuse unless --yes was given."""
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageFailure(f"{question} Not on a terminal: add --yes to confirm.")
    click.confirm(question, abort=True)


@click.group(
    cls=TaskQueueGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--settings",
    "settings_path",
    metavar="FILE",
    help="Settings file (default: ./settings.toml, or $TASK_QUEUE_SETTINGS_FILE); its .local twin and "
    ".secrets.toml beside it are read too.",
)
@click.option(
    "--env", metavar="NAME", help="Environment section to apply (default: $TASK_QUEUE_ENV or development)."
)
@click.version_option(__version__, prog_name="taskqueue")
@click.pass_context
def cli(ctx: click.Context, settings_path: str | None, env: str | None) -> None:
    """taskqueue: a Redis-backed task queue with thread workers.

    Exit codes: 0 ok, 1 runtime failure, 2 usage or configuration error.
    """
    ctx.obj = Options(settings_path, env)
