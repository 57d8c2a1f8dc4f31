"""Many producer threads calling ``delay()`` at once, as a Flask app under load does:

    PYTHONPATH=. python asv_benchmarks/producers.py [--threads 8] [--calls 2000] [--rounds 3]

Prints tasks/s of ``delay()`` from THREADS threads of one process (median of the rounds),
next to a bare redis-py LPUSH loop from as many threads (one round trip per call, no
atomicity, no fencing: the limit of "one round trip each"), on a throw-away embedded server.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import redis
from benchmarks.common import threaded

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings
from taskqueue.embedded import EmbeddedServer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--calls", type=int, default=2000, help="per thread")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp))
        server.start()
        try:
            q = TaskQueue(server.url, settings=Settings(), registry=TaskRegistry())

            @q.task(name="bench.noop")
            def noop(n: int) -> int:
                return n

            raw = redis.Redis.from_url(server.url)
            rates: dict[str, list[float]] = {"delay()": [], "redis-py LPUSH": []}
            for _ in range(args.rounds):
                raw.flushdb()
                rates["delay()"].append(threaded(args.threads, args.calls, noop.delay))
                raw.flushdb()
                rates["redis-py LPUSH"].append(
                    threaded(args.threads, args.calls, lambda n: raw.lpush("bench", n))
                )
            q.close()
            raw.close()
        finally:
            server.stop()
    for name, values in rates.items():
        rounds = [round(v) for v in values]
        print(f"{name:16} {args.threads} threads: {statistics.median(values):9,.0f}/s  rounds {rounds}")
    ratio = statistics.median(rates["delay()"]) / statistics.median(rates["redis-py LPUSH"])
    print(f"delay() / LPUSH: {ratio:.2f}")


if __name__ == "__main__":
    main()
