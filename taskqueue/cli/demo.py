"""``taskqueue demo``: a short run on a private embedded server (see ``taskqueue.demo``)."""

from __future__ import annotations

import click

from taskqueue.cli.group import cli
from taskqueue.cli.status import gather_status, render_status


@cli.command()
@click.option(
    "--tasks", "count", type=click.IntRange(1, 500), default=12, show_default=True, help="Tasks to send."
)
@click.option("--workers", type=click.IntRange(1, 32), default=4, show_default=True, help="Worker threads.")
def demo(count: int, workers: int) -> None:
    """A short demonstration on a private embedded server: priorities, retries, delays, dead letters."""
    from taskqueue.demo import run_demo

    run_demo(click.echo, count=count, workers=workers, render=lambda q: render_status(gather_status(q)))
