"""What a Redis Cluster costs and gives, on real clusters started from the embedded binary:

    PYTHONPATH=. python asv_benchmarks/cluster_figures.py [--tasks 6000] [--rounds 3]

1. Round trips per task on the worker side when the higher-priority queues are empty:
   12 queues, every task in the lowest one; single server vs a 3-master cluster.
2. ``get_metrics()`` and a monitor snapshot over 12 queues: round trips and time,
   single server vs 3 masters (the masters are asked in parallel).
3. Spread: the same drain over 12 queues on 3 masters, and each master's share of
   the script calls (INFO commandstats ``evalsha``).
4. Throughput of that drain on a 1-master vs a 3-master cluster, alternating rounds
   in one run (on 2 cores the CPU, not Redis, is the limit: the ratio says so).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import redis

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings
from taskqueue.embedded import EmbeddedServer
from taskqueue.task import Signature
from tests.cluster_servers import cluster

QUEUES = {f"q{i:02d}": 12 - i for i in range(12)}
SETTINGS = Settings().replace(
    queues=QUEUES, workers={"heartbeat_interval": 2.0, "idle_poll_seconds": 0.5}, tasks={"result_ttl": 600}
)


class Sends:
    """Counts every command or pipeline sent, per thread-name prefix."""

    def __init__(self) -> None:
        self.by_thread: dict[str, int] = {}
        self._lock = threading.Lock()
        original = redis.connection.AbstractConnection.send_packed_command

        def counted(conn: Any, command: Any, check_health: bool = True) -> Any:
            name = threading.current_thread().name
            with self._lock:
                self.by_thread[name] = self.by_thread.get(name, 0) + 1
            return original(conn, command, check_health)

        redis.connection.AbstractConnection.send_packed_command = counted  # type: ignore[method-assign]

    def total(self, prefix: str = "") -> int:
        with self._lock:
            return sum(n for name, n in self.by_thread.items() if name.startswith(prefix))

    def clear(self) -> None:
        with self._lock:
            self.by_thread.clear()


def drain(url: str, tasks: int, queue_of: Any, sends: Sends | None = None) -> tuple[float, int]:
    """Enqueue ``tasks`` no-ops (queue chosen by ``queue_of(n)``), then time one worker
    process of 8 threads draining them; (tasks/s, worker-side sends)."""
    q = TaskQueue(url, settings=SETTINGS, registry=TaskRegistry())

    @q.task(name="bench.noop", queue="q00")
    def noop(n: int) -> int:
        return n

    handles = q.enqueue_many([Signature(noop.name, (n,), queue=queue_of(n)) for n in range(tasks)])
    if sends:
        sends.clear()
    start = time.perf_counter()
    q.start_workers(8)
    handles[-1].result(timeout=300)
    for h in handles:
        h.result(timeout=300)
    elapsed = time.perf_counter() - start
    worker_sends = sends.total("taskqueue-") if sends else 0
    q.close()
    return tasks / elapsed, worker_sends


def reading_costs(url: str, sends: Sends) -> tuple[float, int, float, int]:
    """(ms per get_metrics, sends per get_metrics, ms per snapshot, sends per snapshot), median of 20."""
    q = TaskQueue(url, settings=SETTINGS, registry=TaskRegistry())
    out = []
    for read in (q.get_metrics, lambda: q.broker.snapshot(list(QUEUES))):
        times, counts = [], []
        for _ in range(20):
            sends.clear()
            t = time.perf_counter()
            read()
            times.append((time.perf_counter() - t) * 1000)
            counts.append(sends.total())
        out += [statistics.median(times), int(statistics.median(counts))]
    q.close()
    return out[0], out[1], out[2], out[3]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    sends = Sends()
    lowest = list(QUEUES)[-1]
    spread = list(QUEUES)
    with tempfile.TemporaryDirectory() as tmp:
        single = EmbeddedServer(Path(tmp) / "single")
        single.start()
        try:
            with cluster(Path(tmp), masters=3) as three, cluster(Path(tmp), masters=1) as one:
                for name, url in (("single server", single.url), ("3-master cluster", three.url)):
                    rate, worker_sends = drain(url, args.tasks, lambda n: lowest, sends)
                    print(
                        f"1. {name}: tasks only in the lowest of 12 queues: "
                        f"{worker_sends / args.tasks:.3f} worker round trips per task ({rate:,.0f} tasks/s)"
                    )
                for name, url in (("single server", single.url), ("3-master cluster", three.url)):
                    m_ms, m_rt, s_ms, s_rt = reading_costs(url, sends)
                    print(
                        f"2. {name}: get_metrics() {m_ms:.1f} ms in {m_rt} round trips; "
                        f"snapshot {s_ms:.1f} ms in {s_rt} round trips (12 queues)"
                    )
                before = {n.port: _evalsha(three.client(n)) for n in three.masters}
                drain(three.url, args.tasks, lambda n: spread[n % 12], None)
                calls = {n.port: _evalsha(three.client(n)) - before[n.port] for n in three.masters}
                total = sum(calls.values())
                owned = {
                    n.port: sum(1 for q in QUEUES if three.owner("{taskqueue/" + q + "}").port == n.port)
                    for n in three.masters
                }
                print(
                    "3. spread of 12 queues over 3 masters: "
                    + ", ".join(
                        f"master {i + 1}: {owned[p]} queues, {c / total:.0%} of the script calls"
                        for i, (p, c) in enumerate(calls.items())
                    )
                )
                rates: dict[str, list[float]] = {"1 master": [], "3 masters": []}
                for _ in range(args.rounds):
                    for name, c in (("1 master", one), ("3 masters", three)):
                        for node in c.masters:
                            c.client(node).flushall()
                        rates[name].append(drain(c.url, args.tasks, lambda n: spread[n % 12], None)[0])
                m1, m3 = statistics.median(rates["1 master"]), statistics.median(rates["3 masters"])
                rounds = {name: [round(r) for r in values] for name, values in rates.items()}
                print(
                    f"4. drain of {args.tasks} no-ops over 12 queues, 1 process x 8 threads, "
                    f"{args.rounds} alternating rounds: 1 master {m1:,.0f}/s, 3 masters {m3:,.0f}/s "
                    f"(rounds {rounds}); ratio {m3 / m1:.2f}"
                )
        finally:
            single.stop()


def _evalsha(client: redis.Redis) -> int:
    return int(client.info("commandstats").get("cmdstat_evalsha", {}).get("calls", 0))


if __name__ == "__main__":
    main()
