"""Worker and producer processes for the flow-control proofs (test_limits_processes.py).

    python tests/chaos/limits_worker.py work QUEUE_URL LEDGER_URL PREFIX THREADS
    python tests/chaos/limits_worker.py produce QUEUE_URL LEDGER_URL PREFIX THREADS KIND START_AT [FIRST_INDEX]

``work`` serves the tasks below; each run appends ``name|id|arg|pid|start|end`` to
``PREFIX:runs`` on the ledger server (the suite's own server, not the queue's), so a
SIGKILLed process leaves a start without an end in ``PREFIX:starts``.
``produce`` starts THREADS threads that call KIND's task at START_AT (epoch s; 0: at the
time the test pushes to ``PREFIX:go`` once every producer is ready) and
append ``id|deduplicated|arg|returned_at`` to ``PREFIX:calls``.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

import redis

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings

SETTINGS = {
    "workers": {"heartbeat_interval": 0.2, "lease_heartbeats": 3, "idle_poll_seconds": 0.5},
}


def build(url: str, ledger_url: str, prefix: str) -> TaskQueue:
    q = TaskQueue(url, settings=Settings().replace(**SETTINGS), registry=TaskRegistry())
    ledger = redis.Redis.from_url(ledger_url)
    pid = os.getpid()

    def run(name: str, task_id: str, arg: object, seconds: float = 0.0) -> None:
        start = time.time()
        ledger.rpush(f"{prefix}:starts", f"{name}|{task_id}|{arg}|{pid}|{start:.6f}")
        if seconds:
            time.sleep(seconds)
        ledger.rpush(f"{prefix}:runs", f"{name}|{task_id}|{arg}|{pid}|{start:.6f}|{time.time():.6f}")

    from taskqueue import current_task

    @q.task(name="lim.rate", rate_limit="10/s")
    def rate(i: int) -> None:
        run("lim.rate", current_task().id, i)

    @q.task(name="lim.free")
    def free(i: int) -> None:
        run("lim.free", current_task().id, i)

    @q.task(name="lim.single", concurrency=1, max_retries=5)
    def single(i: int) -> None:
        run("lim.single", current_task().id, i, 0.2)

    @q.task(name="lim.tenant", rate_limit="5/s", limit_by="tenant")
    def tenant(tenant: str, i: int) -> None:
        run("lim.tenant", current_task().id, tenant)

    @q.task(name="lim.unique", unique_for=60)
    def unique(x: int) -> None:
        run("lim.unique", current_task().id, x)

    @q.task(name="lim.debounce", debounce=1.0)
    def debounce(i: int) -> None:
        run("lim.debounce", current_task().id, i)

    return q


def work(url: str, ledger_url: str, prefix: str, threads: int) -> None:
    q = build(url, ledger_url, prefix)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    q.start_workers(threads)
    print("ready", flush=True)
    stop.wait()
    q.stop_workers(timeout=10)
    q.close()


def produce(
    url: str, ledger_url: str, prefix: str, threads: int, kind: str, start_at: float, first: int
) -> None:
    q = build(url, ledger_url, prefix)
    ledger = redis.Redis.from_url(ledger_url)
    task = {"unique": "lim.unique", "debounce": "lim.debounce"}[kind]
    from taskqueue import Signature

    begin: list[float] = []

    def call(index: int) -> None:
        start_at = begin[0]
        arg = 7 if kind == "unique" else index
        # debounce: the calls come 30 ms apart in index order, so the last one is known
        at = start_at + (0.03 * index if kind == "debounce" else 0.0)
        time.sleep(max(0.0, at - time.time()))
        h = q.enqueue(Signature(task, (arg,)))
        ledger.rpush(f"{prefix}:calls", f"{h.id}|{int(h.deduplicated)}|{arg}|{time.time():.6f}")

    workers = [threading.Thread(target=call, args=(first + i,)) for i in range(threads)]
    print("ready", flush=True)
    if start_at <= 0:  # wait for the test's go, which carries the start time
        _, value = ledger.blpop(f"{prefix}:go")
        start_at = float(value)
    begin.append(start_at)
    for t in workers:
        t.start()
    for t in workers:
        t.join()
    q.close()


def main() -> None:
    mode, url, ledger_url, prefix, threads = sys.argv[1:6]
    if mode == "work":
        work(url, ledger_url, prefix, int(threads))
    else:
        produce(url, ledger_url, prefix, int(threads), sys.argv[6], float(sys.argv[7]), int(sys.argv[8]))


if __name__ == "__main__":
    main()
