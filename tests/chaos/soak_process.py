"""One process that enqueues and runs many no-op tasks, for the soak scenario.

    python tests/chaos/soak_process.py URL COUNT THREADS

Prints one JSON line: throughput, RSS after warm-up and at the end (with
samples in between), and the server's key count before and after (each
measured once every result of the phase has expired).
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import psutil

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings

RESULT_TTL = 2.0
BATCH = 1000


def main() -> None:
    url, count, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    settings = Settings().replace(
        workers={"heartbeat_interval": 1.0, "idle_poll_seconds": 0.5},
        tasks={"result_ttl": RESULT_TTL},
    )
    q = TaskQueue(url, settings=settings, registry=TaskRegistry())

    @q.task(name="soak.noop")
    def noop() -> None:
        return None

    process = psutil.Process()
    client = q.broker.client
    pattern = q.broker.keys.task_prefix + "*"

    def run(n: int, samples: list[int] | None = None) -> None:
        done = 0
        while done < n:
            size = min(BATCH, n - done)
            handles = q.enqueue_many([noop.s() for _ in range(size)])
            for h in handles:
                h.result(timeout=120)
            done += size
            if samples is not None and (done // BATCH) % max(1, n // BATCH // 10) == 0:
                samples.append(process.memory_info().rss)

    def settled_keys() -> list[str]:
        """The key names once every task of the phase has expired (results live RESULT_TTL)."""
        deadline = time.monotonic() + RESULT_TTL + 60
        while next(client.scan_iter(match=pattern, count=1000), None) is not None:
            assert time.monotonic() < deadline, "task keys never expired"
            time.sleep(0.2)  # waiting on Redis's own expiry clock: nothing to block on
        return sorted(k.decode() for k in client.scan_iter(count=1000))

    q.start_workers(threads)
    warmup = max(2000, count // 5)
    run(warmup)
    keys_before = settled_keys()
    gc.collect()
    rss_before = process.memory_info().rss
    samples: list[int] = []
    started = time.monotonic()
    run(count, samples)
    elapsed = time.monotonic() - started
    gc.collect()
    rss_after = process.memory_info().rss
    keys_after = settled_keys()
    q.stop_workers()
    q.close()
    print(
        json.dumps(
            {
                "tasks": count,
                "warmup": warmup,
                "threads": threads,
                "seconds": round(elapsed, 2),
                "tasks_per_s": round(count / elapsed),
                "rss_before": rss_before,
                "rss_after": rss_after,
                "rss_samples": samples,
                "keys_before": keys_before,
                "keys_after": keys_after,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
