"""A worker process for the failover tests: ``python tests/failover_worker.py URL LEDGER THREADS ACKS``.

Every run of ``failover.work`` appends its task id, process, start time and attempt
number to the ledger file (a local file, not Redis: the ledger must not be lost with
the master the test kills).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from taskqueue import TaskQueue, TaskRegistry, current_task
from taskqueue.config import Settings

QUEUES = {f"q{i}": 12 - i for i in range(12)}


def settings(acks: int) -> Settings:
    return Settings().replace(
        queues=QUEUES,
        workers={"heartbeat_interval": 0.5, "lease_heartbeats": 3, "idle_poll_seconds": 0.5},
        redis={
            "min_replicas_ack": acks,
            "replica_ack_timeout": 2.0,
            "retry_max_seconds": 30,
            "retry_attempts": 60,
        },
    )


def build(url: str, ledger: str, acks: int) -> tuple[TaskQueue, Any]:
    """The queue and its one task (a producer passes no ledger: it never runs the task)."""
    q = TaskQueue(url, settings=settings(acks), registry=TaskRegistry())
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600) if ledger else -1

    @q.task(name="failover.work", queue="q0", max_retries=5)
    def work(n: int) -> int:
        task = current_task()
        os.write(fd, f"{task.id} {os.getpid()} {time.time():.6f} {task.attempt}\n".encode())
        time.sleep(0.004)  # long enough that the run is still going when the master dies
        return n

    return q, work


if __name__ == "__main__":
    url, ledger, threads, acks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    q, _ = build(url, ledger, acks)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    q.start_workers(threads)
    print("ready", flush=True)
    stop.wait()
    q.stop_workers(timeout=10)
    q.close()
