"""Side-by-side: taskqueue, RQ, Huey, Dramatiq and Celery on one server, in one run.

    pip install -e ".[bench]"
    python asv_benchmarks/peers/compare.py              # full: 20,000 tasks, 3 runs
    python asv_benchmarks/peers/compare.py --quick      # a smoke-sized run
    python asv_benchmarks/peers/compare.py --url redis://127.0.0.1:6379/15
    python asv_benchmarks/peers/compare.py --checkout ../before --only taskqueue  # an older commit

For every library, in every run (libraries interleaved, so slow drifts of
the machine hit all of them alike):

* single enqueue: ``--enqueue`` tasks, one call each, from one thread;
* batch enqueue: ``--tasks`` tasks with the library's batch API (taskqueue
  and RQ ``enqueue_many``, Celery one Producer) or a loop where it has none,
  ``--batch`` tasks per call;
* end-to-end: those ``--tasks`` tasks are then run by one worker process
  (``--threads`` threads; RQ has no threads: SimpleWorker runs one task at a
  time, its worker-pool runs processes). Every task does one INCR on the
  same counter key and the driver polls that counter, so completion is
  detected the same way for everyone. The rate is counted from the first
  completion to the last, so a library's start-up time does not count.

Workers are real subprocesses started as each library documents. The
server is a throw-away embedded server (no persistence) unless ``--url``
names one; its database is flushed between measurements. ``redis-benchmark``
LPUSH/RPOP, when the binary is on PATH, gives the physical limit.

Prints a table of medians with min-max and each figure's ratio to taskqueue,
the issue-9 targets, and writes everything as JSON.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib
import json
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import redis

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
ROOT = HERE.parents[1]
sys.path.insert(0, str(HERE))

from contenders import BY_KEY  # noqa: E402
from measure import (  # noqa: E402
    COUNTER,
    RawLpush,
    WorkerFailed,
    drain,
    measure_enqueue,
    measure_threaded,
    redis_benchmark,
    server,
    server_info,
)
from report import METRICS, fmt, machine, render, summarize, table, targets, versions  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="an existing throw-away server (it is flushed); default: embedded")
    p.add_argument("--runs", type=int, help="runs per library (default 3; --quick: 1)")
    p.add_argument("--tasks", type=int, help="tasks per batch enqueue and drain (20000; --quick: 2000)")
    p.add_argument("--enqueue", type=int, help="single enqueues timed (default 5000; --quick: 1000)")
    p.add_argument("--batch", type=int, default=1000, help="tasks per batch call (default 1000)")
    p.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    p.add_argument("--producers", type=int, default=8, help="threads enqueueing at once (default 8)")
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(BY_KEY))
    p.add_argument("--quick", action="store_true", help="1 run, 2,000 tasks: checks that it all works")
    p.add_argument("--no-redis-benchmark", action="store_true", help="skip the redis-benchmark limit")
    p.add_argument("--stall", type=float, default=60.0, help="give up a drain after this long idle")
    p.add_argument("--timeout", type=float, default=900.0, help="give up a drain after this long")
    p.add_argument("--json", default="compare-results.json", help="where to write the results")
    p.add_argument(
        "--checkout",
        type=Path,
        default=ROOT,
        help="the taskqueue checkout measured (default: this one); a before/after table is one "
        "run per checkout, e.g. a `git worktree` of the older commit with --only taskqueue",
    )
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.tasks = args.tasks or (2000 if args.quick else 20_000)
    args.enqueue = args.enqueue or (1000 if args.quick else 5000)
    for name in ("runs", "tasks", "enqueue", "batch", "threads", "producers"):
        if getattr(args, name) < 1:
            p.error(f"--{name} must be >= 1")
    args.only = [k.strip() for k in args.only.split(",")] if args.only else list(BY_KEY)
    unknown = [k for k in args.only if k not in BY_KEY]
    if unknown:
        p.error(f"unknown --only {', '.join(unknown)}; choose from {', '.join(BY_KEY)}")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The adapters (apps/) and the taskqueue of this checkout, whatever is installed.
    checkout = args.checkout.resolve()
    if not (checkout / "taskqueue" / "__init__.py").is_file():
        print(f"--checkout {checkout}: no taskqueue package there", file=sys.stderr)
        return 2
    for path in (str(checkout), str(ROOT / "asv_benchmarks"), str(APPS)):
        if path not in sys.path:
            sys.path.insert(0, path)
    # Imported now, before the asv package (imported by measure.server) puts this
    # checkout first on sys.path: the adapter must measure --checkout's code.
    import taskqueue

    if Path(taskqueue.__file__).resolve().parents[1] != checkout:
        print(f"--checkout {checkout}: taskqueue was imported from {taskqueue.__file__}", file=sys.stderr)
        return 2
    say = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {
            k: getattr(args, k) for k in ("runs", "tasks", "enqueue", "batch", "threads", "producers")
        },
    }
    with server(args.url) as url, tempfile.TemporaryDirectory(prefix="tq-compare-logs-") as logs:
        client = redis.Redis.from_url(url)
        report["server"] = server_info(client)
        report["server"]["embedded"] = not args.url
        env = dict(os.environ, BENCH_REDIS_URL=url, BENCH_COUNTER=COUNTER)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(APPS), str(checkout), env.get("PYTHONPATH")) if p)
        os.environ["BENCH_REDIS_URL"] = url  # for the adapters imported here
        os.environ["BENCH_COUNTER"] = COUNTER

        adapters: dict[str, Any] = {}
        rows: dict[str, dict[str, Any]] = {}
        samples: dict[str, dict[str, list[float]]] = {}
        for key in args.only:
            c = BY_KEY[key]
            rows[key] = {
                "label": c.label,
                "worker": c.shape(args.threads),
                "batch_api": "",
                "whole_run": False,
            }
            samples[key] = {m: [] for m in METRICS}
            try:
                adapters[key] = importlib.import_module(c.module)
                rows[key]["batch_api"] = adapters[key].BATCH_API
            except ImportError as exc:
                rows[key]["error"] = f"not installed ({exc.name}): pip install -e '.[bench]'"
                say(f"skipping {c.label}: {rows[key]['error']}")

        limit_samples: dict[int, dict[str, list[float]]] = {1: {}, 50: {}}
        raw = RawLpush(url)
        raw_samples: dict[str, list[float]] = {"single": [], "threaded": []}
        for run in range(1, args.runs + 1):
            client.flushdb()
            raw_samples["single"].append(measure_enqueue(raw, client, args.enqueue, 0, args.batch)[0])
            raw_samples["threaded"].append(measure_threaded(raw, client, args.producers, args.enqueue))
            if not args.no_redis_benchmark and shutil.which("redis-benchmark"):
                scale = 1 if args.quick else 10
                for pipeline, n in ((1, 20_000 * scale), (50, 200_000 * scale)):
                    client.flushdb()
                    for op, rate in (redis_benchmark(url, pipeline, n) or {}).items():
                        limit_samples[pipeline].setdefault(op, []).append(rate)
            for key, adapter in adapters.items():
                c = BY_KEY[key]
                say(f"run {run}/{args.runs}: {c.label} ...")
                log = Path(logs) / f"{key}-{run}.log"
                try:
                    client.flushdb()
                    threaded = measure_threaded(adapter, client, args.producers, args.enqueue)
                    samples[key]["threaded_enqueue"].append(threaded)
                    client.flushdb()
                    single, batch = measure_enqueue(adapter, client, args.enqueue, args.tasks, args.batch)
                    samples[key]["single_enqueue"].append(single)
                    samples[key]["batch_enqueue"].append(batch)
                    argv = c.worker(url, args.threads)
                    rate, whole = drain(argv, env, client, args.tasks, log, args.stall, args.timeout)
                    samples[key]["end_to_end"].append(rate)
                    rows[key]["whole_run"] |= whole
                    say(
                        f"  single {fmt(single)}/s  {args.producers} threads {fmt(threaded)}/s  "
                        f"batch {fmt(batch)}/s  end-to-end {fmt(rate)}/s"
                    )
                except (WorkerFailed, redis.RedisError, OSError) as exc:
                    tail = ""
                    if isinstance(exc, WorkerFailed) and log.exists():
                        tail = "\n    " + "\n    ".join(log.read_text(errors="replace").splitlines()[-15:])
                    rows[key]["error"] = str(exc)
                    say(f"  {c.label} failed: {exc}{tail}")
                finally:
                    client.flushdb()

        for key, row in rows.items():
            for metric in METRICS:
                row[metric] = summarize(samples[key][metric])
            row["samples"] = samples[key]
        report["results"] = rows
        report["raw_lpush"] = {k: summarize(v) for k, v in raw_samples.items()}
        if args.no_redis_benchmark:
            report["redis_benchmark"] = "skipped (--no-redis-benchmark)"
        elif not shutil.which("redis-benchmark"):
            report["redis_benchmark"] = (
                "redis-benchmark not on PATH (it ships with Redis, e.g. the redis-tools package): "
                "no limit measured"
            )
        else:
            report["redis_benchmark"] = {
                p: {op: summarize(v) for op, v in ops.items()} for p, ops in limit_samples.items()
            }
        report["versions"] = versions(args.only)
        report["versions"]["taskqueue"] += commit_of(checkout)
        report["targets"] = targets(report)
        report["table"] = table(report)

    with contextlib.suppress(Exception):
        for adapter in adapters.values():
            close = getattr(getattr(adapter, "queue", None), "close", None)
            if callable(close) and adapter.__name__ == "bench_taskqueue":
                close()
    Path(args.json).write_text(json.dumps(report, indent=2, default=str))
    print(render(report))
    say(f"results written to {args.json}")
    return 0 if "error" not in rows.get("taskqueue", {}) else 1


def commit_of(checkout: Path) -> str:
    """`` (commit abc1234)`` of a git checkout, or nothing."""
    import subprocess

    proc = subprocess.run(
        ["git", "-C", str(checkout), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    return f" (commit {proc.stdout.strip()})" if proc.returncode == 0 and proc.stdout.strip() else ""


if __name__ == "__main__":
    sys.exit(main())
