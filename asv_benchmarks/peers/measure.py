"""Measurements: the server, enqueue rates (one thread, many threads, batches), a
worker's drain, and the physical limits (a bare redis-py LPUSH loop, redis-benchmark)."""

from __future__ import annotations

import contextlib
import csv
import io
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import redis

APPS = Path(__file__).resolve().parent / "apps"
COUNTER = "bench:done"
POLL = 0.005  # seconds between two reads of the completion counter


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


def measure_threaded(adapter: Any, client: redis.Redis, threads: int, calls: int) -> float:
    """Enqueue rate with ``threads`` threads calling ``enqueue_one`` at once (``calls`` in
    all), as a web app under load does; the threads start together on a barrier."""
    from benchmarks.common import threaded  # the asv suite's timer (compare.py puts it on the path)

    adapter.enqueue_one()
    client.flushdb()
    return threaded(threads, max(1, calls // threads), lambda _: adapter.enqueue_one())


class RawLpush:
    """A bare redis-py LPUSH per call: one round trip, nothing atomic, nothing fenced:
    the limit of "one synchronous round trip per task" through the same client library."""

    LABEL = "redis-py LPUSH loop"

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)

    def enqueue_one(self) -> None:
        self.client.lpush("bench:raw", b"x")


__all__ = [
    "COUNTER",
    "RawLpush",
    "WorkerFailed",
    "drain",
    "measure_enqueue",
    "measure_threaded",
    "redis_benchmark",
    "server",
    "server_info",
]
