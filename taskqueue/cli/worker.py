"""``taskqueue worker``: serve the queues until SIGTERM or Ctrl-C, then drain.

The loop is ``run_worker``, shared with ``flask taskqueue worker``; it starts
the workers through ``q.start_workers()``, which also starts the scheduler
and the autoscaler when the settings (or ``--scheduler``, ``--autoscale``)
enable them, so the CLI starts exactly what a program would.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import click

from taskqueue import __version__
from taskqueue.cli.app import build_queue, wait_for_redis
from taskqueue.cli.group import (
    EXIT_FAILURE,
    Failure,
    Options,
    UsageFailure,
    app_option,
    checked_queue,
    cli,
    url_option,
)
from taskqueue.cli.processes import Supervisor, SupervisorLink
from taskqueue.config import Settings, load_settings
from taskqueue.queue import TaskQueue
from taskqueue.urls import mask_url

#: The most worker processes one supervisor runs.
MAX_PROCESSES = 256


def _parse_autoscale(ctx: click.Context, param: click.Parameter, value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    low, sep, high = value.partition(":")
    try:
        lo, hi = int(low), int(high)
    except ValueError:
        raise UsageFailure(f"{value!r} is not MIN:MAX, e.g. 1:20", param_hint="--autoscale") from None
    if not sep or lo < 1 or hi < lo:
        raise UsageFailure(f"{value!r}: need 1 <= MIN <= MAX, e.g. 1:20", param_hint="--autoscale")
    return lo, hi


def _parse_queues(settings: Settings, value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    if not names:
        raise UsageFailure(f"{value!r} names no queue, e.g. --queues high,default", param_hint="--queues")
    return [checked_queue(settings, name, "--queues") for name in names]


class _Shutdown:
    """First SIGTERM/SIGINT: stop gracefully. A second SIGINT: exit at once."""

    def __init__(self, grace: float) -> None:
        self.requested = threading.Event()
        self.grace = grace

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if not self.requested.is_set():
            self.requested.set()
            click.echo(
                f"{name} received: finishing running tasks (up to {self.grace:g} s); "
                "press Ctrl-C again to stop at once",
                err=True,
            )
        elif signum == signal.SIGINT:
            click.echo(
                "second SIGINT: stopping at once; unfinished tasks run again when their leases expire",
                err=True,
            )
            os._exit(EXIT_FAILURE)


def worker_options(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The options that `taskqueue worker` and `flask taskqueue worker` share."""
    options = [
        click.option(
            "--workers",
            "-w",
            type=click.IntRange(min=1),
            help="Worker threads (default: workers.initial_count).",
        ),
        click.option(
            "--queues",
            "-Q",
            metavar="Q1,Q2",
            help="Queues to serve, comma-separated (default: all, by priority).",
        ),
        click.option(
            "--scheduler", is_flag=True, default=False, help="Also run the scheduler (periodic tasks)."
        ),
        click.option(
            "--autoscale",
            metavar="MIN:MAX",
            callback=_parse_autoscale,
            help="Let the autoscaler keep between MIN and MAX threads.",
        ),
        click.option(
            "--metrics-port",
            type=click.IntRange(0, 65535),
            metavar="PORT",
            help="Serve Prometheus metrics on this port (0: any free port; needs taskqueue[prometheus]).",
        ),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default="info",
            show_default=True,
            help="Logging level of the worker's messages.",
        ),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def configure_logging(log_level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, log_level.upper()), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )


@cli.command()
@app_option(required=True)
@url_option
@worker_options
@click.option(
    "--wait-for-redis",
    "wait_seconds",
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Wait this long for Redis to answer at start, then exit 1 (default: workers.startup_wait, "
    "60; 0: do not wait). Wrong credentials or ACL grants exit 2 at once.",
)
@click.option(
    "--processes",
    "-p",
    type=click.IntRange(1, MAX_PROCESSES),
    metavar="N",
    help="Run N supervised worker processes of --workers threads each, for CPU-bound tasks "
    "(default: workers.processes, 1: this process only).",
)
@click.option("--supervisor-fd", type=int, hidden=True)  # set by the supervisor for its children
@click.pass_context
def worker(
    ctx: click.Context,
    app: str,
    url: str | None,
    workers: int | None,
    queues: str | None,
    scheduler: bool,
    autoscale: tuple[int, int] | None,
    metrics_port: int | None,
    log_level: str,
    wait_seconds: float | None,
    processes: int | None,
    supervisor_fd: int | None,
) -> None:
    """Run worker threads until SIGTERM or Ctrl-C (a second Ctrl-C stops at once)."""
    configure_logging(log_level)
    if supervisor_fd is None:
        count = processes if processes is not None else _processes_setting(ctx)
        if count > 1:
            ctx.exit(_supervise(ctx, count))
    link = SupervisorLink(supervisor_fd) if supervisor_fd is not None else None
    # It may start before its Redis (docker-compose, a reboot): wait for it, for a bounded time.
    q = build_queue(ctx, app, url)
    wait = q.settings.workers.startup_wait if wait_seconds is None else wait_seconds
    run_worker(ctx, wait_for_redis(q, wait), workers, queues, scheduler, autoscale, metrics_port, link)


def _processes_setting(ctx: click.Context) -> int:
    """``workers.processes`` from the settings files and environment (the supervisor does
    not import the app, so settings built in its code do not count here)."""
    options: Options = ctx.find_object(Options) or Options(None, None)
    return load_settings(options.settings_path, options.env).workers.processes


def _child_command(ctx: click.Context, number: int, fd: int) -> list[str]:
    """The argv of worker process ``number``: this command without --processes. Only the
    first serves --metrics-port (metrics are read from Redis, so one port shows them all)."""
    options: Options = ctx.find_object(Options) or Options(None, None)
    p = ctx.params
    argv = [sys.executable, "-m", "taskqueue"]
    argv += ["--settings", options.settings_path] if options.settings_path else []
    argv += ["--env", options.env] if options.env else []
    argv += ["worker", "--app", p["app"], "--log-level", p["log_level"], "--supervisor-fd", str(fd)]
    for flag, value in (("--url", p["url"]), ("--workers", p["workers"]), ("--queues", p["queues"])):
        argv += [flag, str(value)] if value is not None else []
    argv += ["--scheduler"] if p["scheduler"] else []
    argv += ["--autoscale", "{}:{}".format(*p["autoscale"])] if p["autoscale"] else []
    argv += ["--wait-for-redis", repr(p["wait_seconds"])] if p["wait_seconds"] is not None else []
    if p["metrics_port"] is not None and number == 1:
        argv += ["--metrics-port", str(p["metrics_port"])]
    return argv


def _supervise(ctx: click.Context, count: int) -> int:
    """Run ``count`` worker processes until SIGTERM or Ctrl-C; the exit code."""
    options: Options = ctx.find_object(Options) or Options(None, None)
    grace = load_settings(options.settings_path, options.env).workers.shutdown_grace_period
    supervisor = Supervisor(lambda number, fd: _child_command(ctx, number, fd), count, grace)
    click.echo(
        f"taskqueue {__version__} supervisor: {count} worker processes, pid {os.getpid()}; "
        "stop with Ctrl-C or SIGTERM (graceful)"
    )
    sys.stdout.flush()
    code = supervisor.run()
    if supervisor.failure is not None:
        exc = Failure(supervisor.failure[1])
        exc.exit_code = supervisor.failure[0]
        raise exc
    click.echo(
        "supervisor stopped: every worker process finished its running tasks"
        if code == 0
        else "supervisor stopped; some tasks were left to their leases (they will run again)"
    )
    return code


def _with_options(
    settings: Settings, workers: int | None, scheduler: bool, autoscale: tuple[int, int] | None
) -> Settings:
    """The settings with --workers, --scheduler and --autoscale laid on top, validated."""
    count = workers or settings.workers.initial_count
    changes: dict[str, Any] = {}
    if autoscale:
        low, high = autoscale
        if workers is not None and not low <= workers <= high:
            raise UsageFailure(f"--workers {workers} is outside --autoscale {low}:{high}")
        if workers is None:
            count = min(max(count, low), high)
        changes["autoscaler"] = {"enabled": True, "min_workers": low, "max_workers": high}
    if scheduler:
        changes["scheduler"] = {"enabled": True}
    changes["workers"] = {"initial_count": count}
    return settings.replace(**changes).validate()


def run_worker(
    ctx: click.Context,
    q: TaskQueue,
    workers: int | None,
    queues: str | None,
    scheduler: bool,
    autoscale: tuple[int, int] | None,
    metrics_port: int | None = None,
    supervisor: SupervisorLink | None = None,
) -> None:
    """Serve ``q`` until SIGTERM or Ctrl-C: ``taskqueue worker`` and ``flask taskqueue worker``.

    ``supervisor``: the link of a worker process that ``--processes`` started; it hears
    that this process serves, and stops it when the supervisor is gone."""
    served = _parse_queues(q.settings, queues)
    q.settings = _with_options(q.settings, workers, scheduler, autoscale)
    count = q.settings.workers.initial_count
    shutdown = _Shutdown(q.settings.workers.shutdown_grace_period)
    shutdown.install()
    metrics_url = _serve_metrics(q, metrics_port) if metrics_port is not None else None
    q.start_workers(count, queues=served)  # with the scheduler and autoscaler the settings enable
    refusals = q.pool.refusals if q.pool is not None else None
    if refusals is not None:  # Redis answered what no retry fixes, for every queue: stop
        refusals.listeners.append(lambda reason: shutdown.requested.set())
        if refusals.exhausted.is_set():
            shutdown.requested.set()
    _banner(q, count, metrics_url)
    if supervisor is not None:
        supervisor.ready()
        supervisor.watch(shutdown.requested.set)
    shutdown.requested.wait()
    # Nothing scales or schedules while the workers drain.
    q.stop_scheduler()
    q.services.stop_all()
    finished = q.stop_workers()
    if refusals is not None and refusals.exhausted.is_set():
        message = f"worker stopped: no queue left to serve: {refusals.reason}"
        if supervisor is not None:
            supervisor.fatal(message)  # no restart fixes it
        raise Failure(message)
    if finished:
        click.echo("worker stopped: every running task finished")
    else:
        click.echo("worker stopped; tasks still running were left to their leases (they will run again)")
        ctx.exit(EXIT_FAILURE)


def _serve_metrics(q: TaskQueue, port: int) -> str:
    try:
        from taskqueue.metrics.prometheus import start_http_server
    except ImportError as exc:
        raise UsageFailure(
            f"--metrics-port needs prometheus_client: pip install 'taskqueue[prometheus]' ({exc})"
        ) from None
    try:
        return start_http_server(q, port).url
    except OSError as exc:
        raise UsageFailure(f"--metrics-port {port}: {exc}") from None


def _banner(q: TaskQueue, count: int, metrics_url: str | None = None) -> None:
    pool = q.pool
    served = pool.queues if pool else q.settings.queues_by_priority()
    autoscaler = q.autoscaler
    threads = f"{count}"
    if autoscaler is not None:
        threads += f" (autoscale {autoscaler.settings.min_workers}-{autoscaler.settings.max_workers})"
    names = sorted(q.registry)
    shown = ", ".join(names[:6]) + (f", ... ({len(names) - 6} more)" if len(names) > 6 else "")
    lines = [
        f"taskqueue {__version__} worker ready",
        f"  redis      {mask_url(q.url)} (namespace {q.settings.redis.namespace})",
        f"  queues     {', '.join(f'{name} ({q.settings.queues[name]})' for name in served)}",
        f"  threads    {threads}",
        f"  scheduler  {'on' if q.settings.scheduler.enabled else 'off'}",
        f"  metrics    {metrics_url or 'off (--metrics-port)'}",
        f"  tasks      {len(names)}: {shown or '(none registered: check --app)'}",
        f"  process    {socket.gethostname()} pid {os.getpid()}",
        "Stop with Ctrl-C or SIGTERM (graceful); a second Ctrl-C stops at once.",
    ]
    click.echo("\n".join(lines))
    sys.stdout.flush()
