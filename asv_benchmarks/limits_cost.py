"""What a limited task costs on the worker side, next to an unlimited one (one run).

    python asv_benchmarks/limits_cost.py [--tasks 5000] [--threads 8] [--rounds 3]

On one throw-away embedded server, for each kind of task (no limit;
rate_limit="100000/s", far above what the machine can do; concurrency=1000; both),
in alternating rounds: preload N no-op tasks, then drain them with one worker pool
of THREADS threads and report tasks/s, the Redis commands the server ran per task
(INFO commandstats, commands inside scripts included, during the drain only) and
the round trips the worker's threads sent per task. Medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import redis

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.embedded import EmbeddedServer

KINDS: dict[str, dict[str, Any]] = {
    "unlimited": {},
    "rate_limit=100000/s": {"rate_limit": "100000/s"},
    "concurrency=1000": {"concurrency": 1000},
    "rate+concurrency": {"rate_limit": "100000/s", "concurrency": 1000},
}


def commands(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(v["calls"] for k, v in stats.items() if k not in ("cmdstat_info",))


def one(url: str, kind: str, tasks: int, threads: int, sent: Counter[str]) -> dict[str, float]:
    client = redis.Redis.from_url(url)
    client.flushall()
    q = TaskQueue(url, registry=TaskRegistry())
    done = threading.Event()
    count = [0]
    lock = threading.Lock()

    @q.task(name="bench.noop", **KINDS[kind])
    def noop() -> None:
        with lock:
            count[0] += 1
            if count[0] == tasks:
                done.set()

    for start in range(0, tasks, 1000):
        q.enqueue_many([noop.s() for _ in range(min(1000, tasks - start))])
    client.config_resetstat()
    before_sent = sum(n for name, n in sent.items() if name.startswith("taskqueue-worker"))
    started = time.perf_counter()
    q.start_workers(threads)
    done.wait(300)
    elapsed = time.perf_counter() - started
    ran = commands(client)
    worker_sent = sum(n for name, n in sent.items() if name.startswith("taskqueue-worker")) - before_sent
    q.close()
    return {
        "tasks_per_s": tasks / elapsed,
        "commands_per_task": ran / tasks,
        "round_trips_per_task": worker_sent / tasks,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=5000)
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sent: Counter[str] = Counter()
    original = redis.connection.AbstractConnection.send_packed_command

    def counting(self: Any, command: Any, check_health: bool = True) -> Any:
        sent[threading.current_thread().name] += 1
        return original(self, command, check_health)

    redis.connection.AbstractConnection.send_packed_command = counting  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedServer(Path(tmp) / "server", persistent=False)
        server.start()
        try:
            url = server.url
            figures: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
            for r in range(args.rounds):
                for kind in KINDS:
                    f = one(url, kind, args.tasks, args.threads, sent)
                    figures[kind].append(f)
                    print(
                        f"round {r + 1} {kind:22} " + "  ".join(f"{k} {v:,.2f}" for k, v in f.items()),
                        flush=True,
                    )
        finally:
            server.stop()
    print("\nmedians:")
    base = statistics.median(f["tasks_per_s"] for f in figures["unlimited"])
    for kind, rows in figures.items():
        med = {k: statistics.median(f[k] for f in rows) for k in rows[0]}
        print(
            f"  {kind:22} tasks/s {med['tasks_per_s']:8,.0f} ({med['tasks_per_s'] / base:.2f} of unlimited)"
            f"  commands/task {med['commands_per_task']:.1f}"
            f"  worker round trips/task {med['round_trips_per_task']:.2f}"
        )


if __name__ == "__main__":
    main()
