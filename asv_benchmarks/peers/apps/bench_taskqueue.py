"""taskqueue in the comparison. ``python -m bench_taskqueue THREADS`` runs the worker."""

import signal
import sys
import threading

from bench_shared import URL, count_one

from taskqueue import TaskQueue, TaskRegistry
from taskqueue.config import Settings

LABEL = "taskqueue"
BATCH_API = "enqueue_many"

queue = TaskQueue(URL, settings=Settings(), registry=TaskRegistry())


@queue.task(name="bench.noop")
def noop() -> None:
    count_one()


def enqueue_one() -> None:
    noop.delay()


def enqueue_batch(count: int) -> None:
    queue.enqueue_many([noop.s() for _ in range(count)])


def main(threads: int) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    queue.start_workers(threads)
    stop.wait()
    queue.close()


if __name__ == "__main__":
    main(int(sys.argv[1]))
