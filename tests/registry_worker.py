"""A worker process that serves one kind of task: ``python tests/registry_worker.py URL KIND THREADS``.

Two of these with different kinds share one namespace and one queue, as two
apps (or two notebook kernels, or the old and new version during a rolling
deploy) do. Each run is noted in Redis with the pid that ran it.
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

FAST = {"workers": {"heartbeat_interval": 0.5, "idle_poll_seconds": 0.5}}


def build(url: str, kind: str) -> TaskQueue:
    """The queue of one kind (a producer that builds it and starts no worker just sends)."""
    q = TaskQueue(url, settings=Settings().replace(**FAST), registry=TaskRegistry())
    ledger = redis.Redis.from_url(url)

    @q.task(name=f"app.{kind}.work")
    def work(n: int) -> str:
        ledger.hset(f"ledger:{kind}", str(n), os.getpid())
        return f"{kind}{n}"

    return q


if __name__ == "__main__":
    url, kind, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
    q = build(url, kind)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    q.start_workers(threads)
    print("ready", flush=True)
    stop.wait()
    q.stop_workers(timeout=10)
    q.close()
