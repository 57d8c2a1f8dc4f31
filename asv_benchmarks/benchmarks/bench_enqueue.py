"""Producer side against a real server: one task per call, and enqueue_many.

Each sample sends 1,000 tasks, so the figure divided by 1,000 is the cost
of one task (and 1,000 divided by it the rate).
"""

import redis

from .common import open_bench, threaded

BATCH = 1000


class Enqueue:
    number = 1
    repeat = (3, 10, 20.0)
    min_run_count = 1
    warmup_time = 0
    rounds = 1
    timeout = 120

    def setup(self):
        self.bench = open_bench()
        self.bench.noop.delay()  # connect and load the scripts before timing

    def teardown(self):
        self.bench.close()

    def time_enqueue_1000_single(self):
        delay = self.bench.noop.delay
        for _ in range(BATCH):
            delay()

    def time_enqueue_many_1000(self):
        noop = self.bench.noop
        self.bench.queue.enqueue_many([noop.s() for _ in range(BATCH)])


class ProducerThreads:
    """8 threads calling ``delay()`` at once (a web app under load), next to 8 threads of
    a bare redis-py LPUSH, one round trip each and nothing atomic: tasks/s and their ratio
    (DESIGN 14: group commit lets concurrent calls share round trips)."""

    unit = "tasks/s"
    timeout = 120
    threads = 8
    calls = 500  # per thread

    def setup_cache(self):
        bench = open_bench()
        raw = redis.Redis.from_url(bench.url)
        try:
            bench.noop.delay()
            delay = threaded(self.threads, self.calls, lambda _: bench.noop.delay())
            lpush = threaded(self.threads, self.calls, lambda n: raw.lpush("bench:raw", n))
            return {"delay": delay, "lpush": lpush}
        finally:
            raw.close()
            bench.close()

    def track_delay_8_threads(self, r):
        return r["delay"]

    def track_lpush_8_threads(self, r):
        return r["lpush"]

    def track_delay_to_lpush_ratio_8_threads(self, r):
        return r["delay"] / r["lpush"]

    track_delay_to_lpush_ratio_8_threads.unit = "ratio"
