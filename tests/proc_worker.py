"""A worker process for crash tests: ``python tests/proc_worker.py URL THREADS [QUEUE...]``.

Its tasks record what they do in Redis (a ledger), so the test process can
see which ran, how often, and kill this process in the middle of one.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import redis

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings

FAST = {
    "workers": {"heartbeat_interval": 0.2, "lease_heartbeats": 3, "idle_poll_seconds": 0.5},
    "tasks": {"retry_backoff_initial": 0.05, "retry_backoff_max": 0.2, "retry_jitter": 0.05},
}


def build(url: str) -> TaskQueue:
    q = TaskQueue(url, settings=Settings().replace(**FAST), registry=TaskRegistry())
    ledger = redis.Redis.from_url(url)

    @q.task(name="ledger.record", max_retries=5)
    def record(key: str, hold: bool = False) -> str:
        """Note the run; with hold, block until the test pushes ledger:go:<key>."""
        ledger.sadd("ledger:started", key)
        ledger.incr(f"ledger:runs:{key}")
        if hold:
            ledger.blpop([f"ledger:go:{key}"], timeout=60)
        ledger.sadd("ledger:done", key)
        return key

    return q


if __name__ == "__main__":
    url, threads = sys.argv[1], int(sys.argv[2])
    q = build(url)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    q.start_workers(threads)
    print("ready", flush=True)
    stop.wait()
    q.stop_workers(timeout=10)
    q.close()
