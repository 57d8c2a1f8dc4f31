"""Kill the busiest Redis primary while two worker processes run 3,000 tasks; count what is lost.

Used by ``tests/test_failover.py`` (which asserts that with ``redis.min_replicas_ack = 1``
nothing acknowledged is lost) and runnable on its own to measure both settings:

    python -m tests.failover_run --acks 0 --acks 1            # a 3+3 Redis Cluster
    python -m tests.failover_run --sentinel --acks 0 --acks 1 # a primary, a replica, 3 sentinels

An acknowledged task is one whose enqueue returned without error (a batch that raised
is enqueued again with the same task ids, as the README tells users to). The ledger
of runs is a local file written by the task itself, so it survives the kill.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from taskqueue.errors import BrokerError

from .failover_worker import QUEUES, build

HERE = Path(__file__).resolve().parent
TASKS = 3000


@dataclass
class Report:
    acks: int
    acknowledged: int = 0
    succeeded: int = 0
    lost: list[str] = field(default_factory=list)
    duplicates: dict[str, int] = field(default_factory=dict)
    #: duplicated tasks whose first run started before the kill (leased on the dead primary)
    explained: int = 0
    failover_seconds: float = 0.0
    enqueue_retries: int = 0
    runs_before_kill: int = 0

    def line(self) -> str:
        return (
            f"min_replicas_ack={self.acks}: {self.acknowledged} acknowledged, {self.succeeded} succeeded, "
            f"{len(self.lost)} lost, {len(self.duplicates)} ran twice ({self.explained} of them leased on the killed primary "
            f"or redelivered after their lease lapsed), failover {self.failover_seconds:.1f} s, {self.enqueue_retries} enqueues "
            f"repeated, {self.runs_before_kill} runs before the kill"
        )


def _ledger(path: Path) -> list[tuple[str, float, int]]:
    """(task id, start time, attempt number) of every run."""
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if len(parts) == 4:
            out.append((parts[0], float(parts[2]), int(parts[3])))
    return out


def run(
    url: str,
    acks: int,
    kill: Callable[[list[subprocess.Popen[bytes]]], None],
    promoted: Callable[[], bool],
    rejoin: Callable[[list[subprocess.Popen[bytes]]], None],
    workdir: Path,
) -> Report:
    """Enqueue TASKS tasks over 12 queues, kill the primary a third of the way, wait for the
    replica to take over, start the killed server again (it rejoins as a replica, as a
    supervisor would restart it), and wait for every acknowledged task to end."""
    report = Report(acks)
    ledger = workdir / f"ledger-{acks}-{time.monotonic_ns()}.txt"
    producer, work = build(url, "", acks)
    env = _env()
    command = [sys.executable, str(HERE / "failover_worker.py"), url, str(ledger), "4", str(acks)]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, env=env) for _ in range(2)]
    acknowledged: list[str] = []
    try:
        for w in workers:
            assert w.stdout is not None and w.stdout.readline().strip() == b"ready"
        queues = list(QUEUES)

        def enqueue() -> None:
            for n in range(TASKS):
                while True:
                    try:
                        work.apply_async(args=(n,), queue=queues[n % len(queues)], task_id=f"t{n}")
                        break
                    except BrokerError:
                        report.enqueue_retries += 1
                    except ValueError as exc:  # an earlier try that raised had stored it after all
                        assert "exists already" in str(exc), exc
                        break
                acknowledged.append(f"t{n}")

        sender = threading.Thread(target=enqueue)
        sender.start()
        _wait(lambda: len(_ledger(ledger)) >= TASKS // 3, 120, "a third of the runs")
        report.runs_before_kill = len(_ledger(ledger))
        killed_at = time.time()
        kill(workers)
        _wait(promoted, 60, "the replica to be promoted")
        report.failover_seconds = time.time() - killed_at
        rejoin(workers)
        _wait(lambda: not sender.is_alive(), 240, "every task to be enqueued")
        report.acknowledged = len(acknowledged)

        def all_final() -> bool:
            records = producer.broker.get_tasks(acknowledged)
            return all(r is not None and r.final for r in records) or (
                # a task lost with the primary never ends: stop once the runs stop coming
                _quiet(ledger, 10.0)
            )

        _wait(all_final, 240, "every acknowledged task to end")
        records = producer.broker.get_tasks(acknowledged)
        report.succeeded = sum(1 for r in records if r is not None and r.status == "SUCCEEDED")
        report.lost = [
            t for t, r in zip(acknowledged, records, strict=True) if r is None or r.status != "SUCCEEDED"
        ]
        runs = _ledger(ledger)
        counts = Counter(t for t, _, _ in runs)
        report.duplicates = {t: n for t, n in counts.items() if n > 1}
        first: dict[str, float] = {}
        attempts: dict[str, list[int]] = {}
        for t, at, attempt in runs:
            first.setdefault(t, at)
            attempts.setdefault(t, []).append(attempt)
        histories = producer.broker.get_tasks(list(report.duplicates), history=True)
        lapsed = {
            r.id
            for r in histories
            if r is not None and any(e.get("event") == "lease-expired" for e in r.history or [])
        }
        # A duplicate is explained when its first run started before the kill, when its lease
        # lapsed (the history says so), or when two runs had the same attempt number: the
        # second lease did not see the first, which was written on the killed primary only
        # (a task prefetched there and started from a worker's buffer after the kill).
        report.explained = sum(
            1
            for t in report.duplicates
            if first[t] <= killed_at or t in lapsed or len(set(attempts[t])) < len(attempts[t])
        )
        return report
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            try:
                w.wait(30)
            except subprocess.TimeoutExpired:
                w.kill()
                w.wait(10)
        producer.close()


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(HERE.parent)}


def _quiet(ledger: Path, seconds: float) -> bool:
    return ledger.exists() and time.time() - ledger.stat().st_mtime > seconds


def _wait(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except BrokerError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        threading.Event().wait(0.05)


def _lag_then_kill(replica: subprocess.Popen[bytes], primary: subprocess.Popen[bytes], lag: float) -> None:
    """SIGKILL the primary; with ``lag``, first freeze its replica for that long (SIGSTOP),
    so the primary takes writes the replica never gets, then let the replica go on: the
    failover the README warns about, where asynchronous replication loses the last writes."""
    if lag > 0:
        replica.send_signal(signal.SIGSTOP)
        threading.Event().wait(lag)
    primary.send_signal(signal.SIGKILL)
    if lag > 0:
        replica.send_signal(signal.SIGCONT)


def on_cluster(workdir: Path, acks: int, lag: float = 0.0) -> Report:
    from .cluster_servers import cluster

    # A primary drops a replica that has not answered for repl-timeout (1 s here), then
    # goes on taking writes that only its backlog holds: what ``lag`` makes happen.
    with cluster(
        workdir, masters=3, replicas=1, extra_args=["--repl-timeout", "1", "--repl-diskless-sync-delay", "0"]
    ) as c:

        def busiest():
            calls = {}
            for node in c.masters:
                stats = c.client(node).info("commandstats")
                calls[node.port] = int(stats.get("cmdstat_evalsha", {}).get("calls", 0))
            return max(c.masters, key=lambda n: calls[n.port])

        victim: list = []

        def kill(_: object) -> None:
            victim.append(busiest())
            replica = next(n for n in c.nodes if n.master is victim[0])
            _lag_then_kill(replica.proc, victim[0].proc, lag)

        def promoted() -> bool:
            replica = next(n for n in c.nodes if n.master is victim[0])
            return c.client(replica).info("replication").get("role") == "master"

        def rejoin(_: object) -> None:
            c.restart(victim[0])
            _wait(
                lambda: c.client(victim[0]).info("replication").get("master_link_status") == "up",
                120,
                "the old primary to follow the new one",
            )

        return run(c.url, acks, kill, promoted, rejoin, workdir)


def on_sentinel(workdir: Path, acks: int, lag: float = 0.0) -> Report:
    from .sentinel_servers import sentinel_set

    with sentinel_set(workdir, extra_args=["--repl-timeout", "1", "--repl-diskless-sync-delay", "0"]) as s:

        def kill(_: object) -> None:
            _lag_then_kill(s.replica.proc, s.primary.proc, lag)

        return run(s.url, acks, kill, s.replica_promoted, lambda _: s.rejoin(), workdir)


def worker_killed_on_cluster(workdir: Path) -> Report:
    """On a 3-master cluster, SIGKILL one of the two worker processes mid-run and start
    another: its leased tasks come back when their leases expire (at least once)."""
    from .cluster_servers import cluster

    with cluster(workdir, masters=3) as c:

        def kill(workers: list[subprocess.Popen[bytes]]) -> None:
            workers[0].send_signal(signal.SIGKILL)
            workers[0].wait(10)

        def replace(workers: list[subprocess.Popen[bytes]]) -> None:
            workers.append(subprocess.Popen(workers[1].args, stdout=subprocess.PIPE, env=_env()))

        return run(c.url, 0, kill, lambda: True, replace, workdir)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--acks", type=int, action="append", default=[])
    parser.add_argument("--sentinel", action="store_true")
    parser.add_argument("--lag", type=float, default=0.0, help="freeze the replica this long before the kill")
    args = parser.parse_args()
    for acks in args.acks or [0, 1]:
        with tempfile.TemporaryDirectory() as workdir:
            report = (on_sentinel if args.sentinel else on_cluster)(Path(workdir), acks, args.lag)
        where = "sentinel" if args.sentinel else "cluster"
        print(f"{where} (replica {args.lag:.1f} s behind) {report.line()}", flush=True)


if __name__ == "__main__":
    main()
