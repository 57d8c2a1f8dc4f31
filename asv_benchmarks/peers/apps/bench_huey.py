"""Huey in the comparison (worker: ``huey_consumer bench_huey.huey -k thread``)."""

from bench_shared import URL, count_one
from huey import RedisHuey

LABEL = "Huey"
BATCH_API = "loop"  # Huey has no batch enqueue

huey = RedisHuey("bench", url=URL)


@huey.task()
def noop() -> None:
    count_one()


def enqueue_one() -> None:
    noop()


def enqueue_batch(count: int) -> None:
    for _ in range(count):
        noop()
