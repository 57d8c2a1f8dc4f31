"""RQ in the comparison (workers: ``rq worker`` / ``rq worker-pool``, started by the driver)."""

import redis
from bench_shared import URL, count_one
from rq import Queue

LABEL = "RQ"
BATCH_API = "enqueue_many"

queue = Queue("default", connection=redis.Redis.from_url(URL))


def noop() -> None:
    count_one()


def enqueue_one() -> None:
    queue.enqueue(noop)


def enqueue_batch(count: int) -> None:
    queue.enqueue_many([Queue.prepare_data(noop) for _ in range(count)])
