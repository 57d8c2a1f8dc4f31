"""The Core figures, on a throw-away embedded server, in one run:

    python asv_benchmarks/core_figures.py [--tasks 20000] [--threads 8]

Prints Redis round trips per task (from INFO commandstats), the idle CPU of
an 8-thread pool over 10 s, the enqueue->start latency (median and p99 of
1,000, server clock) and the drain throughput of N no-op tasks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import threading
import time

import psutil
import redis

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings
from taskqueue.embedded import EmbeddedServer


class RoundTrips:
    """Counts client round trips: every command or pipeline is one send on a connection."""

    def __init__(self) -> None:
        self.count = 0
        self._lock = threading.Lock()
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(conn, command, check_health=True):  # type: ignore[no-untyped-def]
            with self._lock:
                self.count += 1
            return original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted


def commandstats(client: redis.Redis) -> dict[str, int]:
    return {name: int(v["calls"]) for name, v in client.info("commandstats").items()}


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", type=int, default=20_000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--idle-seconds", type=float, default=10.0)
    parser.add_argument("--latency-samples", type=int, default=1000)
    opts = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(tmp)
        server.start()
        try:
            run(server, opts)
        finally:
            server.stop()


def run(server: EmbeddedServer, opts: argparse.Namespace) -> None:
    admin = redis.Redis(unix_socket_path=server.socket_path)
    q = TaskQueue(server.url, settings=Settings(), registry=TaskRegistry())

    @q.task
    def noop() -> None:
        return None

    done = threading.Event()
    count = {"n": 0}
    lock = threading.Lock()

    @q.task
    def counted() -> None:
        with lock:
            count["n"] += 1
            if count["n"] == opts.tasks:
                done.set()

    figures: dict[str, object] = {}
    trips = RoundTrips()
    q.start_workers(opts.threads)
    noop.delay().result(timeout=10)  # warm up: scripts loaded, threads idle

    # Idle CPU of the pool (the whole process: it does nothing else).
    proc = psutil.Process()
    cpu0, wall0 = proc.cpu_times(), time.monotonic()
    time.sleep(opts.idle_seconds)
    cpu1, wall = proc.cpu_times(), time.monotonic() - wall0
    used = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
    figures["idle_cpu_percent"] = round(100 * used / wall, 3)

    # Enqueue -> start latency, one task at a time into an idle pool.
    latencies = []
    for _ in range(opts.latency_samples):
        handle = noop.delay()
        handle.result(timeout=10)
        record = handle.record()
        latencies.append(record.started_ms - record.enqueued_ms)
    latencies.sort()
    figures["latency_ms_median"] = statistics.median(latencies)
    figures["latency_ms_p99"] = latencies[int(0.99 * (len(latencies) - 1))]

    # Throughput and round trips: enqueue everything in batches, then drain.
    q.stop_workers()
    before = commandstats(admin)
    trips.count = 0
    single = [noop.delay() for _ in range(100)]
    figures["round_trips_per_single_enqueue"] = trips.count / len(single)
    q.purge("default")
    before = commandstats(admin)
    trips.count = 0
    for start in range(0, opts.tasks, 1000):
        q.enqueue_many([counted.s() for _ in range(min(1000, opts.tasks - start))])
    enqueue_trips = trips.count - 1  # minus the INFO call
    enqueue_stats = delta(before, commandstats(admin))
    before = commandstats(admin)
    trips.count = 0
    t0 = time.perf_counter()
    q.start_workers(opts.threads)
    done.wait(600)
    elapsed = time.perf_counter() - t0
    drain_trips = trips.count
    drain_stats = delta(before, commandstats(admin))
    figures["round_trips_per_task_enqueue_many"] = round(enqueue_trips / opts.tasks, 4)
    figures["round_trips_per_task_worker"] = round(drain_trips / opts.tasks, 4)
    q.stop_workers()
    figures["drain_tasks_per_s"] = round(opts.tasks / elapsed)
    figures["threads"] = opts.threads
    figures["tasks"] = opts.tasks
    ignore = {"cmdstat_info", "cmdstat_ping"}
    figures["server_commands_per_task_enqueue"] = round(
        sum(v for k, v in enqueue_stats.items() if k not in ignore) / opts.tasks, 3
    )
    figures["server_commands_per_task_drain"] = round(
        sum(v for k, v in drain_stats.items() if k not in ignore) / opts.tasks, 3
    )
    figures["drain_commands"] = {
        k.removeprefix("cmdstat_"): v for k, v in drain_stats.items() if k not in ignore
    }
    figures["enqueue_commands"] = {
        k.removeprefix("cmdstat_"): v for k, v in enqueue_stats.items() if k not in ignore
    }
    q.close()
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
