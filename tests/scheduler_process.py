"""One scheduler in its own process, for the no-duplicates test of test_scheduler.py.

Usage: python scheduler_process.py URL NAMESPACE EVERY_SECONDS PERIODIC_COUNT TICK_SECONDS

Declares PERIODIC_COUNT periodic entries (beat-0, beat-1, ...) of one task,
starts the scheduler, prints "ready", runs until a line arrives on stdin,
then stops and prints the scheduler's counters as JSON. A short tick makes
the processes contend for every slot, which is what the test wants.
"""

from __future__ import annotations

import json
import sys

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings


def beat(n: int) -> int:
    return n


def main(url: str, namespace: str, every: float, count: int, tick: float) -> None:
    settings = Settings().replace(redis={"namespace": namespace}, scheduler={"tick_interval": tick})
    q = TaskQueue(url, settings=settings, registry=TaskRegistry())
    task = q.task(beat, name="beat")
    for i in range(count):
        q.periodic(every=every, args=(i,), name=f"beat-{i}")(task)
    q.start_scheduler()
    print("ready", flush=True)
    sys.stdin.readline()
    q.stop_scheduler()
    print(json.dumps(q.scheduler.stats), flush=True)
    q.close()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]))
