"""Workflow measurements (DESIGN 10), side by side in one run on one throw-away server.

    python asv_benchmarks/workflows.py [--rounds 3] [--members 10000] [--chords 1000]
    python asv_benchmarks/workflows.py commands [--tasks 2000] [--repo CHECKOUT]

- ``overhead``: a group of N no-op members (``group(...).delay()``) against N
  plain no-op tasks (``enqueue_many``), each then waited for the same way (as
  ``q.map`` waits), end to end on 8 worker threads in this process, alternating rounds;
  prints each round and the median ratio (the goal: at most 1.3).
- ``latency``: chords of 2 members sent one after the other on an idle pool of 4
  threads: the callback's start (server clock) minus its last member's finish;
  p50 and p99 over ``--chords``.
- ``commands``: Redis commands per task on the worker side (INFO commandstats,
  reset once the tasks are written, so only what the workers send is counted,
  the commands scripts run inside included) for a drain of plain tasks, and, where
  workflows exist, of a group's members and of a chord. Run it in the checkout
  before this feature and in this one to compare.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

#: ``--repo DIR``: measure the taskqueue of another checkout (say, the one before workflows).
_REPO = (
    sys.argv[sys.argv.index("--repo") + 1]
    if "--repo" in sys.argv
    else str(Path(__file__).resolve().parent.parent)
)
sys.path.insert(0, _REPO)

from taskqueue import TaskQueue, TaskRegistry  # noqa: E402
from taskqueue.embedded import EmbeddedServer  # noqa: E402


def _queue(url: str) -> tuple[TaskQueue, Any, Any]:
    q = TaskQueue(url, registry=TaskRegistry(), workers={"heartbeat_interval": 1.0})

    @q.task
    def noop(i: int = 0) -> None:
        return None

    @q.task
    def collect(results: list[Any]) -> int:
        return len(results)

    return q, noop, collect


def _flush(q: TaskQueue) -> None:
    q.broker.client.flushdb()


def _wait_all(q: TaskQueue, ids: list[str]) -> None:
    from taskqueue import mapping
    from taskqueue.handle import TaskHandle

    mapping.wait(q.broker, [TaskHandle(q.broker, i) for i in ids], progress=False, timeout=600)


def overhead(url: str, rounds: int, members: int) -> None:
    from taskqueue import group

    q, noop, _ = _queue(url)
    plain_s, group_s = [], []
    try:
        q.start_workers(8)
        for r in range(rounds):
            _flush(q)
            t = time.perf_counter()
            handles = q.enqueue_many([noop.s(i) for i in range(members)])
            _wait_all(q, [h.id for h in handles])
            plain_s.append(time.perf_counter() - t)
            _flush(q)
            t = time.perf_counter()
            g = group(noop.s(i) for i in range(members)).delay()
            _wait_all(q, [h.id for h in g.tasks])  # waited for as the plain tasks are
            group_s.append(time.perf_counter() - t)
            print(
                f"round {r + 1}: plain {plain_s[-1]:.2f} s, group {group_s[-1]:.2f} s, "
                f"ratio {group_s[-1] / plain_s[-1]:.2f}",
                flush=True,
            )
    finally:
        q.stop_workers()
        q.close()
    ratios = [g / p for g, p in zip(group_s, plain_s, strict=True)]
    print(
        f"overhead: {members} members, median plain {statistics.median(plain_s):.2f} s, "
        f"median group {statistics.median(group_s):.2f} s, median ratio {statistics.median(ratios):.2f}"
    )


def latency(url: str, chords: int) -> None:
    from taskqueue import chord

    q, noop, collect = _queue(url)
    gaps = []
    try:
        q.start_workers(4)
        for i in range(chords):
            c = chord([noop.s(i), noop.s(i)], collect.s()).delay()
            c.result(timeout=30)
            body = c.body.record()
            last = max(h.record().finished_ms or 0 for h in c.header.tasks)
            gaps.append((body.started_ms or 0) - last)
    finally:
        q.stop_workers()
        q.close()
    gaps.sort()
    p50 = gaps[len(gaps) // 2]
    p99 = gaps[min(len(gaps) - 1, int(len(gaps) * 0.99))]
    print(
        f"latency: {chords} chords, callback start after the last member's finish: p50 {p50} ms, p99 {p99} ms"
    )


def _worker_commands(q: TaskQueue, send: Any, count: int) -> float:
    _flush(q)
    ids = send()
    client = q.broker.client
    client.config_resetstat()
    q.start_workers(4)
    _wait_all(q, ids)
    q.stop_workers()
    stats = client.info("commandstats")
    calls = sum(int(v["calls"]) for k, v in stats.items() if k.startswith("cmdstat_"))
    return calls / count


def commands(url: str, tasks: int) -> None:
    q, noop, collect = _queue(url)
    try:
        plain = _worker_commands(
            q, lambda: [h.id for h in q.enqueue_many([noop.s(i) for i in range(tasks)])], tasks
        )
        print(f"commands per task, plain tasks: {plain:.2f}")
        try:
            from taskqueue import chord, group
        except ImportError:
            return
        members = _worker_commands(
            q, lambda: [h.id for h in group(noop.s(i) for i in range(tasks)).delay().tasks], tasks
        )
        print(f"commands per task, group members: {members:.2f}")
        chords = _worker_commands(
            q,
            lambda: [
                h.id
                for c in range(tasks // 10)
                for h in chord([noop.s(i) for i in range(9)], collect.s()).delay().tasks
            ],
            tasks // 10 * 10,
        )
        print(f"commands per task, chords of 9 members and a callback: {chords:.2f}")
    finally:
        q.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", nargs="?", default="all", choices=["all", "overhead", "latency", "commands"])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--members", type=int, default=10_000)
    parser.add_argument("--chords", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--url", default="")
    parser.add_argument("--repo", default="", help="a checkout whose taskqueue to measure")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.url
        if not url:
            server = EmbeddedServer(Path(tmp) / "server", persistent=False)
            server.start()
            url = server.url
        try:
            if args.what in ("all", "overhead"):
                overhead(url, args.rounds, args.members)
            if args.what in ("all", "latency"):
                latency(url, args.chords)
            if args.what in ("all", "commands"):
                commands(url, args.tasks)
        finally:
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()
