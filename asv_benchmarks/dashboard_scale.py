"""The dashboard at scale: Redis round trips and server time per page, and the bytes the
per-minute history costs per queue per day.

    python asv_benchmarks/dashboard_scale.py [--url redis://...]   (default: the embedded server)

It fills namespace ``dashscale`` with 10,000 pending tasks (enqueue_many), 10,000 dead
letters (written as the dead-letter script writes them: task hash plus dead zset entry)
and 20 worker processes' registry entries (as heartbeats publish them, 4 threads each),
then requests every page through Flask's test client 20 times and reports the round
trips (commands or pipelines sent) and the median server time (Server-Timing) of each.
History bytes: runs real tasks of 3 names with varied runtimes, then MEMORY USAGE of the
minute hashes they wrote, times 1,440 minutes.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import threading
import time
from typing import Any

import redis

from taskqueue import TaskQueue
from taskqueue.dashboard import Access, Backend, create_app

sent = [0]
_original = redis.connection.AbstractConnection.send_packed_command


def _counting(self: Any, command: Any, check_health: bool = True) -> Any:
    if threading.current_thread().name == "MainThread":
        sent[0] += 1
    return _original(self, command, check_health)


def fill(q: TaskQueue, n: int = 10_000, workers: int = 20) -> str:
    @q.task(name="scale.job")
    def job(i: int) -> int:
        return i

    q.purge("default")
    q.purge_dead()
    q.enqueue_many([job.s(i) for i in range(n)])
    k, client = q.broker.keys, q.broker.client
    now = int(time.time() * 1000)
    pipe = client.pipeline(transaction=False)
    for i in range(n):
        tid = f"dead-{i:05d}"
        pipe.hset(
            k.task(tid),
            mapping={
                "status": "DEAD",
                "queue": "default",
                "name": "scale.job",
                "attempts": 4,
                "max_retries": 3,
                "reason": "retries exhausted",
                "finished_ms": now - i,
            },
        )
        pipe.zadd(k.dead("default"), {tid: now - i})
    for w in range(workers):
        wid = f"host{w}:{1000 + w}:abcd"
        info = {
            "host": f"host{w}",
            "pid": 1000 + w,
            "threads": 4,
            "queues": ["high", "default", "low"],
            "started_at": time.time() - 3600,
            "slots": [
                {
                    "thread": f"w-{t}",
                    "task": "scale.job",
                    "task_id": f"dead-{t:05d}",
                    "since": time.time() - t,
                }
                for t in range(4)
            ],
        }
        pipe.zadd(k.workers, {wid: now + 3_600_000})
        pipe.hset(k.worker(wid), mapping={"info": json.dumps(info), "heartbeat_ms": now})
    pipe.execute()
    return "dead-00042"


def pages(q: TaskQueue, task_id: str) -> None:
    app = create_app(Backend.of(q), Access.from_token("t"))
    c = app.test_client()
    auth = {"Authorization": "Bearer t"}
    paths = [
        "/",
        "/?range=24h",
        "/queues",
        "/queues/default",
        "/workers",
        "/scheduled",
        "/dead",
        "/dead?queue=default&name=other.task",
        "/periodic",
        f"/task/{task_id}",
        "/search?name=scale.job",
        "/search?status=DEAD",
        "/api/overview.json",
        "/api/dead.json",
    ]
    print(f"{'page':45} {'round trips':>11} {'server ms (median of 20)':>26}")
    for path in paths:
        c.get(path, headers=auth)  # warm: connections, script load
        trips, times = [], []
        for _ in range(20):
            sent[0] = 0
            r = c.get(path, headers=auth)
            assert r.status_code == 200, (path, r.status_code)
            trips.append(sent[0])
            times.append(float(r.headers["Server-Timing"].split("dur=")[1]))
        print(f"{path:45} {max(trips):>11} {statistics.median(times):>26.1f}")


def history_bytes(q: TaskQueue) -> None:
    names = ["report.build", "mail.send", "image.resize"]
    tasks = {}
    for name in names:

        def run(ms: int) -> None:
            time.sleep(ms / 1000)

        tasks[name] = q.task(name=name)(run)
    q.purge("default")
    random.seed(1)
    handles = [tasks[random.choice(names)].delay(random.choice([0, 1, 2, 5, 10, 20, 40])) for _ in range(600)]
    with q.running(workers=8):
        for h in handles:
            h.result(timeout=60)
    client, prefix = q.broker.client, q.broker.keys.minutes("default")
    keys = list(client.scan_iter(prefix + "*"))
    sizes = [client.memory_usage(k) or 0 for k in keys]
    fields = [client.hlen(k) for k in keys]
    per_key = max(sizes)
    print(
        f"history: {len(keys)} minute hash(es) for 600 tasks of 3 names; fields {fields}; "
        f"MEMORY USAGE {sizes} bytes"
    )
    print(
        f"history: a queue busy every minute with 3 task names: {per_key} B x 1440 = "
        f"{per_key * 1440 / 1024:.0f} KiB per day ({per_key * 1440 * 7 / 1024 / 1024:.1f} MiB for 7 days)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    q = TaskQueue(args.url, redis={"namespace": "dashscale"}, tasks={"capture_output": False})
    try:
        task_id = fill(q)
        redis.connection.AbstractConnection.send_packed_command = _counting  # type: ignore[method-assign]
        pages(q, task_id)
        redis.connection.AbstractConnection.send_packed_command = _original  # type: ignore[method-assign]
        print(
            f"sizes: {q.pending()['default']} pending, {q.broker.dead_count(['default'])['default']} dead, "
            f"{len(q.broker.live_workers())} workers"
        )
        history_bytes(q)
    finally:
        q.purge("default")
        q.purge_dead()
        q.close()


if __name__ == "__main__":
    main()
