"""The ``taskqueue`` command line (click): run workers, inspect and administer queues.

Exit codes: 0 ok, 1 runtime failure (Redis unreachable, a task failed...),
2 usage or configuration error. Expected errors are one line on stderr,
never a traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import click
import redis

from taskqueue import __version__
from taskqueue.broker import mask_url
from taskqueue.builder import start_enabled_services
from taskqueue.config import load_settings
from taskqueue.errors import BrokerError, ConfigurationError, TaskFailed, TaskNotFound, TaskQueueError
from taskqueue.queue import TaskQueue
from taskqueue.serialization import Envelope
from taskqueue.task import Signature

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


class _Group(click.Group):
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


@dataclass
class _Options:
    settings_path: str | None
    env: str | None


# -- resolving the queue --------------------------------------------------------------
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


def import_app(spec: str, options: _Options, url: str | None) -> TaskQueue:
    """``module:attr`` (or ``module``, if it holds exactly one TaskQueue) -> the TaskQueue."""
    module_name, _, attr = spec.partition(":")
    if not module_name or (":" in spec and not attr):
        raise UsageFailure(f"{spec!r} is not module:attribute, e.g. myapp.tasks:queue", param_hint="--app")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # like `python -m`: the project directory is importable
    try:
        with _environ(
            TASK_QUEUE_REDIS__URL=url,
            TASK_QUEUE_ENV=options.env,
            TASK_QUEUE_SETTINGS_FILE=options.settings_path,
        ):
            module = importlib.import_module(module_name)
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
    if attr:
        target = module
        for part in attr.split("."):
            if not hasattr(target, part):
                raise UsageFailure(f"module {module_name!r} has no attribute {attr!r}", param_hint="--app")
            target = getattr(target, part)
        if callable(target) and not isinstance(target, (TaskQueue, type)):
            try:
                target = target()  # a factory: myapp:create_queue
            except (ConfigurationError, BrokerError):
                raise
            except Exception as exc:  # noqa: BLE001 - the user's factory failed: one line, not a traceback
                raise UsageFailure(
                    f"calling {spec!r} failed: {type(exc).__name__}: {exc}{_where(exc)}", param_hint="--app"
                ) from None
    else:
        found = {n: v for n, v in vars(module).items() if isinstance(v, TaskQueue)}
        if len(found) != 1:
            raise UsageFailure(
                f"module {module_name!r} holds {len(found)} TaskQueue objects; name one: {module_name}:NAME",
                param_hint="--app",
            )
        target = next(iter(found.values()))
    if not isinstance(target, TaskQueue):
        raise UsageFailure(f"{spec!r} is a {type(target).__name__}, not a TaskQueue", param_hint="--app")
    if url and target.url != url:
        # The module built its queue with a fixed URL: keep its tasks and settings, use --url.
        settings = target.settings.replace(redis={"url": url}).validate()
        target = TaskQueue(url, settings=settings, registry=target.registry)
    return target


def open_queue(ctx: click.Context, app: str | None, url: str | None) -> TaskQueue:
    """The queue a command works on (closed when the command ends), checked to answer."""
    options: _Options = ctx.find_object(_Options) or _Options(None, None)
    if app:
        q = import_app(app, options, url)
    else:
        q = TaskQueue(url or None, settings=load_settings(options.settings_path, options.env))
    ctx.call_on_close(q.close)
    try:
        q.broker.ping()
    except redis.exceptions.RedisError as exc:
        raise Failure(f"cannot reach Redis at {mask_url(q.url)}: {exc}") from None
    return q


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
    help="Redis URL (redis://, rediss://, unix://, redis+sentinel://). Default: the settings (redis.url).",
)
json_option = click.option(
    "--json", "as_json", is_flag=True, help="Print JSON for scripts instead of a table."
)
yes_option = click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")


def _confirm(yes: bool, question: str) -> None:
    if yes:
        return
    if not sys.stdin.isatty():
        raise UsageFailure(f"{question} Not on a terminal: add --yes to confirm.")
    click.confirm(question, abort=True)


# -- the group -------------------------------------------------------------------------
@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
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
    ctx.obj = _Options(settings_path, env)


# -- worker ----------------------------------------------------------------------------
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


def _parse_queues(q: TaskQueue, value: str | None) -> list[str] | None:
    if not value:
        return None
    names = [n.strip() for n in value.split(",") if n.strip()]
    unknown = [n for n in names if n not in q.settings.queues]
    if unknown or not names:
        configured = ", ".join(q.settings.queues_by_priority())
        raise UsageFailure(
            f"unknown queue(s) {', '.join(unknown) or repr(value)}; configured: {configured}",
            param_hint="--queues",
        )
    return names


class _Shutdown:
    """First SIGTERM/SIGINT: stop gracefully. A second SIGINT: exit at once."""

    def __init__(self, grace: float) -> None:
        self.requested = threading.Event()
        self.grace = grace

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)

    def _handle(self, signum: int, frame: Any) -> None:
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
) -> None:
    """Run worker threads until SIGTERM or Ctrl-C (a second Ctrl-C stops at once)."""
    configure_logging(log_level)
    run_worker(ctx, open_queue(ctx, app, url), workers, queues, scheduler, autoscale, metrics_port)


def run_worker(
    ctx: click.Context,
    q: TaskQueue,
    workers: int | None,
    queues: str | None,
    scheduler: bool,
    autoscale: tuple[int, int] | None,
    metrics_port: int | None = None,
) -> None:
    """Serve ``q`` until SIGTERM or Ctrl-C: ``taskqueue worker`` and ``flask taskqueue worker``."""
    served = _parse_queues(q, queues)
    settings = q.settings
    count = workers or settings.workers.initial_count
    changes: dict[str, Any] = {"workers": {"initial_count": count}}
    if autoscale:
        low, high = autoscale
        if workers is not None and not low <= workers <= high:
            raise UsageFailure(f"--workers {workers} is outside --autoscale {low}:{high}")
        if workers is None:
            count = min(max(count, low), high)
            changes["workers"]["initial_count"] = count
        changes["autoscaler"] = {"enabled": True, "min_workers": low, "max_workers": high}
    if scheduler:
        changes["scheduler"] = {"enabled": True}
    for given, option, method in (
        (scheduler, "--scheduler", "start_scheduler"),
        (autoscale, "--autoscale", "start_autoscaler"),
    ):
        if given and not callable(getattr(q, method, None)):
            raise UsageFailure(f"{option}: this taskqueue has no TaskQueue.{method}()")
    q.settings = settings.replace(**changes).validate()
    shutdown = _Shutdown(q.settings.workers.shutdown_grace_period)
    shutdown.install()
    metrics_url = _serve_metrics(q, metrics_port) if metrics_port is not None else None
    q.start_workers(count, queues=served)
    services = start_enabled_services(q)
    _banner(q, count, services, metrics_url)
    shutdown.requested.wait()
    for extension in reversed(list(getattr(q, "_extensions", {}).values())):
        extension.stop()  # no scaling or scheduling while the workers drain
    finished = q.stop_workers()
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


def _banner(q: TaskQueue, count: int, services: list[str], metrics_url: str | None = None) -> None:
    pool = q.pool
    served = pool.queues if pool else q.settings.queues_by_priority()
    autoscaler = q.settings.autoscaler
    threads = f"{count}"
    if "autoscaler" in services:
        threads += f" (autoscale {autoscaler.min_workers}-{autoscaler.max_workers})"
    names = sorted(q.registry)
    shown = ", ".join(names[:6]) + (f", ... ({len(names) - 6} more)" if len(names) > 6 else "")
    lines = [
        f"taskqueue {__version__} worker ready",
        f"  redis      {mask_url(q.url)} (namespace {q.settings.redis.namespace})",
        f"  queues     {', '.join(f'{name} ({q.settings.queues[name]})' for name in served)}",
        f"  threads    {threads}",
        f"  scheduler  {'on' if 'scheduler' in services else 'off'}",
        f"  metrics    {metrics_url or 'off (--metrics-port)'}",
        f"  tasks      {len(names)}: {shown or '(none registered: check --app)'}",
        f"  process    {socket.gethostname()} pid {os.getpid()}",
        "Stop with Ctrl-C or SIGTERM (graceful); a second Ctrl-C stops at once.",
    ]
    click.echo("\n".join(lines))
    sys.stdout.flush()


# -- status ------------------------------------------------------------------------------
def gather_status(q: TaskQueue) -> dict[str, Any]:
    """Everything ``taskqueue status`` shows, as plain data (no secrets)."""
    names = q.settings.queues_by_priority()
    pending = q.broker.queue_lengths(names)
    dead = q.broker.dead_count(names)
    stats = q.broker.stats(names)
    paused = q.broker.paused_queues()
    now = time.time()
    workers = []
    for worker_id, info in sorted(q.broker.live_workers().items()):
        beat = info.get("heartbeat_ms")
        workers.append(
            {
                "id": worker_id,
                "host": info.get("host", ""),
                "pid": info.get("pid"),
                "threads": info.get("threads", 0),
                "busy": info.get("busy", 0),
                "queues": info.get("queues", []),
                "started_at": info.get("started_at"),
                "uptime_s": round(now - info["started_at"], 1) if info.get("started_at") else None,
                "heartbeat_ms": beat,
            }
        )
    periodic: list[dict[str, Any]] = []
    lister = getattr(q, "periodic_tasks", None)  # present when the scheduler module is
    if callable(lister):
        for entry in lister():
            if dataclasses.is_dataclass(entry) and not isinstance(entry, type):
                entry = dataclasses.asdict(entry)
            periodic.append(dict(entry))
    return {
        "url": mask_url(q.url),
        "namespace": q.settings.redis.namespace,
        "queues": [
            {
                "name": name,
                "priority": q.settings.queues[name],
                "pending": int(pending.get(name, 0)),
                "dead": int(dead.get(name, 0)),
                "processed": stats.get(name, {}).get("processed", 0),
                "failed": stats.get(name, {}).get("failed", 0),
                "retried": stats.get(name, {}).get("retried", 0),
                "paused": name in paused,
            }
            for name in names
        ],
        "workers": workers,
        "periodic": periodic,
        "totals": {
            "pending": sum(int(v) for v in pending.values()),
            "dead": sum(int(v) for v in dead.values()),
            "workers": len(workers),
            "threads": sum(int(w["threads"] or 0) for w in workers),
        },
    }


def _cut(value: Any, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: max(1, width - 1)] + "~"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]], widths: Sequence[int]) -> str:
    """Fixed-width columns (numbers right-aligned); cells over their width end in '~'."""
    numeric = [bool(rows) and isinstance(rows[0][i], (int, float)) for i in range(len(headers))]
    lines = []
    for row in [headers, *rows]:
        cells = []
        for i, (value, width) in enumerate(zip(row, widths, strict=True)):
            text = _cut(value, width)
            cells.append(text.rjust(width) if numeric[i] else text.ljust(width))
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def _moment(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone().strftime("%m-%d %H:%M:%S")
    return "-" if value is None else str(value)


def _ago(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f}s"
    if seconds < 5400:
        return f"{seconds / 60:.0f}m"
    return f"{seconds / 3600:.1f}h"


def render_status(data: dict[str, Any]) -> str:
    """The status as text tables that fit in 80 columns."""
    out = [_cut(f"taskqueue {__version__}  {data['url']}  namespace {data['namespace']}", 80), ""]
    out.append(
        table(
            ["QUEUE", "PRIO", "PENDING", "DEAD", "PROCESSED", "FAILED", "STATE"],
            [
                [
                    q["name"],
                    q["priority"],
                    q["pending"],
                    q["dead"],
                    q["processed"],
                    q["failed"],
                    "paused" if q["paused"] else "",
                ]
                for q in data["queues"]
            ],
            [20, 5, 9, 7, 10, 8, 6],
        )
    )
    workers = data["workers"]
    out += ["", f"WORKERS: {len(workers)} process(es), {data['totals']['threads']} thread(s)"]
    if workers:
        out.append(
            table(
                ["HOST", "PID", "THREADS", "BUSY", "UP", "QUEUES", "ID"],
                [
                    [
                        w["host"],
                        w["pid"],
                        w["threads"],
                        w["busy"],
                        _ago(w["uptime_s"]),
                        ",".join(w["queues"]),
                        w["id"].rsplit(":", 1)[-1],
                    ]
                    for w in workers
                ],
                [16, 7, 7, 4, 5, 18, 8],
            )
        )
    if data["periodic"]:
        out += ["", f"PERIODIC: {len(data['periodic'])}"]
        out.append(
            table(
                ["NAME", "QUEUE", "SCHEDULE", "NEXT RUN"],
                [
                    [p.get("name", ""), p.get("queue", ""), p.get("schedule", ""), _moment(p.get("next_run"))]
                    for p in data["periodic"]
                ],
                [30, 8, 22, 14],
            )
        )
    total_dead = data["totals"]["dead"]
    out += ["", f"DEAD LETTERS: {total_dead}" + ("  (taskqueue dead list)" if total_dead else "")]
    return "\n".join(out)


@cli.command()
@app_option()
@url_option
@json_option
@click.pass_context
def status(ctx: click.Context, app: str | None, url: str | None, as_json: bool) -> None:
    """Show queues (pending, dead, counters), live workers, periodic tasks and dead letters."""
    q = open_queue(ctx, app, url)
    data = gather_status(q)
    click.echo(json.dumps(data, indent=2, default=str) if as_json else render_status(data))


# -- enqueue ------------------------------------------------------------------------------
def _json_arg(value: str, option: str, kind: type, example: str) -> Any:
    try:
        parsed = json.loads(value)
    except ValueError as exc:
        raise UsageFailure(f"not valid JSON ({exc}); e.g. {option} {example!r}", param_hint=option) from None
    if not isinstance(parsed, kind):
        what = "array" if kind is list else "object"
        raise UsageFailure(f"must be a JSON {what}, e.g. {option} {example!r}", param_hint=option)
    return parsed


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
    try:
        definition = q.definition(name)
    except TaskNotFound:
        known = ", ".join(sorted(q.registry)) or "(none)"
        raise UsageFailure(f"no task named {name!r} is registered by {app}; registered: {known}") from None
    try:
        definition.prepare(Envelope(name, tuple(args), kwargs, {}))
    except TypeError as exc:
        raise UsageFailure(str(exc)) from None
    if queue_name is not None and queue_name not in q.settings.queues:
        raise UsageFailure(
            f"unknown queue {queue_name!r}; configured: {', '.join(q.settings.queues_by_priority())}",
            param_hint="--queue",
        )
    handle = q.enqueue(Signature(name, tuple(args), kwargs), queue=queue_name, delay=delay)
    record: dict[str, Any] = {"id": handle.id, "name": name, "queue": queue_name or definition.queue}
    if wait is not None:
        try:
            record["result"] = handle.result(timeout=wait)
            record["status"] = "SUCCEEDED"
        except TimeoutError:
            raise Failure(f"task {handle.id} is still {handle.status} after {wait:g} s") from None
        except TaskFailed as exc:
            raise Failure(
                f"task {handle.id} {exc.status.lower()}: {exc.error_type}: {exc.error_message}"
            ) from None
    if as_json:
        click.echo(json.dumps(record, default=repr))
    elif wait is not None:
        click.echo(f"{handle.id} {json.dumps(record['result'], default=repr)}")
    else:
        click.echo(handle.id)


# -- dead letters and purge ------------------------------------------------------------------
def _check_queue(q: TaskQueue, queue_name: str | None) -> None:
    if queue_name is not None and queue_name not in q.settings.queues:
        raise UsageFailure(
            f"unknown queue {queue_name!r}; configured: {', '.join(q.settings.queues_by_priority())}",
            param_hint="--queue",
        )


def _when(ms: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000)) if ms else "-"


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
    _check_queue(q, queue_name)
    if action == "list":
        letters = q.dead_letters(queue_name, limit=limit)
        if task_id is not None:
            letters = [d for d in letters if d.id == task_id]
            if not letters:
                raise Failure(f"task {task_id} is not in the dead-letter queue")
        if as_json:
            fields = [f for f in type(letters[0]).__slots__] if letters else []
            click.echo(
                json.dumps([{f: getattr(d, f) for f in fields} for d in letters], indent=2, default=repr)
            )
        elif task_id is not None:
            d = letters[0]
            error = d.error or {}
            click.echo(f"{d.id}  {d.name}  queue {d.queue}  attempts {d.attempts}  died {_when(d.died_ms)}")
            click.echo(f"reason: {d.reason}")
            click.echo(
                f"args: {json.dumps(d.args, default=repr)}  kwargs: {json.dumps(d.kwargs, default=repr)}"
            )
            if error.get("traceback"):
                click.echo(error["traceback"].rstrip())
        elif not letters:
            click.echo("no dead tasks")
        else:
            lines = table(
                ["ID", "NAME", "QUEUE", "TRIES", "DIED"],
                [[d.id, d.name, d.queue, d.attempts, _when(d.died_ms)[5:16]] for d in letters],
                [32, 16, 8, 5, 11],
            ).splitlines()
            click.echo(lines[0])
            for line, d in zip(lines[1:], letters, strict=True):
                click.echo(f"{line}\n  {_cut(d.reason, 78)}")
    elif action == "requeue":
        count = q.requeue_dead(task_id, queue=queue_name)
        click.echo(json.dumps({"requeued": count}) if as_json else f"requeued {count} task(s)")
    else:
        if task_id is not None:
            raise UsageFailure("purge removes whole queues' dead letters; drop --id", param_hint="--id")
        _confirm(yes, f"Delete every dead task of {queue_name or 'every queue'}?")
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
    if queue_name not in q.settings.queues:
        raise UsageFailure(
            f"unknown queue {queue_name!r}; configured: {', '.join(q.settings.queues_by_priority())}",
            param_hint="QUEUE",
        )
    _confirm(yes, f"Delete every pending task of queue {queue_name!r}?")
    count = q.purge(queue_name)
    click.echo(json.dumps({"purged": count}) if as_json else f"purged {count} task(s) from {queue_name}")


# -- demo ------------------------------------------------------------------------------------
@cli.command()
@click.option(
    "--tasks", "count", type=click.IntRange(1, 500), default=12, show_default=True, help="Tasks to send."
)
@click.option("--workers", type=click.IntRange(1, 32), default=4, show_default=True, help="Worker threads.")
def demo(count: int, workers: int) -> None:
    """A short demonstration on a private embedded server: priorities, retries, delays, dead letters."""
    from taskqueue.demo import run_demo

    run_demo(click.echo, count=count, workers=workers, render=lambda q: render_status(gather_status(q)))


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
