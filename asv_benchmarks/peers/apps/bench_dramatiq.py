"""Dramatiq in the comparison (worker: ``dramatiq bench_dramatiq --processes 1 --threads 8``)."""

import dramatiq
from bench_shared import URL, count_one
from dramatiq.brokers.redis import RedisBroker

LABEL = "Dramatiq"
BATCH_API = "loop"  # group() sends one message at a time as well

broker = RedisBroker(url=URL)
dramatiq.set_broker(broker)


@dramatiq.actor(actor_name="bench_noop")
def noop() -> None:
    count_one()


def enqueue_one() -> None:
    noop.send()


def enqueue_batch(count: int) -> None:
    for _ in range(count):
        noop.send()
