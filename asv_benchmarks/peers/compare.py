"""Side-by-side: taskqueue, RQ, Huey, Dramatiq and Celery on one server, in one run.

    pip install -e ".[bench]"
    python asv_benchmarks/peers/compare.py              # full: 20,000 tasks, 3 runs
    python asv_benchmarks/peers/compare.py --quick      # a smoke-sized run
    python asv_benchmarks/peers/compare.py --url redis://127.0.0.1:6379/15

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
import csv
import datetime as dt
import importlib
import io
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis

HERE = Path(__file__).resolve().parent
APPS = HERE / "apps"
ROOT = HERE.parents[1]

COUNTER = "bench:done"
METRICS = ("single_enqueue", "batch_enqueue", "end_to_end")
POLL = 0.005  # seconds between two reads of the completion counter


@dataclass(frozen=True)
class Contender:
    key: str
    label: str
    module: str  # adapter in apps/: enqueue_one(), enqueue_batch(n), LABEL, BATCH_API
    distribution: str  # whose version is reported
    worker: Callable[[str, int], list[str]]  # (url, threads) -> argv
    shape: Callable[[int], str]  # threads -> "1 process x 8 threads"


def _py(*args: str) -> list[str]:
    return [sys.executable, *args]


CONTENDERS = [
    Contender(
        "taskqueue", "taskqueue", "bench_taskqueue", "taskqueue",
        lambda url, t: _py("-m", "bench_taskqueue", str(t)),
        lambda t: f"1 process x {t} threads",
    ),
    Contender(
        "rq-simple", "RQ SimpleWorker", "bench_rq", "rq",
        lambda url, t: _py("-m", "rq.cli", "worker", "-u", url, "-w", "rq.worker.SimpleWorker",
                           "--quiet", "default"),
        lambda t: "1 process x 1 thread (RQ has no threads)",
    ),
    Contender(
        "rq-pool", "RQ worker-pool", "bench_rq", "rq",
        # SimpleWorker processes: RQ's default Worker forks once per task, which
        # on two cores drains a no-op queue at about a tenth of this rate.
        lambda url, t: _py("-m", "rq.cli", "worker-pool", "-u", url, "-n", str(t),
                           "-w", "rq.worker.SimpleWorker", "--quiet", "default"),
        lambda t: f"{t} processes (worker-pool -n {t} -w SimpleWorker)",
    ),
    Contender(
        "huey", "Huey", "bench_huey", "huey",
        lambda url, t: _py("-m", "huey.bin.huey_consumer", "bench_huey.huey", "-k", "thread", "-w", str(t),
                           "--quiet"),
        lambda t: f"1 process x {t} threads (-k thread -w {t})",
    ),
    Contender(
        "dramatiq", "Dramatiq", "bench_dramatiq", "dramatiq",
        lambda url, t: _py("-m", "dramatiq", "bench_dramatiq", "--processes", "1", "--threads", str(t)),
        lambda t: f"1 process x {t} threads",
    ),
    Contender(
        "celery", "Celery", "bench_celery", "celery",
        lambda url, t: _py("-m", "celery", "-A", "bench_celery", "worker", "-P", "threads", "-c", str(t),
                           "--loglevel", "WARNING"),
        lambda t: f"1 process x {t} threads (-P threads -c {t})",
    ),
]  # fmt: skip
BY_KEY = {c.key: c for c in CONTENDERS}


# -- the server ------------------------------------------------------------------------
@contextlib.contextmanager
def server(url: str | None):
    """Yield a URL: the one given, or a throw-away embedded server's."""
    if url:
        yield url
        return
    from benchmarks.common import reap_orphans

    from taskqueue.embedded import EmbeddedServer

    reap_orphans()  # servers of earlier runs that were killed
    with tempfile.TemporaryDirectory(prefix="tq-compare-") as tmp:
        (Path(tmp) / "owner.pid").write_text(str(os.getpid()))
        srv = EmbeddedServer(tmp, persistent=False)
        srv.start()
        try:
            yield srv.url
        finally:
            srv.stop()


def server_info(client: redis.Redis) -> dict[str, Any]:
    info = client.info("server")
    name = info.get("server_name", "redis")
    version = info.get(f"{name}_version") or info.get("redis_version")
    return {"name": name, "version": version, "redis_version": info.get("redis_version")}


# -- measurements ----------------------------------------------------------------------
def measure_enqueue(
    adapter: Any, client: redis.Redis, single: int, tasks: int, batch: int
) -> tuple[float, float]:
    """Single enqueue rate, then batch enqueue rate (which leaves ``tasks`` tasks queued)."""
    adapter.enqueue_one()  # connect (and load scripts) before timing
    client.flushdb()
    enqueue_one = adapter.enqueue_one
    start = time.perf_counter()
    for _ in range(single):
        enqueue_one()
    single_rate = single / (time.perf_counter() - start)
    client.flushdb()
    start = time.perf_counter()
    for done in range(0, tasks, batch):
        adapter.enqueue_batch(min(batch, tasks - done))
    batch_rate = tasks / (time.perf_counter() - start)
    return single_rate, batch_rate


class WorkerFailed(RuntimeError):
    pass


def drain(
    argv: list[str],
    env: dict[str, str],
    client: redis.Redis,
    tasks: int,
    log: Path,
    stall: float,
    timeout: float,
) -> tuple[float, bool]:
    """Run a worker until the counter reaches ``tasks``; return (tasks/s, whole_run).

    The rate is taken from the first completion seen to the last; when the
    run is too short for that to mean anything (less than 10% of the tasks
    after the first reading), it falls back to counting from the spawn and
    says so (whole_run True).
    """
    with open(log, "wb") as out:
        spawned = time.perf_counter()
        proc = subprocess.Popen(
            argv,
            env=env,
            cwd=APPS,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            first: tuple[float, int] | None = None
            last_change, last_value = spawned, 0
            while True:
                now = time.perf_counter()
                value = int(client.get(COUNTER) or 0)
                if value >= tasks:
                    break
                if value and first is None:
                    first = (now, value)
                if value != last_value:
                    last_change, last_value = now, value
                if proc.poll() is not None:
                    raise WorkerFailed(f"the worker exited with code {proc.returncode} at {value}/{tasks}")
                if now - last_change > stall:
                    raise WorkerFailed(f"no progress for {stall:g} s at {value}/{tasks}")
                if now - spawned > timeout:
                    raise WorkerFailed(f"not done within {timeout:g} s ({value}/{tasks})")
                time.sleep(POLL)
        finally:
            stop_worker(proc)
    if first is None or tasks - first[1] < tasks / 10:
        return tasks / (now - spawned), True
    return (tasks - first[1]) / (now - first[0]), False


def stop_worker(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the worker's process group (RQ's pool has children), SIGKILL it if it lingers."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)


def redis_benchmark(url: str, pipeline: int, requests: int) -> dict[str, float] | None:
    """LPUSH and RPOP ops/s from redis-benchmark with one client; None when absent or unusable."""
    binary = shutil.which("redis-benchmark")
    if binary is None:
        return None
    parts = urlsplit(url)
    if parts.scheme == "unix":
        target = ["-s", parts.path]
    elif parts.scheme == "redis":
        target = ["-h", parts.hostname or "127.0.0.1", "-p", str(parts.port or 6379)]
        if parts.password:
            target += ["-a", unquote(parts.password)]
        if parts.username:
            target += ["--user", unquote(parts.username)]
        db = parts.path.strip("/")
        if db:
            target += ["--dbnum", db]
    else:
        return None
    argv = [binary, *target, "-c", "1", "-n", str(requests), "-P", str(pipeline), "-t", "lpush,rpop", "--csv"]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=300, check=False)
    rates = {}
    for row in csv.reader(io.StringIO(proc.stdout)):
        if len(row) >= 2 and row[0] in ("LPUSH", "RPOP"):
            rates[row[0]] = float(row[1])
    return rates or None


# -- report ----------------------------------------------------------------------------
def summarize(samples: list[float]) -> dict[str, float] | None:
    if not samples:
        return None
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def versions(keys: list[str]) -> dict[str, str]:
    import taskqueue

    out = {"taskqueue": taskqueue.__version__, "python": platform.python_version()}
    dists = {BY_KEY[k].distribution for k in keys} - {"taskqueue"} | {"redis", "hiredis"}
    if "celery" in keys:
        dists.add("kombu")
    for dist in sorted(dists):
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[dist] = metadata.version(dist)
    return out


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    return {"platform": platform.platform(), "cpu": cpu, "cores": os.cpu_count()}


def fmt(value: float) -> str:
    return f"{value:,.0f}"


def cell(summary: dict[str, float] | None, base: dict[str, float] | None) -> str:
    if summary is None:
        return "—"
    text = f"{fmt(summary['median'])} ({fmt(summary['min'])}-{fmt(summary['max'])})"
    if base:
        text += f" {summary['median'] / base['median']:.2f}x"
    return text


def table(report: dict[str, Any]) -> str:
    rows = report["results"]
    base = rows.get("taskqueue", {})
    lines = [
        "| tasks/s: median (min-max) ratio to taskqueue | worker "
        "| single enqueue | batch enqueue | end-to-end |",
        "|---|---|---|---|---|",
    ]
    for row in rows.values():
        if row.get("error") and not any(row.get(m) for m in METRICS):
            lines.append(f"| {row['label']} | — | {row['error']} | | |")
            continue
        single, batch, e2e = (cell(row.get(m), base.get(m)) for m in METRICS)
        lines.append(
            f"| {row['label']} | {row['worker']} | {single} | {batch} ({row['batch_api']}) | {e2e} |"
        )
    limit = report.get("redis_benchmark")
    if isinstance(limit, dict):
        for pipeline, rates in limit.items():
            if rates:
                text = ", ".join(f"{op} {fmt(r['median'])} ops/s" for op, r in rates.items())
                lines.append(f"| redis-benchmark 1 client -P {pipeline} | — | {text} | | |")
    else:
        lines.append(f"| redis-benchmark | — | {limit} | | |")
    return "\n".join(lines)


def targets(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue-9 ratios that this comparison can measure."""
    rows = report["results"]
    tq = rows.get("taskqueue", {})
    out = []

    def best_peer(metric: str) -> tuple[str, float] | None:
        peers = [
            (r["label"], r[metric]["median"]) for k, r in rows.items() if k != "taskqueue" and r.get(metric)
        ]
        return max(peers, key=lambda p: p[1]) if peers else None

    for metric, need, what in (
        ("end_to_end", 3.0, "end-to-end >= 3x the best peer"),
        ("single_enqueue", 1.5, "single enqueue >= 1.5x the best peer"),
    ):
        best = best_peer(metric)
        if tq.get(metric) and best:
            ratio = tq[metric]["median"] / best[1]
            out.append({"target": what, "against": best[0], "ratio": ratio, "met": ratio >= need})
    rq = rows.get("rq-simple", {}).get("batch_enqueue") or rows.get("rq-pool", {}).get("batch_enqueue")
    if tq.get("batch_enqueue") and rq:
        ratio = tq["batch_enqueue"]["median"] / rq["median"]
        out.append(
            {
                "target": "enqueue_many >= 10x RQ enqueue_many",
                "against": "RQ",
                "ratio": ratio,
                "met": ratio >= 10,
            }
        )
    return out


# -- main ------------------------------------------------------------------------------
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="an existing throw-away server (it is flushed); default: embedded")
    p.add_argument("--runs", type=int, help="runs per library (default 3; --quick: 1)")
    p.add_argument("--tasks", type=int, help="tasks per batch enqueue and drain (20000; --quick: 2000)")
    p.add_argument("--enqueue", type=int, help="single enqueues timed (default 5000; --quick: 1000)")
    p.add_argument("--batch", type=int, default=1000, help="tasks per batch call (default 1000)")
    p.add_argument("--threads", type=int, default=8, help="worker threads (default 8)")
    p.add_argument("--only", help="comma-separated subset of: " + ", ".join(BY_KEY))
    p.add_argument("--quick", action="store_true", help="1 run, 2,000 tasks: checks that it all works")
    p.add_argument("--no-redis-benchmark", action="store_true", help="skip the redis-benchmark limit")
    p.add_argument("--stall", type=float, default=60.0, help="give up a drain after this long idle")
    p.add_argument("--timeout", type=float, default=900.0, help="give up a drain after this long")
    p.add_argument("--json", default="compare-results.json", help="where to write the results")
    args = p.parse_args(argv)
    args.runs = args.runs or (1 if args.quick else 3)
    args.tasks = args.tasks or (2000 if args.quick else 20_000)
    args.enqueue = args.enqueue or (1000 if args.quick else 5000)
    for name in ("runs", "tasks", "enqueue", "batch", "threads"):
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
    for path in (str(ROOT), str(ROOT / "asv_benchmarks"), str(APPS)):
        if path not in sys.path:
            sys.path.insert(0, path)
    say = lambda *a: print(*a, file=sys.stderr, flush=True)  # noqa: E731
    report: dict[str, Any] = {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": {k: getattr(args, k) for k in ("runs", "tasks", "enqueue", "batch", "threads")},
    }
    with server(args.url) as url, tempfile.TemporaryDirectory(prefix="tq-compare-logs-") as logs:
        client = redis.Redis.from_url(url)
        report["server"] = server_info(client)
        report["server"]["embedded"] = not args.url
        env = dict(os.environ, BENCH_REDIS_URL=url, BENCH_COUNTER=COUNTER)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(APPS), str(ROOT), env.get("PYTHONPATH")) if p)
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
        for run in range(1, args.runs + 1):
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
                    single, batch = measure_enqueue(adapter, client, args.enqueue, args.tasks, args.batch)
                    samples[key]["single_enqueue"].append(single)
                    samples[key]["batch_enqueue"].append(batch)
                    argv = c.worker(url, args.threads)
                    rate, whole = drain(argv, env, client, args.tasks, log, args.stall, args.timeout)
                    samples[key]["end_to_end"].append(rate)
                    rows[key]["whole_run"] |= whole
                    say(f"  single {fmt(single)}/s  batch {fmt(batch)}/s  end-to-end {fmt(rate)}/s")
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


def render(report: dict[str, Any]) -> str:
    cfg, srv = report["config"], report["server"]
    versions_line = ", ".join(f"{k} {v}" for k, v in report["versions"].items())
    lines = [
        f"{report['date']} · {report['machine']['cpu']}, {report['machine']['cores']} cores · "
        f"{srv['name']} {srv['version']} ({'embedded, unix socket' if srv['embedded'] else 'given URL'})",
        versions_line,
        f"medians of {cfg['runs']} runs · {cfg['enqueue']:,} single enqueues · {cfg['tasks']:,} tasks "
        f"per batch enqueue and end-to-end drain (batches of {cfg['batch']:,}) · no-op task + one INCR",
        "",
        report["table"],
    ]
    whole = [r["label"] for r in report["results"].values() if r.get("whole_run")]
    if whole:
        lines.append(f"\n(end-to-end of {', '.join(whole)} counted from the worker's spawn: too short a run)")
    if report["targets"]:
        lines.append("")
        for t in report["targets"]:
            verdict = "met" if t["met"] else "MISSED"
            lines.append(f"target {t['target']}: {t['ratio']:.2f}x vs {t['against']} -> {verdict}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
