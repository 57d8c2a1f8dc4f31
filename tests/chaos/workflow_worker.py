"""A worker process for the workflow chaos test.

    python tests/chaos/workflow_worker.py QUEUE_URL LEDGER_URL PREFIX THREADS

``wf.member(chord, i, work_ms)`` works a while and returns ``chord * 100 + i``;
``wf.collect(results, chord)`` is a chord's callback: it appends
``chord|attempt|pid|<results as JSON>`` to ``PREFIX:callback`` on the ledger
server (the test suite's own, which no chaos touches) and returns how many
results it got.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import redis
from chaos_worker import chaos_settings

from taskqueue import TaskQueue, TaskRegistry, current_task


def define(q: TaskQueue, ledger: redis.Redis | None = None, prefix: str = "") -> None:
    """The two tasks (the test's producer defines them too, to send calls of them)."""

    @q.task(name="wf.member", max_retries=50)
    def member(chord: int, i: int, work_ms: float = 0.0) -> int:
        until = time.monotonic() + work_ms / 1000
        while time.monotonic() < until:
            time.sleep(0.002)
        return chord * 100 + i

    @q.task(name="wf.collect", max_retries=50)
    def collect(results: list[int], chord: int) -> int:
        if ledger is not None:
            ctx = current_task()
            ledger.rpush(f"{prefix}:callback", f"{chord}|{ctx.attempt}|{os.getpid()}|{json.dumps(results)}")
        return len(results)


def main() -> None:
    url, ledger_url, prefix, threads = sys.argv[1:5]
    q = TaskQueue(url, settings=chaos_settings(), registry=TaskRegistry())
    define(q, redis.Redis.from_url(ledger_url), prefix)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    q.start_workers(int(threads))
    print("ready", flush=True)
    stop.wait()
    q.stop_workers(timeout=10)
    q.close()


if __name__ == "__main__":
    main()
