"""Measure the scheduler: lateness of delayed tasks, and its Redis load when idle.

    python examples/scheduler_measure.py [--url URL] [--tasks 200] [--idle-seconds 30]

Without --url it starts a throw-away embedded server, so the numbers are not
disturbed by other clients (the idle measurement reads server-wide counters).

1. Lateness: ``--tasks`` no-op tasks are scheduled with delays spread over a
   few seconds, on an idle pool of 4 worker threads, once with a scheduler
   thread and once without (idle workers then promote due tasks themselves).
   Lateness = when a worker leased the task minus its due time, both on the
   Redis server clock (``started_ms - due_ms`` of the task hash).
2. Idle load: one scheduler, no workers, one periodic task due in an hour;
   ``INFO commandstats`` is read before and after ``--idle-seconds``. Redis
   counts the commands a script runs, so both EVALSHA calls (round trips)
   and all commands are reported.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import threading
from datetime import timedelta

import redis

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings
from taskqueue.embedded import EmbeddedServer


def lateness(url: str, tasks: int, with_scheduler: bool) -> list[int]:
    settings = Settings().replace(redis={"namespace": f"measure-{int(with_scheduler)}"})
    q = TaskQueue(url, settings=settings, registry=TaskRegistry())
    remaining = threading.Semaphore(0)
    noop = q.task(lambda: remaining.release(), name="noop")
    q.start_workers(4)
    if with_scheduler:
        q.start_scheduler()
    rng = random.Random(4)
    handles = [noop.apply_async(delay=rng.uniform(0.2, 4.0)) for _ in range(tasks)]
    for _ in handles:
        if not remaining.acquire(timeout=30):
            raise RuntimeError("tasks did not all run within 30 s")
    records = q.broker.get_tasks([h.id for h in handles])
    q.close()
    return sorted(r.started_ms - r.due_ms for r in records if r and r.started_ms and r.due_ms)


def idle_load(url: str, seconds: float) -> tuple[dict[str, int], float]:
    settings = Settings().replace(redis={"namespace": "measure-idle"})
    q = TaskQueue(url, settings=settings, registry=TaskRegistry())
    q.periodic(every=timedelta(hours=1), name="hourly")(lambda: None)
    q.start_scheduler()
    probe = redis.Redis.from_url(url)
    threading.Event().wait(1.0)  # let start-up commands pass
    before = probe.info("commandstats")
    threading.Event().wait(seconds)
    after = probe.info("commandstats")
    q.close()
    probe.close()
    calls = {}
    for name, stat in after.items():
        delta = stat["calls"] - before.get(name, {}).get("calls", 0)
        if delta and name not in ("cmdstat_info",):  # the probe's own INFO
            calls[name.removeprefix("cmdstat_")] = delta
    return calls, seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="a throw-away Redis (default: an embedded server)")
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--idle-seconds", type=float, default=30.0)
    args = parser.parse_args()
    server = None
    url = args.url
    if url is None:
        server = EmbeddedServer(tempfile.mkdtemp(prefix="tq-measure-"), persistent=False)
        server.start()
        url = server.url
    try:
        for with_scheduler in (True, False):
            late = lateness(url, args.tasks, with_scheduler)
            label = "idle pool + scheduler" if with_scheduler else "idle pool, no scheduler"
            q95 = late[int(0.95 * (len(late) - 1))]
            print(
                f"lateness over {len(late)} delayed tasks, {label}: median {statistics.median(late):.0f} ms, "
                f"p95 {q95} ms, max {late[-1]} ms, min {late[0]} ms"
            )
        calls, seconds = idle_load(url, args.idle_seconds)
        total = sum(calls.values())
        detail = ", ".join(f"{name} {n / seconds:.2f}/s" for name, n in sorted(calls.items()))
        print(
            f"idle scheduler over {seconds:g} s: {total / seconds:.2f} commands/s in total "
            f"({calls.get('evalsha', 0) / seconds:.2f} EVALSHA round trips/s); {detail}"
        )
    finally:
        if server is not None:
            server.stop()


if __name__ == "__main__":
    main()
