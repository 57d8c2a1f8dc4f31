"""What the end-to-end benchmarks share: a throw-away server, a queue with a
counting no-op task, and readings of the server's and this process's
resources. Nothing here is timed itself.

Set ``TASKQUEUE_BENCH_URL`` to measure against an existing server instead of
the embedded one; it must be a throw-away database (it is flushed).
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import redis

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings
from taskqueue.embedded import EmbeddedServer

#: Tasks enqueued per enqueue_many call when preloading a queue.
CHUNK = 1000


class Counter:
    """Counts task runs in this process and sets an event at a target.

    The no-op task bumps it under a lock: cheaper than any Redis command, so
    it does not disturb what is measured (round trips, CPU, RSS).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.value = 0
        self.target = -1
        self.reached = threading.Event()

    def expect(self, target: int) -> None:
        with self._lock:
            self.value = 0
            self.target = target
            self.reached.clear()

    def bump(self) -> None:
        with self._lock:
            self.value += 1
            if self.value == self.target:
                self.reached.set()


@dataclass
class Bench:
    """A server (embedded unless TASKQUEUE_BENCH_URL is set), a queue on it and a no-op task."""

    url: str
    queue: TaskQueue
    noop: Any
    counter: Counter
    server: EmbeddedServer | None = None
    _tmp: tempfile.TemporaryDirectory | None = field(default=None, repr=False)

    @property
    def client(self) -> redis.Redis:
        return self.queue.broker.client

    def preload(self, count: int) -> None:
        """Enqueue ``count`` no-op tasks in chunks (handles are dropped at once)."""
        for start in range(0, count, CHUNK):
            self.queue.enqueue_many([self.noop.s() for _ in range(min(CHUNK, count - start))])

    def drain(self, threads: int, count: int, timeout: float = 600.0) -> float:
        """Start ``threads`` workers, wait until ``count`` tasks ran and were acknowledged."""
        started = time.perf_counter()
        self.counter.expect(count)
        self.queue.start_workers(threads)
        if not self.counter.reached.wait(timeout):
            raise TimeoutError(f"only {self.counter.value} of {count} tasks ran within {timeout:g} s")
        wait_processed(self.queue, count, timeout)
        return time.perf_counter() - started

    def close(self) -> None:
        self.queue.close()
        if self.server is not None:
            self.server.stop()
        if self._tmp is not None:
            self._tmp.cleanup()


def settings(**overrides: Any) -> Settings:
    """The defaults a user gets, with optional changes (``workers={"prefetch": 4}``)."""
    return Settings().replace(**overrides) if overrides else Settings()


PREFIX = "tq-bench-"
#: Temporary server directories of this suite and of peers/compare.py.
ORPHAN_PREFIXES = (PREFIX, "tq-compare-")


def reap_orphans() -> None:
    """Stop servers left by benchmark processes that were killed (asv's timeout).

    The embedded server runs in its own session, so it outlives a killed
    benchmark. Each data directory records its owner's pid; a server whose
    owner is gone is stopped by the pid it recorded, and its directory removed.
    """
    owner_files = [f for p in ORPHAN_PREFIXES for f in Path(tempfile.gettempdir()).glob(p + "*/owner.pid")]
    for owner_file in owner_files:
        try:
            if psutil.pid_exists(int(owner_file.read_text())):
                continue
            pid = int((owner_file.parent / "server.pid").read_text())
            if psutil.pid_exists(pid) and "server" in psutil.Process(pid).name():
                os.kill(pid, signal.SIGTERM)
        except (OSError, ValueError, psutil.Error):
            continue
        shutil.rmtree(owner_file.parent, ignore_errors=True)


def open_bench(**overrides: Any) -> Bench:
    url = os.environ.get("TASKQUEUE_BENCH_URL", "")
    server = tmp = None
    if not url:
        reap_orphans()
        tmp = tempfile.TemporaryDirectory(prefix=PREFIX)
        (Path(tmp.name) / "owner.pid").write_text(str(os.getpid()))
        server = EmbeddedServer(tmp.name, persistent=False)
        server.start()
        url = server.url
    redis.Redis.from_url(url).flushdb()
    registry = TaskRegistry()
    queue = TaskQueue(url, settings=settings(**overrides), registry=registry)
    counter = Counter()

    @queue.task(name="bench.noop")
    def noop() -> None:
        counter.bump()

    return Bench(url, queue, noop, counter, server, tmp)


def wait_processed(queue: TaskQueue, count: int, timeout: float) -> None:
    """Wait until the server counted ``count`` acknowledgements (the last acks trail the runs)."""
    deadline = time.monotonic() + timeout
    while True:
        processed = queue.broker.stats(["default"])["default"].get("processed", 0)
        if processed >= count:
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"only {processed} of {count} tasks acknowledged within {timeout:g} s")
        time.sleep(0.001)


# -- server readings ----------------------------------------------------------------
#: Commands that only a client sends (scripts cannot call them): their count is
#: the number of commands the clients issued, as opposed to those run inside Lua.
CLIENT_COMMANDS = frozenset(
    {"evalsha", "eval", "evalsha_ro", "eval_ro", "fcall"}
    | {"blpop", "brpop", "blmove", "brpoplpush", "multi", "exec"}
)


@dataclass(frozen=True)
class ServerReading:
    reads: int  # read events: one per request or pipeline the server received
    client_commands: int  # commands clients sent (scripts, blocking pops, transactions)
    all_commands: int  # including the commands run inside scripts

    @classmethod
    def take(cls, client: redis.Redis) -> ServerReading:
        stats = client.info("stats")
        commands = client.info("commandstats")
        calls = {name.removeprefix("cmdstat_").lower(): int(v["calls"]) for name, v in commands.items()}
        client_calls = sum(n for name, n in calls.items() if name.split("|")[0] in CLIENT_COMMANDS)
        return cls(int(stats["total_reads_processed"]), client_calls, sum(calls.values()))

    def minus(self, before: ServerReading) -> ServerReading:
        # Taking a reading costs two INFO requests (two reads) of its own.
        return ServerReading(
            self.reads - before.reads - 2,
            self.client_commands - before.client_commands,
            self.all_commands - before.all_commands - 2,
        )


def server_pid(bench: Bench) -> int | None:
    if bench.server is not None and bench.server.process is not None:
        return bench.server.process.pid
    return None


def cpu_seconds(pid: int | None = None) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system


class PeakRss:
    """Samples a process's resident memory in a thread; ``peak`` is the highest seen."""

    def __init__(self, pid: int | None = None, interval: float = 0.02) -> None:
        self._process = psutil.Process(pid)
        self._interval = interval
        self._stop = threading.Event()
        self.peak = self._process.memory_info().rss
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak = max(self.peak, self._process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self._process.memory_info().rss)


def threaded(threads: int, calls: int, one: Callable[[int], object]) -> float:
    """Calls per second of ``one`` from ``threads`` threads started together (``calls`` each)."""
    barrier = threading.Barrier(threads + 1)

    def run(t: int) -> None:
        barrier.wait()
        for i in range(calls):
            one(t * calls + i)

    workers = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    barrier.wait()
    start = time.perf_counter()
    for w in workers:
        w.join()
    return threads * calls / (time.perf_counter() - start)


def percentile(samples: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list."""
    ordered = sorted(samples)
    rank = max(0, min(len(ordered) - 1, math.ceil(q / 100 * len(ordered)) - 1))
    return ordered[rank]
