"""Producer side against a real server: one task per call, and enqueue_many.

Each sample sends 1,000 tasks, so the figure divided by 1,000 is the cost
of one task (and 1,000 divided by it the rate).
"""

from .common import open_bench

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
