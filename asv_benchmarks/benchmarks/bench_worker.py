"""Worker side against a real server: drain throughput, enqueue->start
latency, idle cost, memory during a long drain, and Redis round trips.

Every figure is measured with the default settings a user gets.
"""

import gc
import threading
import time

from .common import PeakRss, ServerReading, cpu_seconds, open_bench, percentile, server_pid

DRAIN = 20_000


class Drain:
    """Seconds to run 20,000 preloaded no-op tasks (20,000 / time = tasks/s)."""

    params = [1, 4, 8]
    param_names = ["threads"]
    number = 1
    repeat = (1, 3, 90.0)
    min_run_count = 1
    warmup_time = 0
    rounds = 1
    timeout = 300

    def setup(self, threads):
        self.bench = open_bench()
        self.bench.preload(DRAIN)

    def teardown(self, threads):
        self.bench.close()

    def time_drain_20000(self, threads):
        self.bench.drain(threads, DRAIN)


class DrainRate:
    """The same drain as tasks per second, for reading at a glance (8 threads)."""

    unit = "tasks/s"
    timeout = 300

    def track_drain_rate_8_threads(self):
        bench = open_bench()
        try:
            bench.preload(DRAIN)
            return DRAIN / bench.drain(8, DRAIN)
        finally:
            bench.close()


class Latency:
    """Enqueue->start on an idle pool of 8 threads: from before the enqueue call
    until the task body starts, in milliseconds (same process, same clock)."""

    unit = "ms"
    timeout = 120
    samples = 300

    def setup_cache(self):
        bench = open_bench()
        started = threading.Event()
        stamp = []

        @bench.queue.task(name="bench.stamp")
        def stamp_task():
            stamp.append(time.perf_counter())
            started.set()

        try:
            bench.queue.start_workers(8)
            stamp_task.delay()  # the first run loads code paths; not a sample
            started.wait(10)
            latencies = []
            for _ in range(self.samples):
                time.sleep(0.003)  # let the thread that ran the last task go back to waiting
                started.clear()
                stamp.clear()
                sent = time.perf_counter()
                stamp_task.delay()
                if not started.wait(10):
                    raise TimeoutError("a task did not start within 10 s")
                latencies.append((stamp[0] - sent) * 1000)
            return latencies
        finally:
            bench.close()

    def track_latency_p50_ms(self, latencies):
        return percentile(latencies, 50)

    def track_latency_p99_ms(self, latencies):
        return percentile(latencies, 99)


class IdlePool:
    """CPU used by an idle pool of 8 threads over a few seconds, in % of one core."""

    unit = "%"
    timeout = 60
    seconds = 5.0

    def setup_cache(self):
        bench = open_bench()
        try:
            bench.queue.start_workers(8)
            time.sleep(1.0)  # the pool's start-up (registration, script loading) is not idling
            pid = server_pid(bench)
            own, server = cpu_seconds(), cpu_seconds(pid) if pid else None
            time.sleep(self.seconds)
            return {
                "pool": 100 * (cpu_seconds() - own) / self.seconds,
                "server": 100 * (cpu_seconds(pid) - server) / self.seconds if pid else float("nan"),
            }
        finally:
            bench.close()

    def track_idle_pool_cpu_percent(self, cpu):
        return cpu["pool"]

    def track_idle_server_cpu_percent(self, cpu):
        return cpu["server"]


class Memory:
    """Resident memory of the worker process while it drains 100,000 tasks."""

    unit = "MB"
    timeout = 600
    tasks = 100_000

    def setup_cache(self):
        bench = open_bench()
        try:
            bench.preload(self.tasks)
            gc.collect()
            with PeakRss() as rss:
                before = rss.peak
                bench.drain(8, self.tasks)
            return {"peak": rss.peak / 2**20, "growth": (rss.peak - before) / 2**20}
        finally:
            bench.close()

    def track_peak_rss_mb(self, rss):
        return rss["peak"]

    def track_rss_growth_mb(self, rss):
        return rss["growth"]


class RoundTrips:
    """Redis requests per task for enqueue_many + an 8-thread drain, from the
    server's counters (INFO stats read events, INFO commandstats)."""

    unit = "per task"
    timeout = 120
    tasks = 5000

    def setup_cache(self):
        bench = open_bench()
        try:
            bench.noop.delay()
            bench.queue.purge("default")
            start = ServerReading.take(bench.client)
            bench.preload(self.tasks)
            enqueued = ServerReading.take(bench.client)
            bench.drain(8, self.tasks)
            drained = ServerReading.take(bench.client)
            produce, work = enqueued.minus(start), drained.minus(enqueued)
            n = self.tasks
            return {
                "round_trips": (produce.reads + work.reads) / n,
                "worker_round_trips": work.reads / n,
                "client_commands": (produce.client_commands + work.client_commands) / n,
                "all_commands": (produce.all_commands + work.all_commands) / n,
            }
        finally:
            bench.close()

    def track_round_trips_per_task(self, r):
        return r["round_trips"]

    def track_worker_round_trips_per_task(self, r):
        return r["worker_round_trips"]

    def track_client_commands_per_task(self, r):
        return r["client_commands"]

    def track_server_commands_per_task(self, r):
        return r["all_commands"]
