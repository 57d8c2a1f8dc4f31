"""A worker process for the chaos suite.

    python tests/chaos/chaos_worker.py QUEUE_URL LEDGER_URL PREFIX THREADS LOCK_DIR [SETTINGS_JSON]

Its one task, ``chaos.work``, writes a ledger to a *different* Redis (the
test suite's own server), so that what the chaos does to the queue's server
(restarts, pauses, killed connections, memory pressure) never touches the
evidence: ``PREFIX:start`` and ``PREFIX:end`` get one ``id|attempt|pid|time``
entry per run. While it works, a run holds an exclusive, non-blocking
``flock`` on a file named after its task id; a second run of the same task
that overlaps it in time (in any process) records itself in
``PREFIX:overlap``. The lock dies with its process, so a SIGKILLed run never
blames a later one.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import redis

from taskqueue import TaskQueue, TaskRegistry, current_task
from taskqueue.config import Settings

#: Fast leases (0.6 s) and short Redis timeouts, so that each scenario takes seconds.
CHAOS_SETTINGS = {
    "redis": {
        "command_timeout": 1.0,
        "connection_timeout": 1.0,
        "retry_max_seconds": 20,
        "retry_attempts": 30,
    },
    "workers": {"heartbeat_interval": 0.2, "lease_heartbeats": 3, "idle_poll_seconds": 0.5},
    "tasks": {
        "retry_backoff_initial": 0.05,
        "retry_backoff_max": 0.2,
        "retry_jitter": 0.05,
        "timeout_grace": 0.3,
    },
}


def chaos_settings(**overrides: dict) -> Settings:
    sections = {k: dict(v) for k, v in CHAOS_SETTINGS.items()}
    for section, values in overrides.items():
        sections.setdefault(section, {}).update(values)
    return Settings().replace(**sections)


def build(url: str, ledger_url: str, prefix: str, lock_dir: str, settings: Settings) -> TaskQueue:
    q = TaskQueue(url, settings=settings, registry=TaskRegistry())
    ledger = redis.Redis.from_url(ledger_url)
    pid = os.getpid()

    @q.task(name="chaos.work", max_retries=50)
    def work(work_ms: float = 0.0, mode: str = "python", pad: str = "") -> dict:
        """Simulated work of ``work_ms``: ``python`` (interruptible steps), ``sleep``
        (one blocking C call), ``swallow`` (first attempt: runs until interrupted,
        then returns its value all the same; later ones: like ``sleep``).
        ``pad`` only makes the payload bigger (memory pressure)."""
        ctx = current_task()
        ledger.rpush(f"{prefix}:start", f"{ctx.id}|{ctx.attempt}|{pid}|{time.time():.6f}")
        lock = os.open(os.path.join(lock_dir, ctx.id), os.O_CREAT | os.O_RDWR)
        how = "returned"
        try:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                ledger.rpush(f"{prefix}:overlap", f"{ctx.id}|{ctx.attempt}|{pid}")
            if mode == "python":
                until = time.monotonic() + work_ms / 1000
                while time.monotonic() < until:
                    time.sleep(0.002)
            elif mode == "sleep":
                time.sleep(work_ms / 1000)
            elif mode == "swallow" and ctx.attempt == 1:
                # A hostile first attempt: it blocks until the worker interrupts it,
                # then returns its value anyway.
                try:
                    for _ in range(3000):
                        time.sleep(0.01)
                except BaseException:
                    how = "swallowed"
            elif mode == "swallow":
                time.sleep(work_ms / 1000)
        except BaseException as exc:
            how = type(exc).__name__
            raise
        finally:
            os.close(lock)
            ledger.rpush(f"{prefix}:end", f"{ctx.id}|{ctx.attempt}|{pid}|{time.time():.6f}|{how}")
        return {"attempt": ctx.attempt, "pid": pid}

    return q


def main() -> None:
    url, ledger_url, prefix, threads, lock_dir = sys.argv[1:6]
    overrides = json.loads(sys.argv[6]) if len(sys.argv) > 6 else {}
    logging.basicConfig(level=logging.INFO, format=f"%(asctime)s {os.getpid()} %(name)s: %(message)s")
    q = build(url, ledger_url, prefix, lock_dir, chaos_settings(**overrides))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    q.start_workers(int(threads))
    print("ready", flush=True)
    stop.wait()
    q.stop_workers(timeout=10)
    q.close()


if __name__ == "__main__":
    main()
